import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { AssignmentService } from "../gen/ts/assignment/v1/assignment_service_pb.js";
import type { PGlite } from "@electric-sql/pglite";
import type PgBoss from "pg-boss";
import { CohortService } from "../gen/ts/assignment/v1/cohort_service_pb.js";
import { ExperimentService } from "../gen/ts/assignment/v1/experiment_service_pb.js";
import { ALWAYS_TRUSTED } from "./cache/assignment-cache.js";
import { JobService } from "../gen/ts/assignment/v1/job_service_pb.js";
import { MemoryCache } from "./cache/memory-cache.js";
import { NullCache } from "./cache/null-cache.js";
import { connectRedis, RedisCache } from "./cache/redis-cache.js";
import { bindService } from "./grpc/bind-service.js";
import { addStandardServices } from "./grpc/standard-services.js";
import { startBoss } from "./jobs/boss.js";
import {
  DEFAULT_CHUNK_UNITS,
  DEFAULT_CHUNK_RETRY_DELAY_SECONDS,
  DEFAULT_CHUNK_RETRY_LIMIT,
  DEFAULT_CHUNK_TIMEOUT_SECONDS,
  DEFAULT_JOB_MAINTENANCE_SECONDS,
  DEFAULT_JOB_POOL_SIZE,
  DEFAULT_JOB_WORKERS,
  type ServerRole,
} from "./jobs/job-defaults.js";
import { Jobs } from "./jobs/jobs.js";
import { Schedules } from "./jobs/schedules.js";
import { createLogger, type Logger } from "./logger.js";
import { authenticator, envTokens, type TokenEntry, TokenSet } from "./ops/auth.js";
import { callRecorder, observeCalls } from "./ops/call-observer.js";
import { connectRoutes, grpcOnlyMethods } from "./connect/connect-routes.js";
import { defaultConsoleDir, loadConsoleFiles } from "./connect/console-files.js";
import { serveHttp } from "./connect/serve-http.js";
import type { ServiceHandlers } from "./service/handler-types.js";
import type { DescService } from "@bufbuild/protobuf";
import { MeteredAssigner } from "./ops/metered-assigner.js";
import { AggregatorRegistry } from "prom-client";
import { ServerMetrics, serveMetrics } from "./ops/metrics.js";
import { MAX_MESSAGE_BYTES } from "assignment-client/limits";
import {
  DEFAULT_CACHE_TTL_SECONDS,
  DEFAULT_CONFIG_CHECK_MS,
  DEFAULT_DATABASE_POOL_SIZE,
  DEFAULT_HOST,
  DEFAULT_EVENT_RETENTION_MAX,
  DEFAULT_EVENT_RETENTION_SECONDS,
  DEFAULT_EVENT_SEQUENCE_MS,
  DEFAULT_IMPORT_IDLE_MS,
  DEFAULT_MEMORY_CACHE_ENTRIES,
  DEFAULT_PGLITE_DIR,
  DEFAULT_PORT,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_TRANSFER_CONNECTION_WAIT_MS,
  DEFAULT_TRANSFER_POOL_SIZE,
} from "./server-defaults.js";
import { Assigner } from "./service/assigner.js";
import { assignmentHandlers } from "./service/assignment-service.js";
import { AssignmentTransfers } from "./service/assignment-transfers.js";
import { ConfigRegistry } from "./service/config-registry.js";
import { cohortHandlers } from "./service/cohort-service.js";
import { experimentServiceHandlers } from "./service/experiment-service.js";
import { jobHandlers } from "./jobs/job-service.js";
import { AssignmentStore } from "./store/assignment-store.js";
import { ConfigSnapshotStore } from "./store/config-snapshot-store.js";
import { CohortStore } from "./store/cohort-store.js";
import type { Database } from "./store/database.js";
import { ErasureStore } from "./store/erasure-store.js";
import { EventLog } from "./store/event-log.js";
import { EventSequencer } from "./service/event-sequencer.js";
import { EventPublisher } from "./sinks/event-publisher.js";
import { JetStreamSink } from "./sinks/jetstream-sink.js";
import { ExperimentStore } from "./store/experiment-store.js";
import { JobStore } from "./store/job-store.js";
import { HoldoutStore } from "./store/holdout-store.js";
import { NamespaceStore } from "./store/namespace-store.js";
import { OverrideStore } from "./store/override-store.js";
import { PgDatabase } from "./store/pg-database.js";
import { assignmentPartitionCount, partitionMovePending, runPartitionMove } from "./store/partition-move.js";
import { PgliteDatabase } from "./store/pglite-database.js";
import { TransferStore } from "./store/transfer-store.js";
import { redactUrl } from "./util/redact-url.js";

