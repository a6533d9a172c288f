/**
 * The server's configuration from environment variables and command-line flags (a flag wins over
 * its variable). Every setting is listed in SETTINGS, which is also the --help text and what the
 * README's table documents. This is where the security policy lives: ExperimentService must not
 * be exposed without a token (ADMIN_TOKEN, or an admin, operator or reader token in TOKENS_FILE)
 * unless insecure development mode is asked for (INSECURE_DEV_MODE=1 or --insecure) or implied by
 * the embedded database (no DATABASE_URL: a laptop, not production).
 * startServer itself enforces whatever tokens it is given and refuses nothing, so that tests and
 * benchmarks can start servers directly.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type TokenEntry, TokenSet, envTokens } from "./ops/auth.js";
import { parseTokenFile, TokenFileError } from "./ops/token-file.js";
import {
  DEFAULT_CHUNK_TIMEOUT_SECONDS,
  DEFAULT_CHUNK_UNITS,
  DEFAULT_JOB_WORKERS,
  SERVER_ROLES,
  type ServerRole,
} from "./jobs/job-defaults.js";
import type { ServerConfig } from "./server.js";
import { DEFAULT_ASSIGNMENT_PARTITIONS } from "./store/migrations.js";
import {
  DEFAULT_CACHE_TTL_SECONDS,
  DEFAULT_INSERT_CONCURRENCY,
  DEFAULT_INSERT_MAX_WAIT_MS,
  DEFAULT_DATABASE_POOL_SIZE,
  DEFAULT_HOST,
  DEFAULT_EVENT_RETENTION_MAX,
  DEFAULT_EVENT_RETENTION_SECONDS,
  DEFAULT_EVENT_SEQUENCE_MS,
  DEFAULT_IMPORT_IDLE_MS,
  DEFAULT_LOG_LEVEL,
  DEFAULT_MEMORY_CACHE_ENTRIES,
  DEFAULT_METRICS_PORT,
  DEFAULT_PGLITE_DIR,
  DEFAULT_PORT,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_TRANSFER_POOL_SIZE,
} from "./server-defaults.js";

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

interface Setting {
  env: string;
  flag?: string;
  /** Flags without a value (booleans). */
  boolean?: boolean;
  default: string;
  help: string;
}

