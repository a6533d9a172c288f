import * as grpc from "@grpc/grpc-js";
import { AssignmentService } from "../gen/ts/assignment/v1/assignment_service_pb.js";
import { ExperimentService } from "../gen/ts/assignment/v1/experiment_service_pb.js";
import { MemoryCache } from "./cache/memory-cache.js";
import { connectRedis, RedisCache } from "./cache/redis-cache.js";
import { MAX_MESSAGE_BYTES } from "./client/create-client.js";
import { bindService } from "./grpc/bind-service.js";
import { createLogger, type Logger } from "./logger.js";
import { Assigner } from "./service/assigner.js";
import { assignmentHandlers } from "./service/assignment-service.js";
import { ConfigRegistry } from "./service/config-registry.js";
import { experimentHandlers } from "./service/experiment-service.js";
import { AssignmentStore } from "./store/assignment-store.js";
import { TransferStore } from "./store/transfer-store.js";
import { AssignmentTransfers } from "./service/assignment-transfers.js";
import { ExperimentStore } from "./store/experiment-store.js";
import { PgDatabase } from "./store/pg-database.js";

export interface ServerConfig {
  databaseUrl: string;
  redisUrl: string;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default 50051. */
  port?: number;
  /** Prefix of every Redis key (lets several deployments or tests share one Redis). */
  redisPrefix?: string;
  /** Lifetime of a Redis cache entry; default 86400 s. */
  cacheTtlSeconds?: number;
  /** Entries of the in-process cache; default 200,000; 0 turns it off. */
  memoryCacheEntries?: number;
  /** PostgreSQL pool size; default 20. */
  databasePoolSize?: number;
  /** How often to check for configuration changes missed by LISTEN/NOTIFY; default 1000 ms. */
  configCheckMs?: number;
  /** On close, how long in-flight calls may take before they are cancelled; default 10,000 ms. */
  shutdownGraceMs?: number;
  logger?: Logger;
}

export interface RunningServer {
  /** The port actually bound. */
  port: number;
  address: string;
  registry: ConfigRegistry;
  database: PgDatabase;
  close(): Promise<void>;
}

/** Connects to PostgreSQL (applying migrations) and Redis, loads the configuration and serves
 * both services. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const log = config.logger ?? createLogger();
  const database = new PgDatabase({
    url: config.databaseUrl,
    max: config.databasePoolSize,
    log: (m) => log.warn(m),
  });
  await database.migrate();
  const experiments = new ExperimentStore(database);
  const registry = new ConfigRegistry(database, experiments, (m) => log.warn(m));
  await registry.start(config.configCheckMs ?? 1_000);

  const redis = connectRedis(config.redisUrl);
  redis.on("error", () => {}); // reported by RedisCache when a command fails
  const cache = new RedisCache(redis, {
    // The installation id keeps a cache that outlives its database from answering for a new one.
    prefix: `${config.redisPrefix ?? ""}${(await experiments.installationId()).slice(0, 12)}:`,
    ttlSeconds: config.cacheTtlSeconds ?? 86_400,
    log: (m) => log.warn(m),
  });
  const memory = new MemoryCache(config.memoryCacheEntries ?? 200_000);
  const assignmentStore = new AssignmentStore(database);
  const assigner = new Assigner(assignmentStore, memory, cache);
  const shutdown = new AbortController();

  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
  const bindOptions = { log: (msg: string, err: unknown) => log.error({ err }, msg) };
  const a = bindService(AssignmentService, assignmentHandlers(registry, assigner, shutdown.signal), bindOptions);
  server.addService(a.definition, a.implementation);
  const transfers = new AssignmentTransfers(new TransferStore(database), experiments, registry);
  const e = bindService(ExperimentService, experimentHandlers(experiments, registry, transfers), bindOptions);
  server.addService(e.definition, e.implementation);

  const host = config.host ?? "127.0.0.1";
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${config.port ?? 50051}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  log.info({ host, port, database: redactUrl(config.databaseUrl), redis: redactUrl(config.redisUrl) }, "serving");

  return {
    port,
    address: `${host}:${port}`,
    registry,
    database,
    /**
     * Graceful stop: no new calls are accepted; streams stop reading and answer what they read;
     * in-flight calls get `shutdownGraceMs` to finish, then are cancelled; pending writes to
     * PostgreSQL and Redis are completed before the connections close. Nothing acknowledged to a
     * caller is lost, because every answer is stored before it is sent.
     */
    async close() {
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
      await redis.quit().catch(() => redis.disconnect());
      await database.close();
    },
  };
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable url)";
  }
}
