/**
 * `npm start` as a user runs it: `node --import tsx src/main.ts` in its own process (the servers
 * that serve through harness/server-process.ts, mode main, which runs src/main.ts as it is and
 * only ends it when this process dies).
 * - With no DATABASE_URL / REDIS_URL: embedded PGlite in a local folder, in-process cache,
 *   insecure development mode said loudly; it serves real gRPC calls and keeps its data.
 * - With them set: the real PostgreSQL and Redis, and ADMIN_TOKEN required.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus, Reason } from "assignment-client";
import { expectFailure, status } from "../grpc/helpers.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";
import { REPO_ROOT } from "../cli/run-cli.js";
import { freePort } from "../../harness/free-port.js";
import { runCommand } from "../../harness/processes.js";
import { spawnServer } from "../../harness/spawn-server.js";

/** src/main.ts in its own process (harness/server-process.ts, mode main) with exactly `env` (plus
 * PATH/HOME); resolves at its "serving" log line. */
async function startMain(env: Record<string, string>) {
  const s = await spawnServer({
    label: "npm start",
    mode: "main",
    cleanEnv: true,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
  });
  return {
    /** Every log entry so far. */
    logs: s.messages,
    serving: s.announcement,
    /** SIGTERM; resolves with the exit code. */
    stop: async () => (await s.stop()).code,
  };
}

describe("npm start with nothing configured", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "start-embedded-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("serves on the embedded PostgreSQL and in-process cache, says it is insecure, and keeps its data in the folder", async () => {
    const dataDir = path.join(dir, "pglite");
    const [port, metricsPort] = [await freePort(), await freePort()];
    const env = { PGLITE_DATA_DIR: dataDir, PORT: String(port), METRICS_PORT: String(metricsPort) };
    const first = await startMain(env);
    let answer: string;
    try {
      expect(first.serving).toMatchObject({
        port,
        database: expect.stringContaining(`pglite:${dataDir}`),
        cache: "in-process only (no Redis)",
      });
      // The first line names the database (and says a first start creates it: it takes a while).
      expect(first.logs[0]).toMatchObject({
        database: expect.stringContaining(`pglite:${dataDir}`),
        cache: "in-process only (no Redis)",
        msg: expect.stringContaining(`creating the embedded database (PGlite) in ${dataDir}…`),
      });
      const warning = first.logs.find((l) => l.level === 40 && String(l.msg).startsWith("INSECURE DEVELOPMENT MODE"));
      expect(warning, JSON.stringify(first.logs)).toBeDefined();
      expect(existsSync(`${dataDir}.lock`)).toBe(true);

      const address = `127.0.0.1:${port}`;
      const admin = createClient(ExperimentService, address, { timeoutMs: 20_000 });
      const assign = createClient(AssignmentService, address, { timeoutMs: 20_000 });
      try {
        await admin.createExperiment({
          key: "hello",
          variants: [
            { key: "a", weight: 5000 },
            { key: "b", weight: 5000 },
          ],
          status: ExperimentStatus.RUNNING,
        });
        const r = (await assign.assign({ experimentKey: "hello", unitId: "u-1" })).assignment!;
        expect(r.reason).toBe(Reason.NEW);
        expect(r.stored).toBe(true);
        answer = r.variantKey;
      } finally {
        admin.close();
        assign.close();
      }
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toContain('assignment_grpc_calls_total{service="assignment.v1.AssignmentService",method="Assign",code="OK"} 1');
      expect(metrics).toContain(
        'assignment_grpc_calls_total{service="assignment.v1.ExperimentService",method="CreateExperiment",code="OK"} 1',
      );
    } finally {
      expect(await first.stop()).toBe(0);
    }
    expect(existsSync(`${dataDir}.lock`)).toBe(false);

    // Started again on the same folder: the experiment and the stored assignment are still there.
    const second = await startMain({ ...env, METRICS_PORT: "0" });
    try {
      expect(second.logs[0]?.msg).toBe(`starting: opening the embedded database (PGlite) in ${dataDir}…`);
      const assign = createClient(AssignmentService, `127.0.0.1:${port}`, { timeoutMs: 20_000 });
      try {
        const r = (await assign.assign({ experimentKey: "hello", unitId: "u-1" })).assignment!;
        expect([r.reason, r.variantKey]).toEqual([Reason.STICKY, answer]);
      } finally {
        assign.close();
      }
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});

describe("npm start on a taken port", () => {
  it("fails before opening any database, without a stack trace, and names --port (exit code 2)", async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as net.AddressInfo).port;
    const dir = mkdtempSync(path.join(os.tmpdir(), "start-taken-"));
    try {
      const dataDir = path.join(dir, "pglite");
      const { status: code, stderr } = await runCommand(process.execPath, ["--import", "tsx", "src/main.ts"], {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? "", PGLITE_DATA_DIR: dataDir, PORT: String(port), METRICS_PORT: "0" },
      });
      expect(code).toBe(2);
      expect(stderr).toContain(`PORT (--port): port ${port} on 127.0.0.1 is already in use`);
      expect(stderr).toContain("pick another port with --port <n>");
      expect(stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      await new Promise((r) => taken.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("npm start with DATABASE_URL and REDIS_URL", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  const prefix = freshRedisPrefix();
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await flushPrefix(redisUrl(), prefix);
    await db?.drop();
  });

  it("refuses to start without ADMIN_TOKEN (exit code 2), and says why", async () => {
    const { status: code, stderr } = await runCommand(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: db.url, REDIS_URL: redisUrl(), PORT: "0", METRICS_PORT: "0" },
    });
    expect(code).toBe(2);
    expect(stderr).toContain("refusing to start: ExperimentService");
    expect(stderr).toContain("ADMIN_TOKEN");
  });

  it("uses the real PostgreSQL and Redis, and demands the admin token", async () => {
    const port = await freePort();
    const s = await startMain({
      DATABASE_URL: db.url,
      REDIS_URL: redisUrl(),
      REDIS_PREFIX: prefix,
      ADMIN_TOKEN: "t0ken-for-the-test",
      PORT: String(port),
      METRICS_PORT: "0",
    });
    try {
      expect(s.serving).toMatchObject({
        database: expect.stringMatching(/^postgres(ql)?:\/\//),
        cache: expect.stringMatching(/^redis /),
        metrics: "off",
      });
      expect(s.logs.some((l) => String(l.msg).startsWith("INSECURE"))).toBe(false);
      const open = createClient(ExperimentService, `127.0.0.1:${port}`, { timeoutMs: 20_000 });
      const admin = createClient(ExperimentService, `127.0.0.1:${port}`, { timeoutMs: 20_000, token: "t0ken-for-the-test" });
      try {
        await expectFailure(open.listExperiments({}), status.UNAUTHENTICATED);
        await admin.createExperiment({ key: "real", variants: [{ key: "a", weight: 10_000 }] });
        expect((await admin.listExperiments({})).experiments.map((e) => e.key)).toEqual(["real"]);
      } finally {
        open.close();
        admin.close();
      }
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });
});
