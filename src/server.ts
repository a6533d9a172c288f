import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { AssignmentService } from "../gen/ts/assignment/v1/assignment_service_pb.js";
import { ExperimentService } from "../gen/ts/assignment/v1/experiment_service_pb.js";
import { MemoryCache } from "./cache/memory-cache.js";
import { NullCache } from "./cache/null-cache.js";
import { connectRedis, RedisCache } from "./cache/redis-cache.js";
import { MAX_MESSAGE_BYTES } from "./protocol-limits.js";
import { bindService } from "./grpc/bind-service.js";
import { addStandardServices } from "./grpc/standard-services.js";
import { createLogger, type Logger } from "./logger.js";
import { redactUrl } from "./util/redact-url.js";
import { Assigner } from "./service/assigner.js";
import { assignmentHandlers } from "./service/assignment-service.js";
import { ConfigRegistry } from "./service/config-registry.js";
import { experimentHandlers } from "./service/experiment-service.js";
import { AssignmentStore } from "./store/assignment-store.js";
import { TransferStore } from "./store/transfer-store.js";
import { AssignmentTransfers } from "./service/assignment-transfers.js";
import { ExperimentStore } from "./store/experiment-store.js";
import { PgDatabase } from "./store/pg-database.js";
import type { Database } from "./store/database.js";
import { PgliteDatabase } from "./store/pglite-database.js";
import { requireToken } from "./ops/auth.js";
import { observeCalls } from "./ops/call-observer.js";
import { MeteredAssigner } from "./ops/metered-assigner.js";
import { ServerMetrics, serveMetrics } from "./ops/metrics.js";

export interface ServerConfig {
  /** PostgreSQL connection string; absent: the embedded PostgreSQL (PGlite) in `pgliteDataDir`. */
  databaseUrl?: string;
  /** Folder of the embedded database when there is no `databaseUrl` (`memory://` for a throwaway
   * one); default ./data/pglite. */
  pgliteDataDir?: string;
  /** Redis connection string; absent: no shared cache, only the in-process one. */
  redisUrl?: string;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default 50051. */
  port?: number;
  /** Prefix of every Redis key (lets several deployments or tests share one Redis). */
  redisPrefix?: string;
  /** Lifetime of a Redis cache entry; default 86400 s. */
  cacheTtlSeconds?: number;
  /** Most entries of the in-process cache (32 bytes each, outside the JS heap, allocated up front); default 2,000,000; 0 turns it off. */
  memoryCacheEntries?: number;
  /** PostgreSQL pool size; default 20. */
  databasePoolSize?: number;
  /** How often to check for configuration changes missed by LISTEN/NOTIFY; default 1000 ms. */
  configCheckMs?: number;
  /** On close, how long in-flight calls may take before they are cancelled; default 10,000 ms. */
  shutdownGraceMs?: number;
  logger?: Logger;
  /** Bearer token ExperimentService demands. Absent: it is open to anyone who can connect (tests;
   * `loadConfig` in config.ts refuses that unless insecure development mode is asked for). */
  adminToken?: string;
  /** Bearer token AssignmentService demands (the admin token is accepted too); absent: open. */
  assignToken?: string;
  /** Insecure development mode was asked for: only changes what the log says. */
  insecure?: boolean;
  /** Serve TLS with this certificate chain and key (PEM files); plaintext when absent. */
  tls?: { certFile: string; keyFile: string };
  /** Port of the Prometheus metrics endpoint (GET /metrics); 0 picks a free one; absent: no
   * metrics at all (nothing is counted). */
  metricsPort?: number;
  /** Address of the metrics endpoint; default `host`. */
  metricsHost?: string;
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
  close(): Promise<void>;
}

