/**
 * The limits of the assignment.v1 API that callers must respect (beyond SPEC.md's names and
 * limits, which src/engine/rules.ts holds): how much one call may carry, and how streams are
 * batched. The server refuses what exceeds them with INVALID_ARGUMENT; clients and the command
 * line split their work by them. Plain constants, imported by server and clients alike: this
 * module imports nothing.
 */

/** Unit ids in one BulkAssign call, and in one StreamAssign message. */
export const MAX_BULK_UNITS = 10_000;
/** Unit ids × experiment keys in one MatrixAssign call, and in one StreamAssign message. */
export const MAX_MATRIX_CELLS = 100_000;
/** Experiment keys in one AssignUnit or MatrixAssign call. */
export const MAX_EXPERIMENTS_PER_CALL = 1_000;
/** Experiment keys in one StreamAssign stream. */
export const MAX_STREAM_EXPERIMENTS = 100;
/** Namespace keys in one ResolveParams or BulkResolveParams call (unit ids × namespaces of a
 * BulkResolveParams call are at most MAX_MATRIX_CELLS). */
export const MAX_NAMESPACES_PER_CALL = 100;

/** Overrides set, or unit ids cleared, in one SetOverrides or ClearOverrides call. */
export const MAX_OVERRIDES_PER_CALL = 10_000;
/** Unit ids of one EraseUnits call. */
export const MAX_ERASE_UNITS = 10_000;
/** Tags of one experiment. */
export const MAX_TAGS = 100;
/** An experiment's description, in UTF-8 bytes. */
export const MAX_DESCRIPTION_BYTES = 10_000;
/** A variant's params, as JSON, and an experiment's all together: answers carry them, so this
 * bounds what one request can make the server build (a matrix of 1,000 columns, each with its
 * legend's params, stays under 64 MiB). */
export const MAX_PARAMS_BYTES = 16_384;
export const MAX_EXPERIMENT_PARAMS_BYTES = 65_536;

/** ExportAssignments: rows per message when the request says 0, and the most it may ask. */
export const DEFAULT_EXPORT_BATCH = 10_000;
export const MAX_EXPORT_BATCH = 50_000;
/** CopyAssignments: rows per step (and progress message) when the request says 0, and the most. */
export const DEFAULT_COPY_BATCH = 50_000;
export const MAX_COPY_BATCH = 100_000;
/** Invalid rows an ImportAssignments answer reports (all are counted). */
export const MAX_IMPORT_ERRORS = 100;

/** The largest message either side sends or accepts. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
