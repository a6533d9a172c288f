/**
 * WORKERS=N (`--workers N`): N server processes on one port, one per core, through Node's cluster
 * module. One Node process runs JavaScript on one core; a machine with 16 cores needs 16 of them to
 * use its CPU. The primary process opens no database and answers no call: it forks the workers,
 * serves the metrics of all of them on one endpoint (prom-client's AggregatorRegistry: counters
 * and histograms summed), restarts a worker that dies, and on SIGTERM/SIGINT stops them all
 * gracefully and exits once every one has finished (each completes its pending writes, as a single
 * server does).
 *
 * Each worker is a whole server (src/server.ts): its own pool, caches and write coalescing, the
 * same stickiness (every answer is stored in PostgreSQL before it is sent, whichever worker sends
 * it) and the same cross-server bound for changed values. The primary hands each incoming TCP
 * connection to the next worker in turn; a gRPC channel is one long-lived HTTP/2 connection, so a
 * caller with a single channel is served by a single worker: callers that want every core need
 * several connections (several channels, or a load balancer in front).
 */
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry } from "prom-client";
import type { Logger } from "./logger.js";
import { serveMetrics } from "./ops/metrics.js";

export interface PrimaryOptions {
  workers: number;
  /** Port of the aggregated metrics endpoint; undefined: none. */
  metricsPort: number | undefined;
  metricsHost: string;
  /** How long the workers may take to stop before they are killed. */
  stopGraceMs: number;
  log: Logger;
}

/** Runs the cluster's primary: forks the workers and supervises them until a signal stops it. */
export async function runPrimary(options: PrimaryOptions): Promise<void> {
  const { log } = options;
  const ready = new Set<number>();
  /** Workers that announced they serve, ever: one that dies before it did is a start-up fault. */
  const served = new Set<number>();
  let stopping = false;
  let announced = false;

  const fork = (): Worker => {
    return cluster.fork();
  };
  const metrics = options.metricsPort === undefined ? undefined : new AggregatorRegistry();
  const metricsServer =
    metrics && options.metricsPort !== undefined
      ? await serveMetrics(
          { metrics: () => metrics.clusterMetrics(), contentType: metrics.contentType },
          options.metricsHost,
          options.metricsPort,
        )
      : undefined;

  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    log.info({ workers: workers.length }, "stopping the workers");
    const exited = workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once("exit", () => resolve()))));
    for (const w of workers) w.process.kill("SIGTERM");
    const timer = setTimeout(() => {
      log.warn("workers still running after the grace period: killing them");
      for (const w of workers) if (!w.isDead()) w.process.kill("SIGKILL");
    }, options.stopGraceMs + 5_000);
    await Promise.all(exited);
    clearTimeout(timer);
    await metricsServer?.close();
    process.exit(code);
  };

  cluster.on("message", (worker, message: { serving?: { port: number } }) => {
    if (!message?.serving) return;
    ready.add(worker.id);
    served.add(worker.id);
    if (!announced && ready.size === options.workers) {
      announced = true;
      log.info(
        {
          port: message.serving.port,
          workers: options.workers,
          pids: Object.values(cluster.workers ?? {}).map((w) => w?.process.pid),
          metrics: metricsServer ? `http://${options.metricsHost}:${metricsServer.port}/metrics (all workers)` : "off",
        },
        "serving",
      );
    }
  });
  cluster.on("exit", (worker, code, signal) => {
    ready.delete(worker.id);
    if (stopping) return;
    // A worker that never served would only die again (a bad configuration, a database that
    // cannot be reached at start): stop everything rather than fork it in a loop.
    if (!served.has(worker.id)) {
      log.fatal({ pid: worker.process.pid, code, signal }, "a worker died before it served: stopping");
      void stopAll(1);
      return;
    }
    log.error({ pid: worker.process.pid, code, signal }, "a worker died: starting another");
    fork();
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => void stopAll(0));
  // SIGHUP (token file reload) goes to every worker.
  process.on("SIGHUP", () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGHUP");
  });

  log.info({ workers: options.workers }, "starting the workers");
  for (let i = 0; i < options.workers; i++) fork();
}

/** In a worker: tells the primary that this worker serves, so it announces once all do. */
export function announceWorkerServing(port: number): void {
  process.send?.({ serving: { port } });
}