/** What startServer needs; every default is in server-defaults.ts. */
export interface ServerConfig {
  /** PostgreSQL connection string; absent: the embedded PostgreSQL (PGlite) in `pgliteDataDir`. */
  databaseUrl?: string;
  /** Reaches PostgreSQL itself, not a pooler in transaction mode: LISTEN, migrations and job-chunk
   * locks use it (they need a session across statements); default `databaseUrl`. */
  databaseDirectUrl?: string;
  /** Streaming replicas of `databaseUrl` (hot standbys): the assigner reads stored assignments
   * there first, in turn, when one has replayed every change of stored values this server knows
   * of (AssignmentStore.readReplica); what a replica lacks, decisions and writes go to
   * `databaseUrl`. Each gets a pool of `databasePoolSize`. */
  databaseReadUrls?: readonly string[];
  /** Folder of the embedded database when there is no `databaseUrl` (`memory://` for a throwaway
   * one); default DEFAULT_PGLITE_DIR. */
  pgliteDataDir?: string;
  /** Redis connection string; absent: no shared cache, only the in-process one. */
  redisUrl?: string;
  /** Address to listen on; default DEFAULT_HOST. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default DEFAULT_PORT. */
  port?: number;
  /** Port of Connect, gRPC-Web and HTTP/JSON (the same handlers, auth, limits, metrics and logs
   * as gRPC), on `host`; 0 picks a free one; absent: no HTTP port. */
  httpPort?: number;
  /** Folder of the built web console, served on the HTTP port under /console/; default: the
   * repository's console/dist when built (`npm run build`). */
  consoleDir?: string;
  /** Prefix of every Redis key (lets several deployments or tests share one Redis). */
  redisPrefix?: string;
  /** Lifetime of a Redis cache entry in seconds; default DEFAULT_CACHE_TTL_SECONDS. */
  cacheTtlSeconds?: number;
  /** Most entries of the in-process cache (32 bytes each, outside the JS heap, allocated up front); default DEFAULT_MEMORY_CACHE_ENTRIES; 0 turns it off. */
  memoryCacheEntries?: number;
  /** Hash partitions of the assignments table, when a migration makes it (install, or the upgrade
   * to the partitioned table); default DEFAULT_ASSIGNMENT_PARTITIONS. */
  assignmentPartitions?: number;
  /** PostgreSQL pool size; default DEFAULT_DATABASE_POOL_SIZE. */
  databasePoolSize?: number;
  /** PostgreSQL connections of imports, exports and copies, a pool of their own; default
   * DEFAULT_TRANSFER_POOL_SIZE. (The embedded database has one connection for everything.) */
  transferPoolSize?: number;
  /** How long an import waits for its client's next message before it is abandoned (nothing is
   * stored); default DEFAULT_IMPORT_IDLE_MS. */
  importIdleMs?: number;
  /** INSERTs of new assignments at once (their commits are shared by concurrent calls); default
   * DEFAULT_INSERT_CONCURRENCY. */
  insertConcurrency?: number;
  /** Longest a new row waits for a shared INSERT while all are busy; default DEFAULT_INSERT_MAX_WAIT_MS. */
  insertMaxWaitMs?: number;
  /** How often to check for configuration changes missed by LISTEN/NOTIFY; default DEFAULT_CONFIG_CHECK_MS. */
  configCheckMs?: number;
  /** On close, how long in-flight calls may take before they are cancelled; default DEFAULT_SHUTDOWN_GRACE_MS. */
  shutdownGraceMs?: number;
  logger?: Logger;
  /** An `admin` token (named ADMIN_TOKEN). */
  adminToken?: string;
  /** An `assign` token (named ASSIGN_TOKEN). */
  assignToken?: string;
  /** Named tokens with their roles (the token file's); `replaceTokens` swaps them later. Whether a
   * service demands a token at all is decided at start: ExperimentService does when there is an
   * admin, operator or reader token, AssignmentService when there is an assign token. Without
   * any, the service is open to anyone who can connect (tests; `loadConfig` in config.ts refuses an
   * open ExperimentService unless insecure development mode is asked for). */
  tokens?: readonly TokenEntry[];
  /** Insecure development mode was asked for: only changes what the log says. */
  insecure?: boolean;
  /** Serve TLS with this certificate chain and key (PEM files); plaintext when absent. */
  tls?: { certFile: string; keyFile: string };
  /** Port of the Prometheus metrics endpoint (GET /metrics); 0 picks a free one; absent: no
   * metrics at all (nothing is counted). */
  metricsPort?: number;
  /** Address of the metrics endpoint; default `host`. */
  metricsHost?: string;
  /** A worker of a cluster (src/cluster.ts): metrics are counted (when metricsPort is set) but
   * served by the primary, which collects them from every worker, not by this process. */
  clusterWorker?: boolean;
  /** `api`: serves gRPC and runs no jobs; `worker`: runs jobs and opens no gRPC port; `all` (default): both. */
  role?: ServerRole;
  /** The job engine's settings (defaults in src/jobs/job-defaults.ts). */
  jobs?: JobSettings;
  /** Assignment events (SPEC.md "Assignment events"); defaults in server-defaults.ts. */
  events?: EventSettings;
}

