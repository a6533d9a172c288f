/**
 * The Python package (clients/python) as its users get it: the wheel is built with the Debian 12
 * toolchain (`python3 -m build --wheel --no-isolation`), installed with pip into a fresh virtual
 * environment without any package index (grpcio and protobuf come from the system through
 * --system-site-packages), and the package's own pytest suite runs there against a real server
 * that demands tokens (and a second one speaking TLS, with the certificate of test/ops). Fails
 * when pytest fails, skips or collects nothing.
 */
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { PACKAGING_MODULES, packageDir, python, run } from "./python.js";

const adminToken = randomBytes(12).toString("hex");
const assignToken = randomBytes(12).toString("hex");
// A self-signed certificate for localhost (see test/ops/tls.test.ts).
const certFile = fileURLToPath(new URL("../ops/fixtures/localhost.crt", import.meta.url));
const keyFile = fileURLToPath(new URL("../ops/fixtures/localhost.key", import.meta.url));

let dir: string;
let t: TestServer;
let tls: TestServer;
beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "python-package-"));
  t = await startTestServer({ adminToken, assignToken });
  tls = await startTestServer({ adminToken, tls: { certFile, keyFile } });
});
afterAll(async () => {
  await t?.stop();
  await tls?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The wheel's file names. */
async function wheelFiles(py: string, wheel: string): Promise<string[]> {
  const list = await run(py, ["-c", "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))", wheel]);
  expect(list.code, list.stderr).toBe(0);
  return list.stdout.trim().split("\n");
}

describe("Python package (clients/python)", () => {
  let wheel: string;
  const venvPython = () => path.join(dir, "venv", "bin", "python");

  it("builds a wheel carrying the generated assignment.v1 and assignment_client, typed", async () => {
    const py = python(PACKAGING_MODULES);
    // Built from a copy, so that the repository gets no build/ or .egg-info.
    const source = path.join(dir, "source");
    cpSync(packageDir, source, { recursive: true, filter: (p) => !/(^|\/)(__pycache__|build|dist|[^/]*\.egg-info)$/.test(p) });
    const dist = path.join(dir, "dist");
    const build = await run(py, ["-m", "build", "--wheel", "--no-isolation", "--outdir", dist, source], { timeoutMs: 180_000 });
    expect(build.code, build.stdout + build.stderr).toBe(0);
    const wheels = readdirSync(dist).filter((f) => f.endsWith(".whl"));
    expect(wheels).toEqual(["assignment_client-0.1.0-py3-none-any.whl"]);
    wheel = path.join(dist, wheels[0]);

    const files = await wheelFiles(py, wheel);
    const generated = readdirSync(path.join(packageDir, "gen", "assignment", "v1")).filter((f) => /\.pyi?$/.test(f));
    expect(generated.length).toBeGreaterThanOrEqual(12); // messages, .pyi, gRPC stubs and their .pyi of three files
    for (const f of generated) expect(files, f).toContain(`assignment/v1/${f}`);
    const helpers = readdirSync(path.join(packageDir, "src", "assignment_client")).filter((f) => f.endsWith(".py"));
    for (const f of helpers) expect(files, f).toContain(`assignment_client/${f}`);
    expect(files).toContain("assignment/v1/py.typed");
    expect(files).toContain("assignment_client/py.typed");
    // Nothing else: no tests, examples or build leftovers.
    const stray = files.filter(
      (f) => !/^(assignment\/v1\/[^/]+|assignment_client\/[^/]+|assignment_client-0\.1\.0\.dist-info\/[^/]+)$/.test(f),
    );
    expect(stray).toEqual([]);
    const metadata = await run(py, [
      "-c",
      "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode())",
      wheel,
      "assignment_client-0.1.0.dist-info/METADATA",
    ]);
    expect(metadata.stdout).toMatch(/^Requires-Dist: grpcio \(>=1\.51\)$/m);
    expect(metadata.stdout).toMatch(/^Requires-Dist: protobuf \(<5,>=4\.21\)$/m);
  }, 240_000);

  it("installs offline into a fresh venv, with the system's grpcio and protobuf", async () => {
    const py = python(PACKAGING_MODULES);
    const venv = await run(py, ["-m", "venv", "--system-site-packages", path.join(dir, "venv")], { timeoutMs: 120_000 });
    expect(venv.code, venv.stderr).toBe(0);
    const install = await run(venvPython(), ["-m", "pip", "install", "--no-index", wheel], {
      timeoutMs: 120_000,
      env: { PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_NO_INPUT: "1" },
    });
    expect(install.code, install.stdout + install.stderr).toBe(0);
    // The requirements were checked, and met by the system's packages.
    expect(install.stdout).toMatch(/Requirement already satisfied: grpcio/);
    expect(install.stdout).toMatch(/Requirement already satisfied: protobuf/);

    const where = await run(
      venvPython(),
      ["-c", "import assignment_client, assignment.v1.types_pb2 as t; print(assignment_client.__file__); print(t.__file__)"],
      {
        cwd: dir,
      },
    );
    expect(where.code, where.stderr).toBe(0);
    const sitePackages = path.join(dir, "venv", "lib");
    for (const file of where.stdout.trim().split("\n")) expect(file.startsWith(sitePackages), file).toBe(true);
  }, 240_000);

  it("passes its pytest suite against a live server", async () => {
    const junit = path.join(dir, "junit.xml");
    const cwd = path.join(dir, "run"); // nothing importable here: the tests use the installed package
    mkdirSync(cwd);
    const pytest = await run(
      venvPython(),
      ["-m", "pytest", "-p", "no:cacheprovider", "-rs", `--junitxml=${junit}`, path.join(packageDir, "tests")],
      {
        cwd,
        timeoutMs: 300_000,
        env: {
          ASSIGNMENT_ADDRESS: t.server.address,
          ASSIGNMENT_TOKEN: adminToken,
          ASSIGNMENT_TLS_ADDRESS: `localhost:${tls.server.port}`,
          ASSIGNMENT_CA_FILE: certFile,
        },
      },
    );
    expect(pytest.code, pytest.stdout + pytest.stderr).toBe(0);

    const xml = readFileSync(junit, "utf8");
    const suite = /<testsuite\b[^>]*>/.exec(xml)![0];
    const count = (name: string) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)![1]);
    expect({ failures: count("failures"), errors: count("errors"), skipped: count("skipped") }).toEqual({
      failures: 0,
      errors: 0,
      skipped: 0,
    });
    expect(count("tests")).toBeGreaterThanOrEqual(20);
    const cases = [...xml.matchAll(/<testcase\b[^>]*\bname="([^"]+)"/g)].map((m) => m[1]);
    for (const name of [
      "test_evaluate",
      "test_the_config_names_exactly_the_idempotent_methods",
      "test_a_cohort_streams_in_order_and_agrees_with_bulk_and_the_hash",
      "test_a_cohort_reads_its_input_only_as_answers_are_taken",
      "test_the_token_is_sent",
      "test_idempotent_calls_made_before_the_server_listens_succeed_once_it_does",
      "test_the_readme_examples_run",
      "test_tls_with_a_token",
    ]) {
      expect(cases, name).toContain(name);
    }
  }, 360_000);
});
