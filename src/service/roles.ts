import { isFieldSet, type DescMethod } from "@bufbuild/protobuf";
import { type UpdateExperimentRequest, UpdateExperimentRequestSchema } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { permissionDenied } from "../errors.js";

/**
 * Who may call what. A token has a name and one role (src/ops/auth.ts checks the token and this
 * table before any handler runs, for every transport):
 * - `admin`: everything;
 * - `operator`: runs experiments: start, pause, stop, ramp the rollout, overrides, imports and
 *   copies, cohorts and jobs, and everything `reader` may;
 * - `reader`: reads: experiments, namespaces, stats, exports, cohorts, jobs;
 * - `assign`: AssignmentService only (the services that show variants to units).
 */
export const ROLES = ["admin", "operator", "reader", "assign"] as const;
export type Role = (typeof ROLES)[number];

/** Who made a call: the name and role of its token. A call to a service that takes calls without
 * a token (insecure development mode, or AssignmentService without assign tokens) is `anonymous`. */
export interface Caller {
  readonly name: string;
  readonly role: Role;
}

/** The caller of a service that takes calls without a token: it may call everything that service offers. */
export const ANONYMOUS: Caller = { name: "anonymous", role: "admin" };

const ADMIN: readonly Role[] = ["admin"];
const ASSIGNERS: readonly Role[] = ["admin", "assign"];
const OPERATORS: readonly Role[] = ["admin", "operator"];
const READERS: readonly Role[] = ["admin", "operator", "reader"];

/**
 * The roles that may call each RPC, keyed by `<service>/<method>` (the gRPC path without its
 * leading slash). A method missing here may be called by `admin` only (fail closed), and a test
 * fails until it is named. README.md's role table is checked against this one.
 */