export interface EventSettings {
  /** Pause between sequencer steps; default DEFAULT_EVENT_SEQUENCE_MS. */
  sequenceMs?: number;
  /** Events older than this are pruned; 0: no limit by age. Default DEFAULT_EVENT_RETENTION_SECONDS. */
  retentionSeconds?: number;
  /** At most this many newest events are kept; 0: no limit by number. Default DEFAULT_EVENT_RETENTION_MAX. */
  retentionMax?: number;
  /** NATS server with JetStream: the events are published there (one publisher across servers); absent: no sink. */
  natsUrl?: string;
  /** JetStream stream of the events; default ASSIGNMENT_EVENTS. */
  natsStream?: string;
  /** Subjects `<prefix>.experiment.<key>` and `<prefix>.erased.<unit type>`; default `assignments`. */
  natsSubjectPrefix?: string;
  /** How often a server without the publisher lease tries to take it; default 1,000 ms. */
  publisherLeaseRetryMs?: number;
}

export type { ServerRole } from "./jobs/job-defaults.js";

export interface JobSettings {
  /** Units per chunk; default DEFAULT_CHUNK_UNITS. */
  chunkUnits?: number;
  /** Seconds before an active chunk is taken for dead and retried; default DEFAULT_CHUNK_TIMEOUT_SECONDS. */
  chunkTimeoutSeconds?: number;
  retryLimit?: number;
  retryDelaySeconds?: number;
  maintenanceIntervalSeconds?: number;
  /** Worker loops of this process (one chunk at a time each); default DEFAULT_JOB_WORKERS. */
  workers?: number;
  /** Seconds an idle worker loop waits before asking for a chunk again; default 1. */
  pollingIntervalSeconds?: number;
}

export interface RunningServer {
  /** The port actually bound. */
  port: number;
  address: string;
  registry: ConfigRegistry;
  database: Database;
  /** Answers assignments; `pendingCacheWrites` shows how far Redis is behind. */
  assigner: Assigner;
  /** "postgres" (databaseUrl) or "pglite" (embedded). */
  databaseKind: "postgres" | "pglite";
  /** "redis" (redisUrl) or "memory" (in-process only). */
  cacheKind: "redis" | "memory";
  /** The metrics endpoint's port, when metrics are on. */
  metricsPort?: number;
  /** The HTTP port (Connect, gRPC-Web, HTTP/JSON), when it is on. */
  httpPort?: number;
  role: ServerRole;
  /** The event publisher (when NATS_URL is set): `leader` tells whether this server holds its lease. */
  publisher?: EventPublisher;
  /** The job engine (pg-boss) and what starts and runs jobs. */
  jobs: Jobs;
  /** Replaces the named tokens (a reloaded token file; ADMIN_TOKEN and ASSIGN_TOKEN stay), for
   * every call from now on. Throws, changing nothing, when a name or a token is given twice. A
   * service that was open stays open, and one that demanded a token still does. */
  replaceTokens(tokens: readonly TokenEntry[]): TokenSet;
  close(): Promise<void>;
}

