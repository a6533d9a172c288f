/**
 * Starts ./stalled-exporter.ts in a process of its own (compiled next to this file, or the .ts
 * under the tsx loader): `count` ExportAssignments calls of `experimentKey` that each read one
 * message and stop reading. Resolves once every call has stalled, that is once the messages their
 * clients read ahead stopped growing (each export first sends a burst: grpc-js buffers 16 messages,
 * HTTP/2 a window more). Used by the stalled-streams benchmark and test.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

export interface StalledExports {
  /** The exports that had their first message (the others failed, saying why in `failed`). */
  started: number;
  failed: string[];
  /** Messages the clients had buffered when the server stopped sending. */
  buffered: number;
  /** Cancels every export and waits for the process to end. */
  stop(): Promise<void>;
}

export async function startStalledExports(
  address: string,
  count: number,
  experimentKey: string,
  batchSize: number,
): Promise<StalledExports> {
  const compiled = import.meta.url.endsWith(".js");
  const script = fileURLToPath(new URL(compiled ? "./stalled-exporter.js" : "./stalled-exporter.ts", import.meta.url));
  const loader = compiled ? [] : ["--import", "tsx"];
  const child = spawn(process.execPath, [...loader, script, address, String(count), experimentKey, String(batchSize)], {
    cwd: fileURLToPath(new URL(compiled ? "../.." : "..", import.meta.url)),
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = once(child, "exit");
  const stop = async () => {
    child.stdin!.end();
    await exited;
  };
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await Promise.race([lines.next(), exited.then(() => ({ done: true as const, value: "" }))]);
    if (r.done) throw new Error("the stalled exporter ended before its exports stalled");
    return JSON.parse(r.value) as { stalled?: number; failed?: string[]; settled?: number };
  };
  try {
    const report = await next();
    const { settled } = await next();
    return { started: report.stalled ?? 0, failed: report.failed ?? [], buffered: settled ?? Number.NaN, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
