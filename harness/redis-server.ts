/** redis-server on a loopback port of its own, for the test services and for fault tests. */
import { spawnSync } from "node:child_process";
import net from "node:net";
import type { Cleanup } from "./cleanup.js";
import { Daemon, startDaemon } from "./daemon.js";
import { runCommand } from "./processes.js";

/** True when a Redis server answers PING on 127.0.0.1:port. */
function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on("error", () => done(false));
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
  });
}

/** No persistence unless a test asks for it (SAVE writes dump.rdb into the folder, which a restart
 * loads). `args` are added to the command line (e.g. cluster mode). */
export class RedisServer extends Daemon {
  constructor(name: string, port: number, dir: string, args: string[] = []) {
    super(name, port, dir, {
      command: "redis-server",
      args: (p, d) => [
        "--port",
        String(p),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        d,
        ...args,
      ],
      ready: redisPing,
    });
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** redis-cli against this server, without blocking this process; returns stdout (throws on failure). */
  async cliAsync(...args: string[]): Promise<string> {
    const r = await runCommand("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), ...args], { cwd: this.dir });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")} failed: ${r.output}`);
    return r.stdout;
  }

  /** redis-cli against this server; returns stdout (throws on failure). Blocks this process: not
   * while a server under test runs in it. */
  cli(...args: string[]): string {
    const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), ...args], { encoding: "utf8", timeout: 10_000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")} failed: ${r.stdout}${r.stderr}`);
    return r.stdout;
  }
}

/** A throwaway redis-server (see startDaemon: its folder and process are removed by `owner`). */
export function startRedis(owner: Cleanup, options: { name: string; port?: number; args?: string[] }): Promise<RedisServer> {
  return startDaemon(owner, options, (port, dir) => new RedisServer(options.name, port, dir, options.args));
}
