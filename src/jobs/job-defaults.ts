/** Defaults of the job engine (pg-boss), each overridable in ServerConfig.jobs. */

/** Units per chunk: large enough that a chunk's statements cost little, small enough that a
 * crashed worker's chunk is quickly redone. */
export const DEFAULT_CHUNK_UNITS = 5_000;
/** Seconds a chunk may stay active before it is taken for dead (its worker crashed) and retried. */
export const DEFAULT_CHUNK_TIMEOUT_SECONDS = 60;
/** Retries of a chunk (failed or timed out) before its job fails. */
export const DEFAULT_CHUNK_RETRY_LIMIT = 5;
/** Seconds before a chunk's first retry; doubled, with jitter, for each further one. */
export const DEFAULT_CHUNK_RETRY_DELAY_SECONDS = 2;
/** How often expired chunks are looked for (one server at a time). */
export const DEFAULT_JOB_MAINTENANCE_SECONDS = 10;
/** Worker loops per process, each running one chunk at a time. */
export const DEFAULT_JOB_WORKERS = 2;
/** Connections of pg-boss's own pool (PostgreSQL). */
export const DEFAULT_JOB_POOL_SIZE = 4;

/** What a server process does: `api` serves gRPC and runs no jobs; `worker` runs jobs and opens no
 * gRPC port; `all` both. */
export const SERVER_ROLES = ["api", "worker", "all"] as const;
export type ServerRole = (typeof SERVER_ROLES)[number];