/** Connects to PostgreSQL (applying migrations) and Redis, loads the configuration and serves
 * both services. Without a database URL the database is the embedded PGlite; without a Redis URL
 * the only cache is the in-process one. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const log = config.logger ?? createLogger();
  const databaseKind = config.databaseUrl ? "postgres" : "pglite";
  const database: Database = config.databaseUrl
    ? new PgDatabase({ url: config.databaseUrl, max: config.databasePoolSize, log: (m) => log.warn(m) })
    : await PgliteDatabase.open({ dataDir: config.pgliteDataDir ?? "./data/pglite" });
  await database.migrate();
  const experiments = new ExperimentStore(database);
  const registry = new ConfigRegistry(database, experiments, (m) => log.warn(m));
  await registry.start(config.configCheckMs ?? 1_000);

  const redis = config.redisUrl ? connectRedis(config.redisUrl) : undefined;
  redis?.on("error", () => {}); // reported by RedisCache when a command fails
  const cache = redis
    ? new RedisCache(redis, {
        // The installation id keeps a cache that outlives its database from answering for a new one.
        prefix: `${config.redisPrefix ?? ""}${(await experiments.installationId()).slice(0, 12)}:`,
        ttlSeconds: config.cacheTtlSeconds ?? 86_400,
        log: (m) => log.warn(m),
      })
    : new NullCache();
  const memory = new MemoryCache(config.memoryCacheEntries ?? 2_000_000);
  let assignmentStore!: AssignmentStore;
  const metrics =
    config.metricsPort === undefined
      ? undefined
      : new ServerMetrics({ pendingWrites: () => assignmentStore.pendingWrites, sharedCache: redis !== undefined });
  assignmentStore = new AssignmentStore(database, metrics ? { onInsertBatch: (n) => metrics.insertBatch(n) } : {});
  const assigner = metrics ? new MeteredAssigner(assignmentStore, memory, cache, metrics) : new Assigner(assignmentStore, memory, cache);
  const shutdown = new AbortController();

  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    interceptors: [observeCalls(log, metrics)],
  });
  const bindOptions = { log: (msg: string, err: unknown) => log.error({ err }, msg) };
  const a = bindService(AssignmentService, assignmentHandlers(registry, assigner, shutdown.signal), {
    ...bindOptions,
    interceptor: requireToken(AssignmentService.typeName, [config.assignToken, config.assignToken ? config.adminToken : undefined]),
  });
  server.addService(a.definition, a.implementation);
  const transfers = new AssignmentTransfers(new TransferStore(database), experiments, registry);
  const e = bindService(ExperimentService, experimentHandlers(experiments, registry, transfers), {
    ...bindOptions,
    interceptor: requireToken(ExperimentService.typeName, [config.adminToken]),
  });
  server.addService(e.definition, e.implementation);
  const standard = addStandardServices(server, [AssignmentService, ExperimentService]);

  const host = config.host ?? "127.0.0.1";
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${config.port ?? 50051}`, serverCredentials(config.tls), (err, p) => (err ? reject(err) : resolve(p))),
  );
  standard.serving();
  const metricsServer = metrics ? await serveMetrics(metrics.registry, config.metricsHost ?? host, config.metricsPort!) : undefined;
  const cacheKind = redis ? "redis" : "memory";
  if (!config.adminToken && config.insecure) {
    log.warn(
      "INSECURE DEVELOPMENT MODE: ExperimentService (create, change and stop experiments, import assignments) accepts calls without a token from anyone who can reach this port. Set ADMIN_TOKEN for anything but local development.",
    );
  } else if (!config.adminToken) {
    log.info("ExperimentService accepts calls without a token (no adminToken configured)");
  }
  log.info(
    {
      host,
      port,
      database: config.databaseUrl
        ? redactUrl(config.databaseUrl)
        : `pglite:${(database as PgliteDatabase).dataDir} (embedded PostgreSQL, in process)`,
      cache: config.redisUrl ? `redis ${redactUrl(config.redisUrl)}` : "in-process only (no Redis)",
      tls: config.tls !== undefined,
      metrics: metricsServer ? `http://${config.metricsHost ?? host}:${metricsServer.port}/metrics` : "off",
      auth: {
        experimentService: config.adminToken ? "bearer token" : "OPEN",
        assignmentService: config.assignToken ? "bearer token" : "open",
      },
      ...(config.insecure && !config.adminToken ? { mode: "INSECURE DEVELOPMENT MODE" } : {}),
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
      const drained = new Promise<boolean>((resolve) => server.tryShutdown(() => resolve(true)));
      const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), config.shutdownGraceMs ?? 10_000)));
      if (!(await Promise.race([drained, late]))) {
        log.warn("calls still running after the shutdown grace period: cancelling them");
        server.forceShutdown();
      }
      clearTimeout(timer);
      await assignmentStore.flush();
      await assigner.flush();
      registry.stop();
      await metricsServer?.close();
      if (cache instanceof RedisCache) await cache.close();
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
