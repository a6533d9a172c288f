import { createLogger } from "./logger.js";
import { startServer } from "./server.js";

const log = createLogger();
const env = process.env;

const server = await startServer({
  databaseUrl: env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
  redisUrl: env.REDIS_URL ?? "redis://127.0.0.1:6379",
  host: env.HOST ?? "127.0.0.1",
  port: Number(env.PORT ?? 50051),
  redisPrefix: env.REDIS_PREFIX ?? "",
  cacheTtlSeconds: Number(env.CACHE_TTL_SECONDS ?? 86_400),
  memoryCacheEntries: Number(env.MEMORY_CACHE_ENTRIES ?? 200_000),
  databasePoolSize: Number(env.DATABASE_POOL_SIZE ?? 20),
  logger: log,
});

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
