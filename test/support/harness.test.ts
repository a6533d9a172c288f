/**
 * Proves the test harness gives each file a real, isolated PostgreSQL database and Redis namespace,
 * and a real NATS server with JetStream (shared, and dedicated ones a test can crash and restart).
 */
import { existsSync } from "node:fs";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { Cleanup } from "../../harness/cleanup.js";
import { startDaemon, Daemon } from "../../harness/daemon.js";
import { jetStreamRequest, natsInfo, natsServerCommand } from "../../harness/nats-server.js";
import { sql as query } from "../grpc/helpers.js";
import { Dedicated } from "./dedicated.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, natsUrl, redisUrl, uniqueHex, withDatabase } from "./services.js";

describe("PostgreSQL", () => {
  const drops: Array<() => Promise<void>> = [];
  afterAll(async () => {
    await Promise.all(drops.map((d) => d()));
  });

  it("withDatabase replaces only the database component", () => {
    expect(withDatabase("postgres://u:p@h:5433/postgres?sslmode=disable", "t_1")).toBe("postgres://u:p@h:5433/t_1?sslmode=disable");
  });

  it("fresh databases are real, usable and distinct", async () => {
    const a = await freshDatabase();
    drops.push(a.drop);
    const b = await freshDatabase();
    drops.push(b.drop);
    expect(a.url).not.toBe(b.url);

    await query(a.url, "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)");
    await query(a.url, "INSERT INTO items VALUES ($1, $2), ($3, $4)", [1, "one", 2, "two"]);
    expect(await query(a.url, "SELECT id, label FROM items ORDER BY id")).toEqual([
      { id: 1, label: "one" },
      { id: 2, label: "two" },
    ]);
    expect(await query(a.url, "SELECT current_database() AS db")).toEqual([{ db: a.name }]);

    // The table created in `a` must not exist in `b`.
    expect(await query(b.url, "SELECT to_regclass('public.items') AS t")).toEqual([{ t: null }]);
    expect(await query(b.url, "SELECT current_database() AS db")).toEqual([{ db: b.name }]);
  });

  it("drop() removes the database even with open connections", async () => {
    const c = await freshDatabase();
    const open = new pg.Client({ connectionString: c.url });
    open.on("error", () => {}); // it gets terminated by DROP ... WITH (FORCE)
    await open.connect();
    await c.drop();
    await open.end().catch(() => {});
    await expect(query(c.url, "SELECT 1")).rejects.toMatchObject({ code: "3D000" }); // invalid_catalog_name
  });
});

describe("Redis", () => {
  const redis = new Redis(redisUrl());
  const mine = freshRedisPrefix();
  const other = freshRedisPrefix();
  afterAll(async () => {
    await flushPrefix(redisUrl(), mine);
    await flushPrefix(redisUrl(), other);
    redis.disconnect();
  });

  it("prefixes are unique", () => {
    expect(mine).toMatch(/^t:[0-9a-f]+:$/);
    expect(mine).not.toBe(other);
  });

  it("SET/GET works and flushPrefix removes only that prefix's keys", async () => {
    await redis.set(`${mine}a`, "1");
    await redis.set(`${mine}b:c`, "2");
    await redis.set(`${other}a`, "3");
    expect(await redis.get(`${mine}a`)).toBe("1");
    expect(await redis.get(`${mine}b:c`)).toBe("2");

    await flushPrefix(redisUrl(), mine);

    expect(await redis.exists(`${mine}a`, `${mine}b:c`)).toBe(0);
    expect(await redis.get(`${other}a`)).toBe("3");
  });
});

describe("NATS", () => {
  it("the shared server greets as a JetStream server, and its JetStream API answers", async () => {
    expect(await natsInfo(natsUrl())).toMatchObject({ jetstream: true });
    const account = await jetStreamRequest(natsUrl(), "$JS.API.INFO");
    expect(account).toMatchObject({ type: "io.nats.jetstream.api.v1.account_info_response" });
    expect(account.error).toBeUndefined();
  });

  it("a stream created on the shared server is there, and can be removed again", async () => {
    const name = `harness_${uniqueHex()}`;
    const created = await jetStreamRequest(natsUrl(), `$JS.API.STREAM.CREATE.${name}`, {
      name,
      subjects: [`${name}.>`],
      storage: "memory",
    });
    expect(created.error).toBeUndefined();
    expect(await jetStreamRequest(natsUrl(), `$JS.API.STREAM.INFO.${name}`)).toMatchObject({ config: { name } });
    expect(await jetStreamRequest(natsUrl(), `$JS.API.STREAM.DELETE.${name}`)).toMatchObject({ success: true });
    expect(await jetStreamRequest(natsUrl(), `$JS.API.STREAM.INFO.${name}`)).toMatchObject({ error: { code: 404 } });
  });

  it("a dedicated server keeps its streams across a crash (SIGKILL) and a start on the same port; stopAll leaves nothing", async () => {
    const d = new Dedicated();
    try {
      const nats = await d.nats({ name: "harness-nats" });
      const stream = { name: "kept", subjects: ["kept.>"], storage: "file" };
      expect((await jetStreamRequest(nats.url, "$JS.API.STREAM.CREATE.kept", stream)).error).toBeUndefined();
      const port = nats.port;

      await nats.kill();
      expect(nats.running).toBe(false);
      await expect(natsInfo(nats.url)).rejects.toThrow();

      await nats.start();
      expect(nats.port).toBe(port);
      expect(await jetStreamRequest(nats.url, "$JS.API.STREAM.INFO.kept")).toMatchObject({ config: { name: "kept", storage: "file" } });

      await d.stopAll();
      expect(existsSync(nats.dir)).toBe(false);
      expect(d.leftovers()).toEqual([]);
    } finally {
      await d.stopAll();
    }
  });

  it("a NATS server without JetStream is told apart (the probe can fail)", async () => {
    const owner = new Cleanup({ name: "harness test" });
    try {
      const plain = await startDaemon(
        owner,
        { name: "plain-nats" },
        (port, dir) =>
          new Daemon("plain-nats", port, dir, {
            command: natsServerCommand(),
            args: (p) => ["--addr", "127.0.0.1", "--port", String(p)],
            ready: async (p) => (await natsInfo(`nats://127.0.0.1:${p}`)).server_id !== undefined,
          }),
      );
      const url = `nats://127.0.0.1:${plain.port}`;
      expect((await natsInfo(url)).jetstream).toBeUndefined();
      await expect(jetStreamRequest(url, "$JS.API.INFO")).rejects.toThrow(/no JetStream/);
    } finally {
      await owner.run();
    }
  });
});
