/**
 * The TypeScript client package (packages/client, "assignment-client") as its users get it:
 * `npm pack` (from a copy of the package, whose prepack script compiles it), the tarball
 * installed into a fresh scratch project with its peer dependencies, then
 *
 * - plain `node` (no TypeScript loader, no flags) runs an ESM script importing it that calls a
 *   real server demanding tokens: creates an experiment, assigns, decodes a column, streams a
 *   cohort, reads the limits;
 * - `tsc` (strict, NodeNext) type-checks a TypeScript program against the package's .d.ts,
 *   including lines that must NOT type-check (`@ts-expect-error`), so that `any` types fail.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { run } from "./python.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const packageDir = path.join(repo, "packages", "client");
const adminToken = "client-package-admin-0123456789";
const assignToken = "client-package-assign-0123456789";
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
/** Versions of the peers and tools as the repository has them (installed from npm's cache). */
const version = (name: string): string =>
  (JSON.parse(readFileSync(path.join(repo, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;

let work: string;
let scratch: string;
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ adminToken, assignToken });
  // The package is built in a copy inside the repository (so that tsc finds the repository's
  // node_modules for its peers), leaving packages/client/dist to the other tests.
  mkdirSync(path.join(repo, ".tmp"), { recursive: true });
  work = mkdtempSync(path.join(repo, ".tmp", "client-package-"));
  scratch = mkdtempSync(path.join(os.tmpdir(), "client-scratch-"));
});
afterAll(async () => {
  await t?.stop();
  for (const d of [work, scratch]) if (d) rmSync(d, { recursive: true, force: true });
});

const env = { NODE_OPTIONS: "", npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };

describe("TypeScript client package (packages/client)", () => {
  let tarball: string;

  it("packs: compiled ESM, declarations and the package's README only", async () => {
    const copy = path.join(work, "client");
    cpSync(packageDir, copy, { recursive: true, filter: (p) => !/(^|\/)(dist|node_modules)$/.test(p) });
    const pack = await run(npm, ["pack", "--json", "--pack-destination", work], { cwd: copy, timeoutMs: 180_000, env });
    expect(pack.code, pack.stdout + pack.stderr).toBe(0);
    const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf("["))) as [{ filename: string; files: { path: string }[] }];
    tarball = path.join(work, info.filename);
    const files = info.files.map((f) => f.path).sort();
    expect(files).toContain("dist/index.js");
    expect(files).toContain("dist/index.d.ts");
    expect(files).toContain("dist/limits.js");
    expect(files).toContain("dist/gen/assignment/v1/assignment_service_pb.d.ts");
    expect(files).toContain("README.md");
    expect(files.filter((f) => !/^dist\/.+\.(js|d\.ts)$/.test(f) && f !== "package.json" && f !== "README.md")).toEqual([]);
    expect(files.some((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toBe(false);
  });

  it("installs into a fresh project and runs on plain node against a live server", async () => {
    expect(tarball).toBeDefined();
    writeFileSync(path.join(scratch, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }));
    const install = await run(
      npm,
      [
        "install",
        "--prefer-offline",
        "--no-package-lock",
        tarball,
        `@grpc/grpc-js@${version("@grpc/grpc-js")}`,
        `@bufbuild/protobuf@${version("@bufbuild/protobuf")}`,
        `typescript@${version("typescript")}`,
        `@types/node@${version("@types/node")}`,
      ],
      { cwd: scratch, timeoutMs: 300_000, env },
    );
    expect(install.code, install.stdout + install.stderr).toBe(0);
    // No server dependency came along.
    const installed = readdirSync(path.join(scratch, "node_modules"));
    for (const server of ["pg", "ioredis", "pino", "@electric-sql", "tsx"]) expect(installed, server).not.toContain(server);

    writeFileSync(
      path.join(scratch, "main.js"),
      `import { AssignmentService, ExperimentService, ExperimentStatus, Reason, assignCohort, columnAnswers, createClient } from "assignment-client";
import { MAX_BULK_UNITS } from "assignment-client/limits";
const [address, adminToken, assignToken] = process.argv.slice(2);
const admin = createClient(ExperimentService, address, { token: adminToken, timeoutMs: 20000 });
const assign = createClient(AssignmentService, address, { token: assignToken, timeoutMs: 20000 });
await admin.createExperiment({ key: "pkg", variants: [{ key: "a", weight: 10000 }, { key: "b", weight: 0 }], status: ExperimentStatus.RUNNING });
const one = await assign.assign({ experimentKey: "pkg", unitId: "u-1" });
const bulk = await assign.bulkAssign({ experimentKey: "pkg", unitIds: ["u-1", "u-2"] });
const answers = columnAnswers(bulk.column).map((a) => [a.variantKey, Reason[a.reason], a.stored]);
let cohort = 0;
await assignCohort(assign, ["c-1", "c-2", "c-3"], { experimentKeys: ["pkg"] }, (ids) => { cohort += ids.length; });
let unauthenticated;
try { await createClient(ExperimentService, address, { retry: false }).getExperiment({ key: "pkg" }); } catch (e) { unauthenticated = e.code; }
console.log(JSON.stringify({ variant: one.assignment.variantKey, reason: Reason[one.assignment.reason], answers, cohort, MAX_BULK_UNITS, unauthenticated }));
admin.close(); assign.close();
`,
    );
    const main = await run(process.execPath, ["main.js", t.server.address, adminToken, assignToken], {
      cwd: scratch,
      env,
      timeoutMs: 60_000,
    });
    expect(main.code, main.stdout + main.stderr).toBe(0);
    expect(JSON.parse(main.stdout)).toEqual({
      variant: "a",
      reason: "NEW",
      answers: [
        ["a", "STICKY", true],
        ["a", "NEW", true],
      ],
      cohort: 3,
      MAX_BULK_UNITS: 10_000,
      unauthenticated: 16,
    });
  });

  it("type-checks with tsc against the package's declarations (and refuses what is wrong)", async () => {
    writeFileSync(
      path.join(scratch, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noEmit: true,
          types: ["node"],
        },
        include: ["check.ts"],
      }),
    );
    writeFileSync(
      path.join(scratch, "check.ts"),
      `import { AssignmentService, type ColumnAnswer, columnAnswers, createClient, Reason, retryServiceConfig } from "assignment-client";
import { MAX_MATRIX_CELLS } from "assignment-client/limits";
const client = createClient(AssignmentService, "127.0.0.1:1", { timeoutMs: 100 });
export async function typed(): Promise<ColumnAnswer[]> {
  const res = await client.bulkAssign({ experimentKey: "e", unitIds: ["u"] });
  const reason: Reason = res.column!.reasons[0]!;
  // @ts-expect-error a BulkAssign answer has no "assignment"
  void res.assignment;
  // @ts-expect-error unitIds is a list of strings
  await client.bulkAssign({ experimentKey: "e", unitIds: [1] });
  // @ts-expect-error there is no such method
  client.nosuchMethod();
  // @ts-expect-error limits are numbers
  const s: string = MAX_MATRIX_CELLS;
  void s;
  void reason;
  void retryServiceConfig([AssignmentService]);
  return columnAnswers(res.column!);
}
`,
    );
    const tsc = await run(process.execPath, [path.join(scratch, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], {
      cwd: scratch,
      env,
      timeoutMs: 120_000,
    });
    expect(tsc.code, tsc.stdout + tsc.stderr).toBe(0);
  });
});
