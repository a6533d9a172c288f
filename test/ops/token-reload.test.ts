/**
 * TOKENS_FILE as `npm start` reads it (src/main.ts in its own process): named tokens and roles at
 * start, SIGHUP reading the file again (a bad or missing file keeps the tokens in use and logs an
 * error), and a bad file refusing the start.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../harness/free-port.js";
import { runCommand } from "../../harness/processes.js";
import { spawnServer } from "../../harness/spawn-server.js";
import { createClient, ExperimentService } from "assignment-client";
import { REPO_ROOT } from "../cli/run-cli.js";
import { eventually, failure, status } from "../grpc/helpers.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";

const TOKEN = {
  alice: "alice-token-0123456789abcdef",
  bob: "bob-token-0123456789abcdef",
  carol: "carol-token-0123456789abcdef",
};

let dir: string;
let db: Awaited<ReturnType<typeof freshDatabase>>;
const prefix = freshRedisPrefix();
beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "token-reload-"));
  db = await freshDatabase();
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await flushPrefix(redisUrl(), prefix);
  await db?.drop();
});

describe("TOKENS_FILE with npm start", () => {
  it(
    "serves the file's tokens by role; SIGHUP swaps them; a bad or missing file keeps the old ones and logs why",
    { timeout: 90_000 },
    async () => {
      const file = path.join(dir, "tokens");
      writeFileSync(file, `# the team\nalice admin ${TOKEN.alice}\nbob reader ${TOKEN.bob}\n`);
      const port = await freePort();
      // src/main.ts itself (harness/server-process.ts, mode main), with exactly this environment.
      const server = await spawnServer({
        label: "npm start",
        mode: "main",
        cleanEnv: true,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "",
          DATABASE_URL: db.url,
          REDIS_URL: redisUrl(),
          REDIS_PREFIX: prefix,
          TOKENS_FILE: file,
          PORT: String(port),
          METRICS_PORT: "0",
        },
      });
      const logs = server.messages;
      const clients: { close(): void }[] = [];
      const as = (who: keyof typeof TOKEN) => {
        const c = createClient(ExperimentService, `127.0.0.1:${port}`, { token: TOKEN[who], timeoutMs: 20_000, retry: false });
        clients.push(c);
        return c;
      };
      const codeOf = async (p: Promise<unknown>) => status[(await failure(p)).code];
      const logged = (msg: RegExp) => eventually(async () => logs.some((l) => msg.test(String(l.msg))), 20_000);
      try {
        expect(server.announcement.auth).toMatchObject({
          experimentService: "bearer token",
          assignmentService: "open",
          tokens: { admin: 1, reader: 1, operator: 0, assign: 0 },
        });
        await as("alice").createExperiment({ key: "reloaded", variants: [{ key: "a", weight: 10_000 }] });
        expect((await as("bob").getExperiment({ key: "reloaded" })).experiment!.key).toBe("reloaded");
        expect(await codeOf(as("bob").createExperiment({ key: "nope", variants: [{ key: "a", weight: 10_000 }] }))).toBe(
          "PERMISSION_DENIED",
        );
        expect(await codeOf(as("carol").listExperiments({}))).toBe("UNAUTHENTICATED");

        // New file: alice gone, bob an operator now, carol an admin.
        writeFileSync(file, `bob operator ${TOKEN.bob}\ncarol admin ${TOKEN.carol}\n`);
        server.signal("SIGHUP");
        expect(await logged(/^token file reloaded$/)).toBe(true);
        expect(logs.find((l) => l.msg === "token file reloaded")).toMatchObject({
          tokens: { admin: 1, operator: 1, reader: 0, assign: 0 },
        });
        expect(await codeOf(as("alice").listExperiments({}))).toBe("UNAUTHENTICATED");
        expect((await as("carol").listExperiments({})).experiments.map((e) => e.key)).toEqual(["reloaded"]);
        const { experiment } = await as("carol").getExperiment({ key: "reloaded" });
        expect(
          (await as("bob").updateExperiment({ key: "reloaded", version: experiment!.version, rollout: 5_000 })).experiment!.rollout,
        ).toBe(5_000);

        // A bad file: refused, logged with its line, and the tokens in use stay.
        writeFileSync(file, `carol admin ${TOKEN.carol}\nalice root ${TOKEN.alice}\n`);
        server.signal("SIGHUP");
        expect(await logged(/^token file not reloaded, the tokens in use stay: .*line 2: unknown role "root"/)).toBe(true);
        expect(logs.find((l) => String(l.msg).startsWith("token file not reloaded"))!.level).toBe(50); // error
        expect(await codeOf(as("alice").listExperiments({}))).toBe("UNAUTHENTICATED");
        expect((await as("carol").listExperiments({})).experiments).toHaveLength(1);
        expect((await as("bob").getExperiment({ key: "reloaded" })).experiment!.rollout).toBe(5_000);

        // A file gone: the same.
        rmSync(file);
        server.signal("SIGHUP");
        expect(await logged(/^token file not reloaded, the tokens in use stay: .*cannot read .*\(ENOENT\)/)).toBe(true);
        expect((await as("carol").listExperiments({})).experiments).toHaveLength(1);
        expect(JSON.stringify(logs)).not.toContain(TOKEN.alice.slice(0, 12));
        expect(JSON.stringify(logs)).not.toContain(TOKEN.carol.slice(0, 12));
      } finally {
        clients.forEach((c) => c.close());
        await server.stop();
      }
    },
  );

  it("refuses to start on a bad file (exit code 2), naming the file and the line", async () => {
    const file = path.join(dir, "bad-tokens");
    writeFileSync(file, `alice admin ${TOKEN.alice}\nbob admin ${TOKEN.alice}\n`);
    const { status: code, stderr } = await runCommand(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: db.url, TOKENS_FILE: file, PORT: "0", METRICS_PORT: "0" },
    });
    expect(code).toBe(2);
    expect(stderr).toContain(`TOKENS_FILE (--tokens-file): ${file} line 2: token "bob" is the same token as "alice" on line 1`);
    expect(stderr).not.toContain(TOKEN.alice);
  });
});
