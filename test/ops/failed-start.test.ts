/**
 * A start-up that fails halfway (here: the metrics port is taken, which is found out after the
 * database, the configuration listener, Redis and the gRPC port were all opened) closes everything
 * it opened before the error reaches the caller: no socket, server or timer is left behind in the
 * process, the gRPC port is free again, PostgreSQL sees no session of it, and an embedded
 * database can be opened again.
 */
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { startServer, type ServerConfig } from "../../src/server.js";
import { PgliteDatabase } from "../../src/store/pglite-database.js";
import { eventually } from "../grpc/helpers.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl, serverDatabaseUrl } from "../support/services.js";
import { freePort } from "../../harness/free-port.js";

/** A port something else listens on. */
let taken: net.Server;
let takenPort: number;

beforeAll(async () => {
  taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
  takenPort = (taken.address() as net.AddressInfo).port;
});
afterAll(() => new Promise((r) => taken.close(r)));

/** Whether this process can listen on `port` now. */
async function canListen(port: number): Promise<boolean> {
  const srv = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => resolve(true));
  });
  if (ok) await new Promise((r) => srv.close(r));
  return ok;
}

/** Sockets, servers and timers this process holds, by kind. */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) if (r !== "FSReqCallback") counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

/** Whether the process holds no more of any kind than it did `before`. */
const nothingLeft = (before: Record<string, number>) => async () =>
  Object.entries(resources()).every(([kind, n]) => n <= (before[kind] ?? 0));

/** Starts a server that must fail on the taken metrics port; answers its error. */
async function failedStart(config: Partial<ServerConfig>, grpcPort: number): Promise<NodeJS.ErrnoException> {
  const err = await startServer({
    port: grpcPort,
    metricsPort: takenPort,
    logger: createLogger("silent"),
    ...config,
  }).then(
    (s) => {
      void s.close();
      throw new Error("the server started on a taken metrics port");
    },
    (e: NodeJS.ErrnoException) => e,
  );
  expect(err.code).toBe("EADDRINUSE");
  return err;
}

describe("a start-up that fails halfway", () => {
  it("PostgreSQL and Redis: closes the database, the listener, Redis and the gRPC port", async () => {
    const db = await freshDatabase();
    const prefix = freshRedisPrefix();
    const before = resources();
    const grpcPort = await freePort();
    try {
      await failedStart({ databaseUrl: db.url, redisUrl: redisUrl(), redisPrefix: prefix }, grpcPort);
      expect(await canListen(grpcPort)).toBe(true);
      const sessions = async () => {
        const admin = new pg.Client({ connectionString: serverDatabaseUrl() });
        await admin.connect();
        try {
          const { rows } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1`, [
            db.name,
          ]);
          return rows[0]!.n;
        } finally {
          await admin.end();
        }
      };
      expect(await eventually(async () => (await sessions()) === 0, 5_000)).toBe(true);
      expect(await eventually(nothingLeft(before), 5_000), `${JSON.stringify(resources())} vs ${JSON.stringify(before)}`).toBe(true);
    } finally {
      await flushPrefix(redisUrl(), prefix);
      await db.drop();
    }
  });

  it("the embedded database: closed and unlocked, and nothing left running", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "failed-start-"));
    const before = resources();
    const grpcPort = await freePort();
    try {
      await failedStart({ pgliteDataDir: path.join(dir, "db") }, grpcPort);
      expect(await canListen(grpcPort)).toBe(true);
      expect(await eventually(nothingLeft(before), 5_000), `${JSON.stringify(resources())} vs ${JSON.stringify(before)}`).toBe(true);
      // Still open (or locked) in this process, it would refuse this.
      const again = await PgliteDatabase.open({ dataDir: path.join(dir, "db") });
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
