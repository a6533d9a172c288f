/**
 * Our server in a child process (harness/server-process.ts, through harness/spawn-server.ts) on a
 * fresh database and Redis prefix of the test services, with real gRPC clients; lets a test read
 * its memory and signal it.
 */
import { AssignmentService, createClient, ExperimentService, type Client } from "assignment-client";
import { spawnServer } from "../../../harness/spawn-server.js";
import type { Exit } from "../../../harness/processes.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../../support/services.js";

export interface ChildServer {
  pid: number;
  address: string;
  databaseUrl: string;
  redisPrefix: string;
  assignments: Client<typeof AssignmentService>;
  experiments: Client<typeof ExperimentService>;
  /** Resident set size of the server process, in bytes (VmRSS of /proc/<pid>/status). */
  rss(): number;
  /** Resolves with the exit code (null when killed by a signal) and signal once the process ended. */
  exited: Promise<Exit>;
  hasExited(): boolean;
  /** Sends SIGUSR2 and resolves with the memory the process reports after a full garbage
   * collection (start it with nodeArgs ["--expose-gc"]). */
  memoryAfterGc(): Promise<NodeJS.MemoryUsage>;
  /** Everything the process wrote (stdout and stderr), for failure messages. */
  output(): string;
  signal(sig: NodeJS.Signals): void;
  /** Closes the clients, kills the process if still running (SIGKILL), drops database and keys. */
  stop(): Promise<void>;
}

/**
 * mode "server" (default): startServer in the child; mode "main": src/main.ts itself (on port 0,
 * configured through its environment), so that its own signal handling is what is tested.
 */
export async function startChildServer(
  options: { mode?: "server" | "main"; env?: Record<string, string>; nodeArgs?: string[] } = {},
): Promise<ChildServer> {
  const db = await freshDatabase();
  const prefix = freshRedisPrefix();
  const mode = options.mode ?? "server";
  const dropData = async () => {
    await flushPrefix(redisUrl(), prefix);
    await db.drop();
  };
  let child: Awaited<ReturnType<typeof spawnServer>>;
  try {
    child = await spawnServer({
      label: "child server",
      mode,
      nodeArgs: options.nodeArgs,
      env: {
        DATABASE_URL: db.url,
        REDIS_URL: redisUrl(),
        REDIS_PREFIX: prefix,
        LOG_LEVEL: mode === "main" ? "info" : "warn",
        // src/main.ts (config.ts): port 0 on loopback, no admin token in tests, and no fixed
        // metrics port (several servers run at once).
        ...(mode === "main" ? { PORT: "0", HOST: "127.0.0.1" } : {}),
        INSECURE_DEV_MODE: "1",
        METRICS_PORT: "0",
        ...options.env,
      },
    });
  } catch (err) {
    await dropData();
    throw err;
  }
  const memoryWaiters: Array<(m: NodeJS.MemoryUsage) => void> = [];
  child.onMessage((m) => {
    if (m.serverMemory) memoryWaiters.shift()?.(m.serverMemory as NodeJS.MemoryUsage);
  });

  const channelOptions = { "grpc.use_local_subchannel_pool": 1 };
  const assignments = createClient(AssignmentService, child.address, { timeoutMs: 60_000, channelOptions });
  const experiments = createClient(ExperimentService, child.address, { timeoutMs: 60_000, channelOptions });
  return {
    pid: child.pid,
    address: child.address,
    databaseUrl: db.url,
    redisPrefix: prefix,
    assignments,
    experiments,
    rss: () => child.residentBytes(),
    memoryAfterGc() {
      return new Promise((resolve) => {
        memoryWaiters.push(resolve);
        child.signal("SIGUSR2");
      });
    },
    exited: child.exited,
    hasExited: () => child.hasExited(),
    output: () => child.output(),
    signal: (sig) => child.signal(sig),
    async stop() {
      assignments.close();
      experiments.close();
      await child.kill();
      await dropData();
    },
  };
}