/** Closers of what start-up opened so far, run in reverse order if it fails halfway. */
class Opened {
  private readonly closers: Array<() => unknown> = [];

  add<T>(resource: T, close: (resource: T) => unknown): T {
    this.closers.push(() => close(resource));
    return resource;
  }

  async closeAll(log: Logger): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) {
      try {
        await close();
      } catch (err) {
        log.warn({ err }, "closing after a failed start failed");
      }
    }
  }
}

/**
 * The database the configuration names: PostgreSQL at its URL, else the embedded PGlite. On
 * PostgreSQL, bulk transfers (imports, exports, copies) get connections of their own
 * (`transfers`, a second small pool): a stream can hold one while its peer is slow (an import's
 * transaction lasts as long as its upload), and no number of streams may take the connections
 * that page loads need. The embedded database has one connection, shared by everything.
 */
async function openDatabase(
  config: ServerConfig,
  log: Logger,
  opened: Opened,
): Promise<{ database: Database; transfers: Database; replicas: Database[]; description: string; pglite?: PGlite }> {
  if (config.databaseUrl) {
    const database = opened.add(
      new PgDatabase({
        url: config.databaseUrl,
        directUrl: config.databaseDirectUrl,
        max: config.databasePoolSize ?? DEFAULT_DATABASE_POOL_SIZE,
        log: (m) => log.warn(m),
      }),
      (d) => d.close(),
    );
    const transfers = opened.add(
      new PgDatabase({
        url: config.databaseUrl,
        directUrl: config.databaseDirectUrl,
        max: config.transferPoolSize ?? DEFAULT_TRANSFER_POOL_SIZE,
        connectionTimeoutMs: DEFAULT_TRANSFER_CONNECTION_WAIT_MS,
        applicationName: "assignment-server-transfers",
        log: (m) => log.warn(m),
      }),
      (d) => d.close(),
    );
    const replicas = (config.databaseReadUrls ?? []).map((url) =>
      opened.add(
        new PgDatabase({
          url,
          max: config.databasePoolSize ?? DEFAULT_DATABASE_POOL_SIZE,
          applicationName: "assignment-server-replica",
          log: (m) => log.warn(m),
        }),
        (d) => d.close(),
      ),
    );
    const description = [config.databaseUrl, ...(config.databaseReadUrls ?? [])].map(redactUrl).join(", read: ");
    return { database, transfers, replicas, description };
  }
  const database = opened.add(await PgliteDatabase.open({ dataDir: config.pgliteDataDir ?? DEFAULT_PGLITE_DIR }), (d) => d.close());
  return {
    database,
    transfers: database,
    replicas: [],
    description: `pglite:${database.dataDir} (embedded PostgreSQL, in process)`,
    pglite: database.pg,
  };
}

/** Connects to PostgreSQL (applying migrations) and Redis, loads the configuration and serves
 * both services. Without a database URL the database is the embedded PGlite; without a Redis URL
 * the only cache is the in-process one. If start-up fails halfway, what it opened is closed
 * again (database, Redis, port, metrics endpoint) before the error is thrown. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const log = config.logger ?? createLogger();
  const opened = new Opened();
  try {
    return await start(config, log, opened);
  } catch (err) {
    await opened.closeAll(log);
    throw err;
  }
}

/** The first log line: which database and cache, and what opening the database is about to do
 * (creating an embedded one takes a while, so a first start says so instead of being silent). */
function logStarting(config: ServerConfig, log: Logger): void {
  const cache = config.redisUrl ? `redis ${redactUrl(config.redisUrl)}` : "in-process only (no Redis)";
  if (config.databaseUrl) {
    log.info({ database: redactUrl(config.databaseUrl), cache }, "starting: connecting to PostgreSQL and applying migrations…");
    return;
  }
  const dir = config.pgliteDataDir ?? DEFAULT_PGLITE_DIR;
  const fresh = dir.startsWith("memory://") || !existsSync(dir) || readdirSync(dir).length === 0;
  log.info(
    { database: `pglite:${dir} (embedded PostgreSQL, in process)`, cache },
    fresh
      ? `starting: creating the embedded database (PGlite) in ${dir}… (a first start takes about 20 s)`
      : `starting: opening the embedded database (PGlite) in ${dir}…`,
  );
}

