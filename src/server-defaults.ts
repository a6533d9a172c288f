/**
 * The server's defaults: what it uses for a setting nobody gave (config.ts documents each one
 * and startServer applies it). Plain constants; this module imports nothing.
 */

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 50051;
/** Where a client finds a server started with the defaults. */
export const DEFAULT_ADDRESS = `${DEFAULT_HOST}:${DEFAULT_PORT}`;
/** Prometheus metrics; config.ts turns them on at this port, startServer only when given one. */
export const DEFAULT_METRICS_PORT = 9464;
/** Folder of the embedded database (PGlite) when there is no DATABASE_URL. */
export const DEFAULT_PGLITE_DIR = "./data/pglite";
/** PostgreSQL connections. */
export const DEFAULT_DATABASE_POOL_SIZE = 20;
/** PostgreSQL connections of bulk transfers (imports, exports, copies), apart from the pool above
 * so that no number of streams can take the connections page loads need. */
export const DEFAULT_TRANSFER_POOL_SIZE = 4;
/** How long a bulk transfer waits for one of those connections before UNAVAILABLE. */
export const DEFAULT_TRANSFER_CONNECTION_WAIT_MS = 30_000;
/** How long an import may wait for its client's next message before it is abandoned (it holds a
 * transfer connection and an open transaction meanwhile). */
export const DEFAULT_IMPORT_IDLE_MS = 30_000;
/** INSERTs of new assignments running at once; beyond them, new rows wait to share the next one
 * (a commit each: more in flight means fewer rows per commit). */
export const DEFAULT_INSERT_CONCURRENCY = 4;
/** Longest a new row waits for a shared INSERT while all of them are busy. */
export const DEFAULT_INSERT_MAX_WAIT_MS = 2;
/** Lifetime of a Redis cache entry. */
export const DEFAULT_CACHE_TTL_SECONDS = 86_400;
/** Stored assignments held in process (32 bytes each, outside the JavaScript heap). */
export const DEFAULT_MEMORY_CACHE_ENTRIES = 2_000_000;
/** How often the configuration epoch is checked (on the listening connection) for changes missed by
 * LISTEN/NOTIFY; each successful check renews the trust in cached stored values (CACHE_TRUST_MS). */
export const DEFAULT_CONFIG_CHECK_MS = 250;
/** How long after the start of its last successful configuration check (or load) a server still
 * answers cached stored values (SPEC: a changed value stops being answered by every server within
 * 1 s). Three checks in a row may fail or be late before caches stop answering; the rest of the
 * second is margin for a busy event loop and a read already under way. */
export const CACHE_TRUST_MS = 750;
/** On shutdown, how long in-flight calls may take before they are cancelled. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
export const DEFAULT_LOG_LEVEL = "info";
/** Pause between steps of the assignment-event sequencer (numbering committed events). */
export const DEFAULT_EVENT_SEQUENCE_MS = 50;
/** Assignment events older than this are pruned (7 days). */
export const DEFAULT_EVENT_RETENTION_SECONDS = 604_800;
/** At most this many newest assignment events are kept. */
export const DEFAULT_EVENT_RETENTION_MAX = 100_000_000;
