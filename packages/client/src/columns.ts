import type { AssignmentColumn, Reason } from "./gen/assignment/v1/types_pb.js";

/** One unit's answer, unpacked from an AssignmentColumn. */
export interface ColumnAnswer {
  variantKey: string;
  reason: Reason;
  enrolled: boolean;
  stored: boolean;
}

/** Unpacks a packed column (BulkAssign, MatrixAssign) into one answer per requested unit, in order. */
export function columnAnswers(column: AssignmentColumn): ColumnAnswer[] {
  return column.variantIndexes.map((v, i) => ({
    variantKey: column.legend[v] ?? "",
    reason: column.reasons[i],
    enrolled: column.enrolled[i],
    stored: column.stored[i],
  }));
}