export const SETTINGS: readonly Setting[] = [
  {
    env: "DATABASE_URL",
    flag: "database-url",
    default: "(unset: embedded PGlite)",
    help: "PostgreSQL connection string; unset: the embedded PostgreSQL (PGlite) in PGLITE_DATA_DIR, in insecure development mode unless ADMIN_TOKEN is set",
  },
  {
    env: "DATABASE_DIRECT_URL",
    flag: "database-direct-url",
    default: "(DATABASE_URL)",
    help: "PostgreSQL connection string that reaches PostgreSQL itself, for LISTEN, migrations and job-chunk locks; set it when DATABASE_URL goes through a pooler in transaction mode (PgBouncer)",
  },
  {
    env: "DATABASE_READ_URL",
    flag: "database-read-url",
    default: "(unset: all reads on DATABASE_URL)",
    help: "streaming replicas of DATABASE_URL, comma-separated: stored assignments are read there first (what they lack, decisions and writes go to DATABASE_URL)",
  },
  {
    env: "PGLITE_DATA_DIR",
    flag: "pglite-dir",
    default: DEFAULT_PGLITE_DIR,
    help: "folder of the embedded database (without DATABASE_URL); memory:// keeps it in memory only",
  },
  {
    env: "REDIS_URL",
    flag: "redis-url",
    default: "(unset: in-process cache only)",
    help: "Redis connection string (redis-cluster://h:p,h:p for a cluster); unset: no shared cache",
  },
  { env: "HOST", flag: "host", default: DEFAULT_HOST, help: "address to listen on (0.0.0.0 for all)" },
  { env: "PORT", flag: "port", default: String(DEFAULT_PORT), help: "gRPC port" },
  {
    env: "HTTP_PORT",
    flag: "http-port",
    default: "(unset: off)",
    help: "port of Connect, gRPC-Web and HTTP/JSON (e.g. 8080), beside gRPC on PORT; unset or 0: off",
  },
  {
    env: "ADMIN_TOKEN",
    default: "(unset)",
    help: "an admin token (named ADMIN_TOKEN); this or TOKENS_FILE is required unless insecure development mode",
  },
  {
    env: "ASSIGN_TOKEN",
    default: "(unset)",
    help: "an assign token (named ASSIGN_TOKEN); with it (or assign tokens in TOKENS_FILE) AssignmentService demands a token",
  },
  {
    env: "TOKENS_FILE",
    flag: "tokens-file",
    default: "(unset)",
    help: "file of named tokens and their roles, one '<name> <role> <token>' a line; reloaded on SIGHUP",
  },
  {
    env: "INSECURE_DEV_MODE",
    flag: "insecure",
    boolean: true,
    default: "0",
    help: "1: serve ExperimentService without a token (local development only)",
  },
  {
    env: "TLS_CERT_FILE",
    flag: "tls-cert",
    default: "(unset: plaintext)",
    help: "PEM certificate chain; with TLS_KEY_FILE the server speaks TLS",
  },
  { env: "TLS_KEY_FILE", flag: "tls-key", default: "(unset)", help: "PEM private key of TLS_CERT_FILE" },
  {
    env: "METRICS_PORT",
    flag: "metrics-port",
    default: String(DEFAULT_METRICS_PORT),
    help: "Prometheus metrics on http://METRICS_HOST:METRICS_PORT/metrics; 0 turns metrics off",
  },
  { env: "METRICS_HOST", flag: "metrics-host", default: "(HOST)", help: "address of the metrics endpoint" },
  {
    env: "REDIS_PREFIX",
    flag: "redis-prefix",
    default: "(empty)",
    help: "prefix of every Redis key, to share one Redis between deployments",
  },
  { env: "CACHE_TTL_SECONDS", flag: "cache-ttl", default: String(DEFAULT_CACHE_TTL_SECONDS), help: "lifetime of a Redis cache entry" },
  {
    env: "MEMORY_CACHE_ENTRIES",
    flag: "memory-cache-entries",
    default: String(DEFAULT_MEMORY_CACHE_ENTRIES),
    help: "most stored assignments held in process (32 bytes each, outside the JS heap); 0 turns it off",
  },
  {
    env: "SHUTDOWN_GRACE_MS",
    flag: "shutdown-grace",
    default: String(DEFAULT_SHUTDOWN_GRACE_MS),
    help: "on SIGTERM, how long in-flight calls may run before they are cancelled (pending writes are completed either way)",
  },
  {
    env: "ASSIGNMENT_PARTITIONS",
    flag: "assignment-partitions",
    default: String(DEFAULT_ASSIGNMENT_PARTITIONS),
    help: "hash partitions (by unit id) of the stored assignments, made at install or at the upgrade to the partitioned table; fixed afterwards",
  },
  {
    env: "DATABASE_POOL_SIZE",
    flag: "database-pool-size",
    default: String(DEFAULT_DATABASE_POOL_SIZE),
    help: "PostgreSQL connections of everything but bulk transfers",
  },
  {
    env: "TRANSFER_POOL_SIZE",
    flag: "transfer-pool-size",
    default: String(DEFAULT_TRANSFER_POOL_SIZE),
    help: "PostgreSQL connections of imports, exports and copies, apart from the others (streams never take page loads' connections)",
  },
  {
    env: "INSERT_CONCURRENCY",
    flag: "insert-concurrency",
    default: String(DEFAULT_INSERT_CONCURRENCY),
    help: "INSERTs of new assignments running at once; more new rows wait to share the next one (one commit for many calls)",
  },
  {
    env: "INSERT_MAX_WAIT_MS",
    flag: "insert-max-wait",
    default: String(DEFAULT_INSERT_MAX_WAIT_MS),
    help: "longest a new row waits for a shared INSERT while all are busy",
  },
  {
    env: "IMPORT_IDLE_MS",
    flag: "import-idle",
    default: String(DEFAULT_IMPORT_IDLE_MS),
    help: "an import whose client sends nothing for this long is abandoned (nothing stored; it holds a transaction open meanwhile)",
  },
  {
    env: "EVENT_SEQUENCE_MS",
    default: String(DEFAULT_EVENT_SEQUENCE_MS),
    help: "pause between steps of the assignment-event sequencer (how soon a committed change has its position)",
  },
  {
    env: "EVENT_RETENTION_SECONDS",
    default: String(DEFAULT_EVENT_RETENTION_SECONDS),
    help: "assignment events older than this are pruned (WatchAssignments from an older position: OUT_OF_RANGE); 0: no limit by age",
  },
  {
    env: "EVENT_RETENTION_MAX",
    default: String(DEFAULT_EVENT_RETENTION_MAX),
    help: "at most this many newest assignment events are kept; 0: no limit by number",
  },
  {
    env: "NATS_URL",
    default: "(unset: no event sink)",
    help: "NATS server with JetStream: assignment events are published to stream NATS_STREAM, one subject per experiment, by one server at a time",
  },
  {
    env: "NATS_STREAM",
    default: "ASSIGNMENT_EVENTS",
    help: "JetStream stream of the assignment events (made at start when missing); subjects assignments.experiment.<key> and assignments.erased.<unit type>",
  },
  {
    env: "WORKERS",
    flag: "workers",
    default: "1",
    help: "server processes on the one port (Node's cluster module; one per core to use every core); needs DATABASE_URL",
  },
  {
    env: "ROLE",
    flag: "role",
    default: "all",
    help: "api: serve gRPC and run no jobs; worker: run jobs and open no gRPC port; all: both",
  },
  {
    env: "JOB_WORKERS",
    flag: "job-workers",
    default: String(DEFAULT_JOB_WORKERS),
    help: "job chunks this process runs at once (roles worker and all)",
  },
  {
    env: "JOB_CHUNK_UNITS",
    flag: "job-chunk-units",
    default: String(DEFAULT_CHUNK_UNITS),
    help: "units per chunk of a job (its checkpoint; jobs started from now on)",
  },
  {
    env: "JOB_CHUNK_TIMEOUT_SECONDS",
    flag: "job-chunk-timeout",
    default: String(DEFAULT_CHUNK_TIMEOUT_SECONDS),
    help: "a chunk running this long is taken for dead (its worker crashed) and run again",
  },
  {
    env: "LOG_LEVEL",
    flag: "log-level",
    default: DEFAULT_LOG_LEVEL,
    help: "pino level: debug (one line per call), info, warn, error, silent",
  },
];

