/**
 * nats-server with JetStream on a loopback port of its own, its store in its own folder, for the
 * test services and for fault tests; and two probes over the raw NATS protocol (no client library:
 * the code that publishes events chooses that): the INFO a server greets with, and one request
 * to the JetStream API.
 */
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Cleanup } from "./cleanup.js";
import { Daemon, startDaemon } from "./daemon.js";

/** nats-server from PATH, else Debian's /usr/sbin/nats-server (not on every user's PATH). */
export function natsServerCommand(): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, "nats-server"))) return path.join(dir, "nats-server");
  }
  return existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server";
}

/** JetStream on, listening on 127.0.0.1 only, its store (streams, consumers, messages) in the
 * folder: kept across kill() and start(), like a server's disk across a crash. */
export class NatsServer extends Daemon {
  constructor(name: string, port: number, dir: string) {
    super(name, port, dir, {
      command: natsServerCommand(),
      args: (p, d) => ["--jetstream", "--addr", "127.0.0.1", "--port", String(p), "--store_dir", d, "--server_name", name],
      ready: async (p) => (await jetStreamRequest(`nats://127.0.0.1:${p}`, "$JS.API.INFO", undefined, 1_000)).error === undefined,
    });
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }
}

/** A throwaway nats-server (see startDaemon: its folder and process are removed by `owner`);
 * resolves once its JetStream API answers. */
export function startNats(owner: Cleanup, options: { name: string; port?: number }): Promise<NatsServer> {
  return startDaemon(owner, options, (port, dir) => new NatsServer(options.name, port, dir));
}

type Json = Record<string, unknown>;

function connect(url: string, timeoutMs: number, fail: (err: Error) => void): net.Socket {
  const u = new URL(url);
  const sock = net.connect(Number(u.port || 4222), u.hostname);
  sock.setTimeout(timeoutMs, () => fail(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
  sock.on("error", fail);
  return sock;
}

/** The INFO a NATS server sends first on every connection (server_id, version, jetstream, ...). */
export function natsInfo(url: string, timeoutMs = 2_000): Promise<Json> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const sock = connect(url, timeoutMs, (err) => {
      sock.destroy();
      reject(err);
    });
    sock.on("data", (d: Buffer) => {
      buf += d.toString();
      const eol = buf.indexOf("\r\n");
      if (eol < 0) return;
      sock.destroy();
      const line = buf.slice(0, eol);
      if (line.startsWith("INFO ")) resolve(JSON.parse(line.slice(5)) as Json);
      else reject(new Error(`${url} greeted with ${JSON.stringify(line)}, not INFO`));
    });
  });
}

/**
 * One request to JetStream's API (`$JS.API.INFO`, `$JS.API.STREAM.CREATE.<name>`, ...) over the
 * raw protocol; resolves with the JSON answer (which carries `error` when JetStream refused).
 * Rejects when nothing answers the subject (a server without JetStream) or on a protocol error.
 */
export function jetStreamRequest(url: string, subject: string, body?: unknown, timeoutMs = 5_000): Promise<Json> {
  return new Promise((resolve, reject) => {
    const inbox = `_INBOX.harness.${process.pid}.${Date.now()}`;
    const payload = Buffer.from(body === undefined ? "" : JSON.stringify(body));
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (err: Error | undefined, value?: Json) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const sock = connect(url, timeoutMs, (err) => finish(err));
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const eol = buf.indexOf("\r\n");
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString();
        if (line.startsWith("MSG ") || line.startsWith("HMSG ")) {
          // MSG <subject> <sid> <bytes> / HMSG <subject> <sid> <header bytes> <total bytes>
          const parts = line.split(" ");
          const total = Number(parts.at(-1));
          if (buf.length < eol + 2 + total + 2) return; // the rest of the message is still coming
          let message = buf.subarray(eol + 2, eol + 2 + total);
          if (line.startsWith("HMSG ")) {
            const headerBytes = Number(parts.at(-2));
            const status = /^NATS\/1\.0 (\d+)/.exec(message.subarray(0, headerBytes).toString())?.[1];
            if (status === "503") return finish(new Error(`nothing answers ${subject} at ${url} (no JetStream)`));
            message = message.subarray(headerBytes);
          }
          try {
            return finish(undefined, JSON.parse(message.toString()) as Json);
          } catch {
            return finish(new Error(`${subject} answered ${JSON.stringify(message.toString())}, not JSON`));
          }
        }
        buf = buf.subarray(eol + 2);
        if (line.startsWith("INFO ")) {
          const connectOptions = { verbose: false, pedantic: false, headers: true, no_responders: true, protocol: 1 };
          sock.write(`CONNECT ${JSON.stringify(connectOptions)}\r\nSUB ${inbox} 1\r\n`);
          sock.write(`PUB ${subject} ${inbox} ${payload.length}\r\n`);
          sock.write(Buffer.concat([payload, Buffer.from("\r\n")]));
        } else if (line === "PING") sock.write("PONG\r\n");
        else if (line.startsWith("-ERR")) return finish(new Error(`${url}: ${line}`));
      }
    });
  });
}
