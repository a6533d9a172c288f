/**
 * WORKERS=2 (src/cluster.ts) as `npm start` runs it: two server processes behind one port, with
 * one metrics endpoint for both. Calls over several connections are served by both workers and
 * stay sticky whichever worker answers; a worker killed with SIGKILL is replaced while the other
 * keeps serving; SIGTERM stops everything gracefully (exit 0, every acknowledged answer stored);
 * and WORKERS without DATABASE_URL is refused at start.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../harness/free-port.js";
import { spawnServer, type ServerProcess } from "../../harness/spawn-server.js";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus, Reason } from "assignment-client";
import { eventually, specVariant, sql, units, type WeightedVariant } from "../grpc/helpers.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";

const variants: WeightedVariant[] = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];

let db: Awaited<ReturnType<typeof freshDatabase>>;
const prefix = freshRedisPrefix();
beforeAll(async () => {
  db = await freshDatabase();
});
afterAll(async () => {
  await flushPrefix(redisUrl(), prefix);
  await db?.drop();
});

function startCluster(env: Record<string, string>): Promise<ServerProcess> {
  return spawnServer({
    label: "npm start (2 workers)",
    mode: "main",
    cleanEnv: true,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    startTimeoutMs: 90_000,
  });
}

/** Metric samples (name + labels → value) from the endpoint. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^(\w+(?:\{[^}]*\})?) (\S+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

const sumOf = (samples: Map<string, number>, name: string, labels: string) =>
  [...samples].filter(([k]) => k.startsWith(`${name}{`) && k.includes(labels)).reduce((s, [, v]) => s + v, 0);

describe("WORKERS=2", () => {
  it("serves one port from two processes, sticky across them, with one metrics endpoint; survives a killed worker; stops gracefully", async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const server = await startCluster({
      WORKERS: "2",
      DATABASE_URL: db.url,
      REDIS_URL: redisUrl(),
      REDIS_PREFIX: prefix,
      INSECURE_DEV_MODE: "1",
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      LOG_LEVEL: "debug",
    });
    const clients: { close(): void }[] = [];
    try {
      // The primary announces once both workers serve, naming their pids.
      expect(await eventually(async () => server.messages.some((m) => m.msg === "serving" && m.workers === 2), 60_000)).toBe(true);
      const primary = server.messages.find((m) => m.msg === "serving" && m.workers === 2)!;
      const pids = primary.pids as number[];
      expect(pids).toHaveLength(2);
      expect(new Set(pids).size).toBe(2);

      const admin = createClient(ExperimentService, `127.0.0.1:${port}`, { timeoutMs: 20_000 });
      clients.push(admin);
      await admin.createExperiment({ key: "clustered", variants, status: ExperimentStatus.RUNNING });

      // Eight connections (a local subchannel pool each): the primary hands them to the workers in turn.
      const conns = Array.from({ length: 8 }, () => {
        const c = createClient(AssignmentService, `127.0.0.1:${port}`, {
          timeoutMs: 20_000,
          channelOptions: { "grpc.use_local_subchannel_pool": 1 },
        });
        clients.push(c);
        return c;
      });
      const ids = units("cl-", 400);
      // Each unit first through one connection, then again through another one.
      const first = await Promise.all(ids.map((u, i) => conns[i % 8]!.assign({ experimentKey: "clustered", unitId: u })));
      const again = await Promise.all(ids.map((u, i) => conns[(i + 3) % 8]!.assign({ experimentKey: "clustered", unitId: u })));
      expect(first.map((r) => r.assignment!.reason)).toEqual(ids.map(() => Reason.NEW));
      expect(first.map((r) => r.assignment!.variantKey)).toEqual(ids.map((u) => specVariant(u, "clustered", variants)));
      expect(again.map((r) => r.assignment!.reason)).toEqual(ids.map(() => Reason.STICKY));
      expect(again.map((r) => r.assignment!.variantKey)).toEqual(first.map((r) => r.assignment!.variantKey));

      // Both workers answered calls (each call line names its worker).
      const workersThatServed = new Set(
        server.messages.filter((m) => m.method === "Assign" && m.worker !== undefined).map((m) => m.worker),
      );
      expect(workersThatServed.size).toBe(2);

      // One endpoint counts the calls of both.
      const samples = await scrape(metricsPort);
      expect(sumOf(samples, "assignment_grpc_calls_total", 'method="Assign"')).toBe(800);

      // A worker killed outright: the other keeps serving, and a new one takes its place.
      process.kill(pids[0]!, "SIGKILL");
      expect(await eventually(async () => server.messages.some((m) => m.msg === "a worker died: starting another"), 30_000)).toBe(true);
      const after = await Promise.all(
        ids.slice(0, 80).map((u, i) => conns[i % 8]!.assign({ experimentKey: "clustered", unitId: u }, { timeoutMs: 30_000 })),
      );
      expect(after.map((r) => r.assignment!.variantKey)).toEqual(first.slice(0, 80).map((r) => r.assignment!.variantKey));
      expect(after.map((r) => r.assignment!.reason)).toEqual(ids.slice(0, 80).map(() => Reason.STICKY));

      // SIGTERM: every worker stops gracefully, then the primary; everything answered is stored.
      const late = units("cl-late-", 200);
      const answered = await Promise.all(late.map((u, i) => conns[i % 8]!.assign({ experimentKey: "clustered", unitId: u })));
      expect(answered.map((r) => r.assignment!.reason)).toEqual(late.map(() => Reason.NEW));
      const exit = await server.stop(30_000);
      expect(exit).toEqual({ code: 0, signal: null });
      const stored = await sql<{ n: number }>(db.url, "SELECT count(*)::int AS n FROM assignments WHERE unit_id LIKE 'cl-%'");
      expect(stored[0]!.n).toBe(600);
    } finally {
      for (const c of clients) c.close();
      await server.stop();
    }
  });

  it("is refused without DATABASE_URL (the embedded database belongs to one process)", async () => {
    const s = spawnServer({
      label: "npm start (2 workers, PGlite)",
      mode: "main",
      cleanEnv: true,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", WORKERS: "2", PGLITE_DATA_DIR: "memory://" },
    });
    const err = await s.then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/exited with code 2[\s\S]*WORKERS \(--workers\): several workers need DATABASE_URL/);
  });
});
