/** Running Python from tests: the examples (clients/python/examples) and the package's tools. */
import { execFile, execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** The Python package: pyproject.toml, src/assignment_client, gen/assignment (buf generate), tests. */
export const packageDir = path.join(repoRoot, "clients", "python");
export const examplesDir = path.join(packageDir, "examples");
export const vectorsPath = path.resolve(repoRoot, "spec/vectors/assignment-v1.json");

/** What the examples import: the gRPC and protobuf runtimes. */
export const RUNTIME_MODULES = ["grpc", "google.protobuf"];
/** What building the wheel, making a venv and running the package's tests need on top. */
export const PACKAGING_MODULES = [...RUNTIME_MODULES, "build", "setuptools", "wheel", "pytest", "ensurepip"];

const canImport = (python: string, modules: string[]): boolean => {
  try {
    execFileSync(python, ["-c", `import ${modules.join(", ")}`], { stdio: "ignore", timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
};

const found = new Map<string, string>();

/**
 * A Python 3 that can import `modules`: $PYTHON when set, else `python3` from PATH, else Debian's
 * /usr/bin/python3 (python3-grpcio, python3-protobuf, python3-build, python3-pytest, python3-venv
 * install there, and a python3 earlier on PATH, e.g. from pyenv, may lack them).
 */
export function python(modules: string[] = RUNTIME_MODULES): string {
  const key = modules.join(",");
  const cached = found.get(key);
  if (cached) return cached;
  const candidates = process.env.PYTHON ? [process.env.PYTHON] : ["python3", "/usr/bin/python3"];
  const pick = candidates.find((p) => canImport(p, modules));
  if (!pick) {
    throw new Error(
      `no Python among ${candidates.join(", ")} can import ${modules.join(", ")}: install python3-grpcio, python3-protobuf, python3-build, python3-setuptools, python3-wheel, python3-pytest and python3-venv (Debian), or set PYTHON`,
    );
  }
  found.set(key, pick);
  return pick;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program to its end. Asynchronous on purpose: a server under test answers from this same
 * process, so blocking the event loop would deadlock the two.
 */
export function run(
  command: string,
  args: string[],
  options: { input?: string; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      {
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
        cwd: options.cwd,
        env: { ...process.env, PYTHONIOENCODING: "utf-8", PYTHONDONTWRITEBYTECODE: "1", ...options.env },
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") return reject(Object.assign(err, { stdout, stderr }));
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
    child.stdin!.end(options.input);
  });
}

/** Runs an example of clients/python/examples on the package's sources (src/ and gen/ on PYTHONPATH). */
export function runPython(script: string, args: string[], input?: string, timeoutMs = 60_000): Promise<Run> {
  const sources = [path.join(packageDir, "src"), path.join(packageDir, "gen")].join(path.delimiter);
  return run(python(), [path.join(examplesDir, script), ...args], { input, timeoutMs, env: { PYTHONPATH: sources } });
}