export interface LoadedConfig {
  server: Omit<ServerConfig, "logger">;
  /** The token file, read again on SIGHUP (loadTokenFile). */
  tokensFile?: string;
  logLevel: string;
  /** Server processes (src/cluster.ts); 1: this process serves. */
  workers: number;
  /** Set when --help was asked for: print it and exit. */
  help?: string;
}

export function helpText(): string {
  const lines = [
    "Usage: npm start -- [flags]   (or: node --import tsx src/main.ts [flags])",
    "",
    "Every flag has an environment variable; the flag wins.",
    "",
  ];
  for (const s of SETTINGS) {
    const flag = s.flag ? `--${s.flag}${s.boolean ? "" : " <value>"}` : "";
    lines.push(`  ${s.env.padEnd(22)}${flag.padEnd(32)}${s.help} [default: ${s.default}]`);
  }
  lines.push(`  ${"".padEnd(22)}${"--help".padEnd(32)}this text`);
  return lines.join("\n") + "\n";
}

/** Parses flags and environment; throws ConfigError naming the setting at fault. */
export function loadConfig(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const s of SETTINGS) if (s.flag) options[s.flag] = { type: s.boolean ? "boolean" : "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`);
  }
  if (values.help) return { server: {}, logLevel: DEFAULT_LOG_LEVEL, workers: 1, help: helpText() };

  /** The flag's value, else the variable's; empty counts as unset. */
  const get = (name: string): string | undefined => {
    const s = SETTINGS.find((x) => x.env === name)!;
    const fromFlag = s.flag ? values[s.flag] : undefined;
    if (typeof fromFlag === "string" && fromFlag !== "") return fromFlag;
    if (fromFlag === true) return "1";
    const v = env[name];
    return v === undefined || v === "" ? undefined : v;
  };
  const label = (name: string) => {
    const s = SETTINGS.find((x) => x.env === name)!;
    return s.flag ? `${name} (--${s.flag})` : name;
  };
  /** The setting as an integer; `fallback` when unset (undefined: startServer's own default). */
  const int = <F extends number | undefined>(name: string, fallback: F, min: number, max: number): number | F => {
    const v = get(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
      throw new ConfigError(`${label(name)}: must be an integer ${min}..${max} (got "${v}")`);
    return Number(v);
  };
  const bool = (name: string): boolean => {
    const v = (get(name) ?? "0").toLowerCase();
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off"].includes(v)) return false;
    throw new ConfigError(`${label(name)}: must be 1 or 0 (got "${v}")`);
  };

  const databaseUrl = get("DATABASE_URL");
  const databaseDirectUrl = get("DATABASE_DIRECT_URL");
  const databaseReadUrls = splitUrls(get("DATABASE_READ_URL"));
  for (const [name, v] of [
    ["DATABASE_DIRECT_URL", databaseDirectUrl],
    ["DATABASE_READ_URL", databaseReadUrls],
  ] as const) {
    if (v !== undefined && !databaseUrl)
      throw new ConfigError(`${label(name)}: needs DATABASE_URL (the embedded PGlite database has no other connection)`);
  }
  const adminToken = get("ADMIN_TOKEN");
  const assignToken = get("ASSIGN_TOKEN");
  for (const [name, token] of [
    ["ADMIN_TOKEN", adminToken],
    ["ASSIGN_TOKEN", assignToken],
  ] as const) {
    if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) throw new ConfigError(`${name}: must be printable ASCII without spaces`);
  }
  const tokensFile = get("TOKENS_FILE");
  const tokens = tokensFile === undefined ? undefined : loadTokenFile(tokensFile, label("TOKENS_FILE"));
  try {
    new TokenSet([...(tokens ?? []), ...envTokens(adminToken, assignToken)]);
  } catch (err) {
    throw new ConfigError(`${label("TOKENS_FILE")}, ADMIN_TOKEN and ASSIGN_TOKEN: ${(err as Error).message}`);
  }
  const guarded = adminToken !== undefined || (tokens ?? []).some((t) => t.role !== "assign");
  const embedded = databaseUrl === undefined;
  const insecure = bool("INSECURE_DEV_MODE") || (embedded && !guarded);
  if (!guarded && !insecure) {
    throw new ConfigError(
      "refusing to start: ExperimentService (create, change and stop experiments, import assignments) would be open to anyone who can reach the port. " +
        "Set ADMIN_TOKEN (clients send it as 'authorization: Bearer <token>') or TOKENS_FILE with an admin, operator or reader token, " +
        "or set INSECURE_DEV_MODE=1 (or pass --insecure) for local development.",
    );
  }

  const certFile = get("TLS_CERT_FILE");
  const keyFile = get("TLS_KEY_FILE");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError(`${label("TLS_CERT_FILE")} and ${label("TLS_KEY_FILE")}: give both for TLS, or neither`);
  }
  for (const [name, file] of [
    ["TLS_CERT_FILE", certFile],
    ["TLS_KEY_FILE", keyFile],
  ] as const) {
    if (file === undefined) continue;
    try {
      accessSync(file, constants.R_OK);
    } catch {
      throw new ConfigError(`${label(name)}: cannot read ${file}`);
    }
  }

  const logLevel = get("LOG_LEVEL") ?? DEFAULT_LOG_LEVEL;
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(logLevel)) {
    throw new ConfigError(`${label("LOG_LEVEL")}: must be one of debug, info, warn, error, silent (got "${logLevel}")`);
  }
  const metricsPort = int("METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535);
  const httpPort = int("HTTP_PORT", 0, 0, 65535);
  const role = get("ROLE") ?? "all";
  if (!(SERVER_ROLES as readonly string[]).includes(role)) {
    throw new ConfigError(`${label("ROLE")}: must be one of ${SERVER_ROLES.join(", ")} (got "${role}")`);
  }
  const host = get("HOST") ?? DEFAULT_HOST;

  const workers = int("WORKERS", 1, 1, 1_024);
  if (workers > 1 && !databaseUrl) {
    throw new ConfigError(`${label("WORKERS")}: several workers need DATABASE_URL (the embedded PGlite database belongs to one process)`);
  }

  return {
    logLevel,
    tokensFile,
    workers,
    server: {
      databaseUrl,
      databaseDirectUrl,
      databaseReadUrls,
      pgliteDataDir: get("PGLITE_DATA_DIR") ?? DEFAULT_PGLITE_DIR,
      redisUrl: get("REDIS_URL"),
      host,
      port: int("PORT", DEFAULT_PORT, 0, 65535),
      httpPort: httpPort === 0 ? undefined : httpPort,
      redisPrefix: get("REDIS_PREFIX") ?? "",
      cacheTtlSeconds: int("CACHE_TTL_SECONDS", undefined, 1, 2 ** 31 - 1),
      memoryCacheEntries: int("MEMORY_CACHE_ENTRIES", undefined, 0, 2 ** 31 - 1),
      databasePoolSize: int("DATABASE_POOL_SIZE", undefined, 1, 10_000),
      assignmentPartitions: int("ASSIGNMENT_PARTITIONS", undefined, 1, 1_024),
      transferPoolSize: int("TRANSFER_POOL_SIZE", undefined, 1, 1_000),
      importIdleMs: int("IMPORT_IDLE_MS", undefined, 1_000, 3_600_000),
      insertConcurrency: int("INSERT_CONCURRENCY", undefined, 1, 64),
      insertMaxWaitMs: int("INSERT_MAX_WAIT_MS", undefined, 0, 1_000),
      shutdownGraceMs: int("SHUTDOWN_GRACE_MS", undefined, 0, 3_600_000),
      events: {
        sequenceMs: int("EVENT_SEQUENCE_MS", undefined, 1, 60_000),
        retentionSeconds: int("EVENT_RETENTION_SECONDS", undefined, 0, 2 ** 31 - 1),
        retentionMax: int("EVENT_RETENTION_MAX", undefined, 0, Number.MAX_SAFE_INTEGER),
        natsUrl: get("NATS_URL"),
        natsStream: get("NATS_STREAM"),
      },
      adminToken,
      assignToken,
      tokens,
      insecure,
      tls: certFile && keyFile ? { certFile, keyFile } : undefined,
      metricsPort: metricsPort === 0 ? undefined : metricsPort,
      metricsHost: get("METRICS_HOST") ?? host,
      role: role as ServerRole,
      jobs: {
        workers: int("JOB_WORKERS", undefined, 1, 64),
        chunkUnits: int("JOB_CHUNK_UNITS", undefined, 1, 100_000),
        chunkTimeoutSeconds: int("JOB_CHUNK_TIMEOUT_SECONDS", undefined, 1, 86_400),
      },
    },
  };
}

/** A comma-separated list of connection strings (spaces around them ignored); undefined when empty. */
function splitUrls(v: string | undefined): string[] | undefined {
  const urls = (v ?? "")
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u !== "");
  return urls.length > 0 ? urls : undefined;
}

/** The entries of the token file at `path` (see src/ops/token-file.ts for its format); throws
 * ConfigError naming the file and the line at fault. */
export function loadTokenFile(path: string, setting = "TOKENS_FILE"): TokenEntry[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return parseTokenFile(text);
  } catch (err) {
    if (err instanceof TokenFileError) throw new ConfigError(`${setting}: ${path} ${err.message}`);
    throw err;
  }
}