export const METHOD_ROLES: Readonly<Record<string, readonly Role[]>> = {
  "assignment.v1.AssignmentService/Assign": ASSIGNERS,
  "assignment.v1.AssignmentService/AssignUnit": ASSIGNERS,
  "assignment.v1.AssignmentService/BulkAssign": ASSIGNERS,
  "assignment.v1.AssignmentService/MatrixAssign": ASSIGNERS,
  "assignment.v1.AssignmentService/StreamAssign": ASSIGNERS,
  "assignment.v1.AssignmentService/ResolveParams": ASSIGNERS,
  "assignment.v1.AssignmentService/BulkResolveParams": ASSIGNERS,

  "assignment.v1.ExperimentService/CreateExperiment": ADMIN,
  "assignment.v1.ExperimentService/GetExperiment": READERS,
  "assignment.v1.ExperimentService/ListExperiments": READERS,
  // An operator may change only the status, the winner and the rollout (OPERATOR_UPDATE_FIELDS).
  "assignment.v1.ExperimentService/UpdateExperiment": OPERATORS,
  // Archiving retires an experiment or namespace for good (it answers UNKNOWN_EXPERIMENT): admin.
  "assignment.v1.ExperimentService/ArchiveExperiment": ADMIN,
  "assignment.v1.ExperimentService/UnarchiveExperiment": ADMIN,
  "assignment.v1.ExperimentService/CreateNamespace": ADMIN,
  "assignment.v1.ExperimentService/GetNamespace": READERS,
  "assignment.v1.ExperimentService/ListNamespaces": READERS,
  // Default params are what every unit outside the namespace's experiments sees: configuration, admin.
  "assignment.v1.ExperimentService/UpdateNamespace": ADMIN,
  "assignment.v1.ExperimentService/ArchiveNamespace": ADMIN,
  "assignment.v1.ExperimentService/UnarchiveNamespace": ADMIN,
  // Segments decide which units each experiment of a namespace may ever enrol: the design of the
  // namespace, not the running of an experiment (an operator ramps with the rollout).
  "assignment.v1.ExperimentService/AllocateSegments": ADMIN,
  "assignment.v1.ExperimentService/ReleaseSegments": ADMIN,
  "assignment.v1.ExperimentService/SetOverrides": OPERATORS,
  "assignment.v1.ExperimentService/ClearOverrides": OPERATORS,
  "assignment.v1.ExperimentService/ListOverrides": READERS,
  "assignment.v1.ExperimentService/GetExperimentStats": READERS,
  "assignment.v1.ExperimentService/ImportAssignments": OPERATORS,
  "assignment.v1.ExperimentService/ExportAssignments": READERS,
  "assignment.v1.ExperimentService/CopyAssignments": OPERATORS,
  "assignment.v1.ExperimentService/ListChanges": READERS,
  // A data-protection erasure removes what no other call can (stored assignments): admin only.
  "assignment.v1.ExperimentService/EraseUnits": ADMIN,
  // The stream of what is stored, for analysis: read like stats and exports.
  "assignment.v1.ExperimentService/WatchAssignments": READERS,
  // A holdout takes units out of every experiment it covers: the design of the program, admin.
  "assignment.v1.ExperimentService/CreateHoldout": ADMIN,
  "assignment.v1.ExperimentService/GetHoldout": READERS,
  "assignment.v1.ExperimentService/ListHoldouts": READERS,
  "assignment.v1.ExperimentService/UpdateHoldout": ADMIN,
  "assignment.v1.ExperimentService/GetHoldoutStats": READERS,

  "assignment.v1.CohortService/UploadCohort": OPERATORS,
  "assignment.v1.CohortService/GetCohort": READERS,
  "assignment.v1.CohortService/ListCohorts": READERS,
  "assignment.v1.CohortService/DeleteCohort": OPERATORS,
  "assignment.v1.CohortService/ExportCohort": READERS,

  "assignment.v1.JobService/StartJob": OPERATORS,
  "assignment.v1.JobService/GetJob": READERS,
  "assignment.v1.JobService/ListJobs": READERS,
  "assignment.v1.JobService/CancelJob": OPERATORS,
  "assignment.v1.JobService/WatchJob": READERS,
  "assignment.v1.JobService/CreateSchedule": OPERATORS,
  "assignment.v1.JobService/ListSchedules": READERS,
  "assignment.v1.JobService/DeleteSchedule": OPERATORS,
};

/** `assignment.v1.ExperimentService/UpdateExperiment`: the key of METHOD_ROLES. */
export const methodKey = (method: DescMethod): string => `${method.parent.typeName}/${method.name}`;

/** The roles that may call `method`: its entry in METHOD_ROLES, else `admin` alone. */
export function rolesFor(method: DescMethod): readonly Role[] {
  return METHOD_ROLES[methodKey(method)] ?? ADMIN;
}

/** The fields of UpdateExperimentRequest an operator may set: the ones that run an experiment
 * (besides naming it and its version). Any other field, including one added to the request later,
 * needs admin. */
export const OPERATOR_UPDATE_FIELDS: ReadonlySet<string> = new Set(["key", "version", "status", "winner", "rollout"]);

/** Refuses (PERMISSION_DENIED) an UpdateExperiment that sets a field the caller's role may not change. */
export function checkUpdateAllowed(caller: Caller, req: UpdateExperimentRequest): void {
  if (caller.role === "admin") return;
  if (caller.role !== "operator") {
    throw permissionDenied(`UpdateExperiment needs role admin or operator; token "${caller.name}" has role ${caller.role}`);
  }
  const forbidden = UpdateExperimentRequestSchema.fields.filter((f) => isFieldSet(req, f) && !OPERATOR_UPDATE_FIELDS.has(f.name));
  if (forbidden.length === 0) return;
  throw permissionDenied(
    `UpdateExperiment: token "${caller.name}" has role operator, which may change only status, winner and rollout; ` +
      `changing ${forbidden.map((f) => f.name).join(", ")} needs role admin`,
  );
}
