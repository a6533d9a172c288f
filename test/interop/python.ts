/** Running the Python examples (examples/python) from tests. */
import { execFile, execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const examplesDir = path.join(repoRoot, "examples", "python");
export const vectorsPath = path.resolve(repoRoot, "spec/vectors/assignment-v1.json");

const canImportGrpc = (python: string): boolean => {
  try {
    execFileSync(python, ["-c", "import grpc, google.protobuf"], { stdio: "ignore", timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
};

let found: string | undefined;

/**
 * A Python 3 that has grpcio and protobuf: $PYTHON when set, else `python3` from PATH, else
 * Debian's /usr/bin/python3 (python3-grpcio and python3-protobuf install there, and a python3
 * earlier on PATH, e.g. from pyenv, may lack them).
 */
export function python(): string {
  if (found) return found;
  const candidates = process.env.PYTHON ? [process.env.PYTHON] : ["python3", "/usr/bin/python3"];
  found = candidates.find(canImportGrpc);
  if (!found) {
    throw new Error(
      `no Python with grpc and google.protobuf among ${candidates.join(", ")}: install python3-grpcio and python3-protobuf (Debian), or set PYTHON`,
    );
  }
  return found;
}

export interface PythonRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a script of examples/python. Asynchronous on purpose: the server under test answers from
 * this same process, so blocking the event loop would deadlock the two.
 */
export function runPython(script: string, args: string[], input?: string, timeoutMs = 60_000): Promise<PythonRun> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      python(),
      [path.join(examplesDir, script), ...args],
      {
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
        env: { ...process.env, PYTHONIOENCODING: "utf-8", PYTHONDONTWRITEBYTECODE: "1" },
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") return reject(Object.assign(err, { stderr }));
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
  });
}
