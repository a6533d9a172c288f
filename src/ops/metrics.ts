/**
 * Prometheus metrics (prom-client), each server with a registry of its own, served over HTTP at
 * /metrics. What is counted, and where:
 *
 * - gRPC calls and their latency, by service, method and status code (call-observer.ts, a grpc-js
 *   server interceptor, so failures before a handler runs count too);
 * - assignments answered, by reason (once per batch, counted off the batch's results);
 * - lookups of stored assignments per cache layer, hits and misses (the Assigner reports them once
 *   per batch and layer), and the hit ratio they make;
 * - rows per INSERT of new assignments (AssignmentStore), and the rows waiting to be written;
 * - units per experiment, variant and source (the live counts of the event log), for RUNNING
 *   experiments only: at most (running experiments) x (variants) x 3 series, gone when an
 *   experiment stops.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { Reason } from "../../gen/ts/assignment/v1/types_pb.js";
import type { AssignerMetrics, LookupLayer } from "../service/assigner-metrics.js";
import type { CellResult } from "../service/assigner.js";

const LAYERS: readonly LookupLayer[] = ["memory", "redis", "replica", "postgres"];

export interface ServerMetricsOptions {
  /** Rows waiting for or inside an INSERT (AssignmentStore.pendingWrites), read at each scrape. */
  pendingWrites: () => number;
  /** Whether the "redis" layer exists (without Redis its lookups are not counted). */
  sharedCache: boolean;
  /** Whether the "replica" layer exists (read replicas: DATABASE_READ_URL); default false. */
  replicas?: boolean;
  /** Node.js process metrics (CPU, memory, event loop); default true. */
  processMetrics?: boolean;
  /** The live counts of RUNNING experiments (EventLog.runningCounts), read at each scrape. */
  liveCounts?: () => Promise<readonly LiveCount[]>;
}

export interface LiveCount {
  experiment: string;
  variant: string;
  /** hash, import or override. */
  source: string;
  units: number;
}

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly calls: Counter<"service" | "method" | "code">;
  private readonly callSeconds: Histogram<"service" | "method" | "code">;
  private readonly byReason: Counter.Internal[] = [];
  private readonly lookupCounts = new Map<LookupLayer, { hits: number; misses: number; hit: Counter.Internal; miss: Counter.Internal }>();
  private readonly insertRows: Histogram;
  /** Reasons are small integers: counted into this array per batch, then added to the counters. */
  private readonly reasonCounts = new Float64Array(64);
  private readonly callChildren = new Map<
    string,
    { count: Counter.Internal; seconds: Histogram.Internal<"service" | "method" | "code"> }
  >();

  constructor(private readonly options: ServerMetricsOptions) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.calls = new Counter({
      name: "assignment_grpc_calls_total",
      help: "gRPC calls finished, by service, method and status code",
      labelNames: ["service", "method", "code"],
      registers,
    });
    this.callSeconds = new Histogram({
      name: "assignment_grpc_call_duration_seconds",
      help: "gRPC call duration (streams: until their status), by service, method and status code",
      labelNames: ["service", "method", "code"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    const assignments = new Counter({
      name: "assignment_assignments_total",
      help: "Answers given (units x experiments), by reason",
      labelNames: ["reason"],
      registers,
    });
    for (const [name, value] of Object.entries(Reason)) {
      if (typeof value === "number") this.byReason[value] = assignments.labels(name.replace(/^REASON_/, ""));
    }
    const lookups = new Counter({
      name: "assignment_cache_lookups_total",
      help: "Lookups of stored assignments per layer (memory, redis, replica, postgres) and result (hit, miss); counted per batch",
      labelNames: ["layer", "result"],
      registers,
    });
    for (const layer of LAYERS) {
      if (layer === "replica" && !options.replicas) continue;
      this.lookupCounts.set(layer, { hits: 0, misses: 0, hit: lookups.labels(layer, "hit"), miss: lookups.labels(layer, "miss") });
    }
    const counts = this.lookupCounts;
    new Gauge({
      name: "assignment_cache_hit_ratio",
      // Across a cluster's workers (src/cluster.ts) a ratio is averaged, not summed.
      aggregator: "average",
      help: "Share of the lookups reaching a layer that it answered, since the start (rate() of assignment_cache_lookups_total is better for recent values)",
      labelNames: ["layer"],
      registers,
      collect() {
        for (const [layer, c] of counts) {
          if (c.hits + c.misses > 0) this.set({ layer }, c.hits / (c.hits + c.misses));
        }
      },
    });
    this.insertRows = new Histogram({
      name: "assignment_store_insert_rows",
      help: "Rows per INSERT of new assignments (concurrent calls share statements)",
      buckets: [1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000],
      registers,
    });
    const liveCounts = options.liveCounts;
    if (liveCounts) {
      new Gauge({
        name: "assignment_experiment_units",
        // Every worker of a cluster reads the same counts from the database: one of them is enough.
        aggregator: "max",
        help: "Units per variant and source (hash, import, override) of each RUNNING experiment, from the live counts of the event log (split and sample-ratio graphs)",
        labelNames: ["experiment", "variant", "source"],
        registers,
        async collect() {
          const rows = await liveCounts().catch(() => undefined);
          if (!rows) return; // the database is away: the last values stay, as a gauge would
          this.reset();
          for (const r of rows) this.set({ experiment: r.experiment, variant: r.variant, source: r.source }, r.units);
        },
      });
    }
    new Gauge({
      name: "assignment_store_pending_writes",
      help: "New assignments waiting for or inside an INSERT",
      registers,
      collect() {
        this.set(options.pendingWrites());
      },
    });
  }

  /** Hooks for the Assigner. */
  get assigner(): AssignerMetrics {
    return {
      lookups: (layer, hits, misses) => {
        if (layer === "redis" && !this.options.sharedCache) return;
        const c = this.lookupCounts.get(layer);
        if (!c) return;
        c.hits += hits;
        c.misses += misses;
        if (hits > 0) c.hit.inc(hits);
        if (misses > 0) c.miss.inc(misses);
      },
    };
  }

  /** Counts a batch's answers by reason. */
  answered(results: readonly CellResult[]): void {
    const counts = this.reasonCounts;
    for (let i = 0; i < results.length; i++) counts[results[i]!.reason]!++;
    for (let r = 0; r < counts.length; r++) {
      const n = counts[r]!;
      if (n > 0) {
        this.byReason[r]?.inc(n);
        counts[r] = 0;
      }
    }
  }

  insertBatch(rows: number): void {
    this.insertRows.observe(rows);
  }

  call(service: string, method: string, code: string, seconds: number): void {
    // prom-client's labels() hashes the label values on every call; a call's three labels take a
    // handful of values, so their children are looked up once (a page load's share of CPU: ~1.5%).
    const key = `${service}/${method}/${code}`;
    let c = this.callChildren.get(key);
    if (!c) {
      c = { count: this.calls.labels(service, method, code), seconds: this.callSeconds.labels(service, method, code) };
      this.callChildren.set(key, c);
    }
    c.count.inc();
    c.seconds.observe(seconds);
  }
}

/** Serves `GET /metrics` (Prometheus text format) on host:port; 0 picks a free port. */
/** `registry`: one process's metrics, or (in a cluster's primary) anything that gives the text of
 * all of them. */
export async function serveMetrics(
  registry: { metrics(): Promise<string>; contentType: string },
  host: string,
  port: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" || (path !== "/metrics" && path !== "/")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