async function start(config: ServerConfig, log: Logger, opened: Opened): Promise<RunningServer> {
  logStarting(config, log);
  const databaseKind = config.databaseUrl ? "postgres" : "pglite";
  const role = config.role ?? "all";
  const { database, transfers: transferDatabase, replicas, description, pglite } = await openDatabase(config, log, opened);
  await database.migrate({ assignmentPartitions: config.assignmentPartitions });
  if (config.assignmentPartitions !== undefined) {
    // The count is fixed when the table is made: a different setting later changes nothing.
    const made = await assignmentPartitionCount(database);
    if (made !== config.assignmentPartitions) {
      log.warn(
        { assignmentPartitions: config.assignmentPartitions, partitions: made },
        "ASSIGNMENT_PARTITIONS differs from the partitions the stored assignments were made with; it applies only when the table is made (see README: Partitioned assignments)",
      );
    }
  }
  // An installation upgraded from the unpartitioned table copies its rows over while it serves.
  let stopMove = async () => {};
  if (await partitionMovePending(database)) {
    const stop = new AbortController();
    log.info("upgrading stored assignments to the partitioned table: copying rows in batches while serving");
    const move = runPartitionMove(database, {
      signal: stop.signal,
      progress: (p) =>
        log.info(
          { rowsCopied: p.rowsCopied, seconds: Math.round(p.seconds) },
          p.done ? "stored assignments are partitioned: the upgrade is done" : "upgrading stored assignments to the partitioned table",
        ),
      onError: (err) => log.warn({ err }, "upgrading stored assignments to the partitioned table: a batch failed, trying again in 10 s"),
    }).catch((err) => log.error({ err }, "upgrade to the partitioned table stopped (resumed at the next start)"));
    stopMove = async () => {
      stop.abort();
      await move;
    };
    opened.add(move, stopMove);
  }
  const snapshots = new ConfigSnapshotStore(database);
  const registry = opened.add(new ConfigRegistry(snapshots, database.notifications, (m) => log.warn(m)), (r) => r.stop());
  await registry.start(config.configCheckMs ?? DEFAULT_CONFIG_CHECK_MS);

  const redis = config.redisUrl ? opened.add(connectRedis(config.redisUrl), (r) => r.disconnect()) : undefined;
  redis?.on("error", () => {}); // reported by RedisCache when a command fails
  const cache = redis
    ? opened.add(
        new RedisCache(redis, {
          // The installation id keeps a cache that outlives its database from answering for a new one.
          prefix: `${config.redisPrefix ?? ""}${(await snapshots.installationId()).slice(0, 12)}:`,
          ttlSeconds: config.cacheTtlSeconds ?? DEFAULT_CACHE_TTL_SECONDS,
          log: (m) => log.warn(m),
        }),
        (c) => c.close(),
      )
    : new NullCache();
  // Every server runs the event sequencer; its steps run one at a time across servers.
  const eventLog = new EventLog(database);
  const ev = config.events ?? {};
  const retentionSeconds = ev.retentionSeconds ?? DEFAULT_EVENT_RETENTION_SECONDS;
  const retentionMax = ev.retentionMax ?? DEFAULT_EVENT_RETENTION_MAX;
  const sequencer = opened.add(
    new EventSequencer(eventLog, {
      intervalMs: ev.sequenceMs ?? DEFAULT_EVENT_SEQUENCE_MS,
      retentionMs: retentionSeconds === 0 ? undefined : retentionSeconds * 1000,
      retentionEvents: retentionMax === 0 ? undefined : retentionMax,
      log: (msg, err) => log.warn({ err }, msg),
    }),
    (s) => s.stop(),
  );
  sequencer.start();
  const natsUrl = ev.natsUrl;
  const publisher = natsUrl
    ? opened.add(
        new EventPublisher(
          database,
          eventLog,
          `jetstream:${ev.natsStream ?? "ASSIGNMENT_EVENTS"}`,
          () => JetStreamSink.open({ url: natsUrl, stream: ev.natsStream, subjectPrefix: ev.natsSubjectPrefix }),
          {
            leaseRetryMs: ev.publisherLeaseRetryMs,
            waitForEvents: (ms, signal) => sequencer.waitForEvents(ms, signal),
            log: (msg, err) => log.warn({ err }, msg),
          },
        ),
        (p) => p.close(),
      )
    : undefined;
  publisher?.start();
  const memory = new MemoryCache(config.memoryCacheEntries ?? DEFAULT_MEMORY_CACHE_ENTRIES);
  let assignmentStore!: AssignmentStore;
  const metrics =
    config.metricsPort === undefined
      ? undefined
      : new ServerMetrics({
          pendingWrites: () => assignmentStore.pendingWrites,
          sharedCache: redis !== undefined,
          liveCounts: () => eventLog.runningCounts(),
          replicas: replicas.length > 0,
        });
  let replicaErrorLogged = Number.NEGATIVE_INFINITY;
  assignmentStore = new AssignmentStore(database, {
    // Page loads name the unit's partition of assignments (the catalog's layout, read again every
    // few seconds). Not on the embedded database: one process, where the partitioned table's cost
    // was not measured.
    partitionReads: databaseKind === "postgres",
    onLayoutError: (err) =>
      log.warn({ err }, "reading the partition layout of assignments failed: page loads read through the partitioned table meanwhile"),
    writeConcurrency: config.insertConcurrency,
    maxWaitMs: config.insertMaxWaitMs,
    onInsertBatch: metrics ? (n) => metrics.insertBatch(n) : undefined,
    replicas: {
      databases: replicas,
      minEpoch: () => registry.replicaEpoch(),
      onError: (err) => {
        // At most one line in 10 s: a replica that is down fails every read (they go to the primary).
        if (performance.now() - replicaErrorLogged < 10_000) return;
        replicaErrorLogged = performance.now();
        log.warn({ err }, "a read replica failed a read: reading from the primary instead");
      },
    },
  });
  // The registry decides when cached stored values may be answered (SPEC: a changed value stops
  // being answered everywhere within 1 s; see ConfigRegistry). The embedded database has one
  // process (its folder is locked), which makes every change itself and reloads before answering
  // the call: its caches are always right, and must not wait for its single connection.
  const trust = databaseKind === "pglite" ? ALWAYS_TRUSTED : registry;
  const assigner = metrics
    ? new MeteredAssigner(assignmentStore, memory, cache, metrics, trust)
    : new Assigner(assignmentStore, memory, cache, undefined, trust);
  const shutdown = new AbortController();

  const js = config.jobs ?? {};
  const boss: PgBoss = opened.add(
    await startBoss(
      config.databaseUrl ? { url: config.databaseUrl, max: DEFAULT_JOB_POOL_SIZE } : { pglite: pglite! },
      {
        chunkTimeoutSeconds: js.chunkTimeoutSeconds ?? DEFAULT_CHUNK_TIMEOUT_SECONDS,
        retryLimit: js.retryLimit ?? DEFAULT_CHUNK_RETRY_LIMIT,
        retryDelaySeconds: js.retryDelaySeconds ?? DEFAULT_CHUNK_RETRY_DELAY_SECONDS,
        maintenanceIntervalSeconds: js.maintenanceIntervalSeconds ?? DEFAULT_JOB_MAINTENANCE_SECONDS,
      },
      (err) => log.warn({ err }, "job engine (pg-boss) error"),
    ),
    (b) => b.stop({ graceful: false, wait: true }),
  );
  const cohortStore = new CohortStore(transferDatabase);
  const experiments = new ExperimentStore(database);
  const transferStore = new TransferStore(transferDatabase);
  const transfers = new AssignmentTransfers(transferStore, experiments, registry, {
    importIdleMs: config.importIdleMs ?? DEFAULT_IMPORT_IDLE_MS,
  });
  const jobs = new Jobs(
    boss,
    database,
    new JobStore(database),
    cohortStore,
    registry,
    assigner,
    { transfers, store: transferStore, experiments },
    js.chunkUnits ?? DEFAULT_CHUNK_UNITS,
    log,
  );
  const schedules = opened.add(new Schedules(boss, database, jobs, log), (s) => s.stop());
  if (role !== "api") {
    await jobs.work(js.workers ?? DEFAULT_JOB_WORKERS, js.pollingIntervalSeconds ?? 1);
    await schedules.run();
  }

  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    // Channelz (grpc-js's call and socket statistics for the channelz service) counts every call
    // and message; the server does not offer that service, so it is bookkeeping nobody reads,
    // about 4% of a warm page load's CPU in a profile.
    "grpc.enable_channelz": 0,
    interceptors: [observeCalls(log, metrics)],
  });
  const fixedTokens = envTokens(config.adminToken, config.assignToken);
  let tokens = new TokenSet([...(config.tokens ?? []), ...fixedTokens]);
  const open = new Set<string>();
  if (!tokens.entries.some((t) => t.role !== "assign")) {
    for (const s of [ExperimentService, CohortService, JobService]) open.add(s.typeName);
  }
  if (!tokens.entries.some((t) => t.role === "assign")) open.add(AssignmentService.typeName);
  const bindOptions = {
    log: (msg: string, err: unknown) => log.error({ err }, msg),
    interceptor: authenticator({ open, tokens: () => tokens }),
  };
  const assignmentImpl = assignmentHandlers(registry, assigner, shutdown.signal);
  const a = bindService(AssignmentService, assignmentImpl, bindOptions);
  server.addService(a.definition, a.implementation);
  const experimentImpl = experimentServiceHandlers({
    experiments,
    namespaces: new NamespaceStore(database),
    holdouts: new HoldoutStore(database),
    overrides: new OverrideStore(database),
    erasures: new ErasureStore(database),
    transfers,
    registry,
    database,
    events: eventLog,
    sequencer,
  });
  const e = bindService(ExperimentService, experimentImpl, bindOptions);
  server.addService(e.definition, e.implementation);
  const c = bindService(
    CohortService,
    cohortHandlers(cohortStore, { uploadIdleMs: config.importIdleMs ?? DEFAULT_IMPORT_IDLE_MS }),
    bindOptions,
  );
  server.addService(c.definition, c.implementation);
  const jobImpl = jobHandlers(jobs, schedules);
  const j = bindService(JobService, jobImpl, bindOptions);
  server.addService(j.definition, j.implementation);
  const standard = addStandardServices(server, [AssignmentService, ExperimentService, CohortService, JobService]);

  const host = config.host ?? DEFAULT_HOST;
  opened.add(server, (s) => s.forceShutdown());
  // A worker opens no gRPC port (nor HTTP port): it runs jobs (and serves metrics) only.
  const port =
    role === "worker"
      ? 0
      : await new Promise<number>((resolve, reject) =>
          server.bindAsync(`${host}:${config.port ?? DEFAULT_PORT}`, serverCredentials(config.tls), (err, p) =>
            err ? reject(err) : resolve(p),
          ),
        );
  // The HTTP port: the same handler objects, the same interceptor (tokens and roles), the same
  // call records (logs and metrics) as the gRPC port.
  const consoleServed = config.httpPort === undefined || role === "worker" ? undefined : consoleFiles(config.consoleDir);
  const httpServer =
    config.httpPort === undefined || role === "worker"
      ? undefined
      : opened.add(
          await serveHttp({
            routes: connectRoutes(
              [
                { service: AssignmentService, handlers: assignmentImpl as unknown as ServiceHandlers<DescService> },
                { service: ExperimentService, handlers: experimentImpl as unknown as ServiceHandlers<DescService> },
                { service: JobService, handlers: jobImpl as unknown as ServiceHandlers<DescService> },
              ],
              { ...bindOptions, record: callRecorder(log, metrics) },
            ),
            grpcOnly: grpcOnlyMethods([AssignmentService, ExperimentService, JobService], `${host}:${port}`),
            console: consoleServed,
            record: callRecorder(log, metrics),
            host,
            port: config.httpPort,
            tls: config.tls,
            shutdownSignal: shutdown.signal,
          }),
          (h) => h.close(0),
        );
  if (metrics && config.clusterWorker) {
    // prom-client answers the primary's requests for metrics only once an AggregatorRegistry was
    // made in this process too; which registry it answers with is set apart.
    new AggregatorRegistry();
    AggregatorRegistry.setRegistries([metrics.registry]);
  }
  const metricsServer =
    metrics && !config.clusterWorker
      ? opened.add(await serveMetrics(metrics.registry, config.metricsHost ?? host, config.metricsPort!), (m) => m.close())
      : undefined;
  standard.serving();
  const cacheKind = redis ? "redis" : "memory";
  const experimentsOpen = open.has(ExperimentService.typeName);
  if (experimentsOpen && config.insecure) {
    log.warn(
      "INSECURE DEVELOPMENT MODE: ExperimentService (create, change and stop experiments, import assignments) accepts calls without a token from anyone who can reach this port. Set ADMIN_TOKEN or TOKENS_FILE for anything but local development.",
    );
  } else if (experimentsOpen) {
    log.info("ExperimentService accepts calls without a token (no admin, operator or reader token configured)");
  }
  log.info(
    {
      role,
      host,
      port,
      database: description,
      cache: config.redisUrl ? `redis ${redactUrl(config.redisUrl)}` : "in-process only (no Redis)",
      tls: config.tls !== undefined,
      http: httpServer ? `${config.tls ? "https" : "http"}://${host}:${httpServer.port} (Connect, gRPC-Web, HTTP/JSON)` : "off",
      console: httpServer
        ? consoleServed
          ? `${config.tls ? "https" : "http"}://${host}:${httpServer.port}/console/`
          : "not built (npm run build)"
        : "off (no HTTP port)",
      metrics: metricsServer
        ? `http://${config.metricsHost ?? host}:${metricsServer.port}/metrics`
        : metrics
          ? "served by the cluster's primary"
          : "off",
      auth: {
        experimentService: experimentsOpen ? "OPEN" : "bearer token",
        assignmentService: open.has(AssignmentService.typeName) ? "open" : "bearer token",
        tokens: tokens.countByRole(),
      },
      ...(config.insecure && experimentsOpen ? { mode: "INSECURE DEVELOPMENT MODE" } : {}),
    },
    "serving",
  );

  return {
    port,
    address: `${host}:${port}`,
    registry,
    database,
    assigner,
    databaseKind,
    cacheKind,
    metricsPort: metricsServer?.port,
    httpPort: httpServer?.port,
    role,
    publisher,
    jobs,
    replaceTokens(named) {
      tokens = new TokenSet([...named, ...fixedTokens]);
      return tokens;
    },
    /**
     * Graceful stop: no new calls are accepted; streams stop reading and answer what they read;
     * in-flight calls get `shutdownGraceMs` to finish, then are cancelled; pending writes to
     * PostgreSQL and Redis are completed before the connections close. Nothing acknowledged to a
     * caller is lost, because every answer is stored before it is sent.
     */
    async close() {
      standard.shutdown();
      shutdown.abort();
      let timer: NodeJS.Timeout | undefined;
      const grace = config.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
      const httpClosed = httpServer?.close(grace);
      const drained = new Promise<boolean>((resolve) => server.tryShutdown(() => resolve(true)));
      const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), grace)));
      if (!(await Promise.race([drained, late]))) {
        log.warn("calls still running after the shutdown grace period: cancelling them");
        server.forceShutdown();
      }
      clearTimeout(timer);
      await httpClosed;
      // Chunks in progress get the grace period too; one cut short is run again by another worker.
      schedules.stop();
      await boss.stop({ graceful: true, wait: true, timeout: config.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS });
      await stopMove();
      await assignmentStore.flush();
      await assigner.flush();
      registry.stop();
      await publisher?.close();
      await sequencer.stop();
      await metricsServer?.close();
      await cache.close();
      if (transferDatabase !== database) await transferDatabase.close();
      for (const r of replicas) await r.close();
      await database.close();
    },
  };
}

function serverCredentials(tls: ServerConfig["tls"]): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    null,
    [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }],
    false,
  );
}

/**
 * Shuts the server down gracefully on SIGTERM or SIGINT (see RunningServer.close), then exits: 0
 * when everything was flushed, 1 otherwise.
 */
export function closeOnSignals(server: RunningServer, log: Logger): void {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      log.info({ signal }, "shutting down");
      server.close().then(
        () => process.exit(0),
        (err) => {
          log.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
}

/** The console's files from `dir`, or the repository's built console; none when it was not built. */
function consoleFiles(dir: string | undefined) {
  const found = dir ?? defaultConsoleDir();
  return found === undefined ? undefined : loadConsoleFiles(found);
}
