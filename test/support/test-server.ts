import { AssignmentService, createClient, ExperimentService, type Client } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer, type ServerConfig } from "../../src/server.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "./services.js";

export interface TestServer {
  server: RunningServer;
  assignments: Client<typeof AssignmentService>;
  experiments: Client<typeof ExperimentService>;
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  /** Stops the server and removes its database and Redis keys. */
  stop(): Promise<void>;
}

/**
 * A real server on a free loopback port, with its own fresh PostgreSQL database and Redis key
 * prefix, and real gRPC clients for both services.
 */
export async function startTestServer(overrides: Partial<ServerConfig> = {}): Promise<TestServer> {
  const db = await freshDatabase();
  const prefix = freshRedisPrefix();
  const server = await startServer({
    databaseUrl: db.url,
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    port: 0,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
    ...overrides,
  });
  const assignments = createClient(AssignmentService, server.address, { timeoutMs: 30_000 });
  const experiments = createClient(ExperimentService, server.address, { timeoutMs: 30_000 });
  return {
    server,
    assignments,
    experiments,
    databaseUrl: db.url,
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    async stop() {
      assignments.close();
      experiments.close();
      await server.close();
      await flushPrefix(redisUrl(), prefix);
      await db.drop();
    },
  };
}
