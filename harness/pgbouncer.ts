/**
 * A PgBouncer of its own (Debian's `pgbouncer`) on a free loopback port, in front of a PostgreSQL
 * server, in transaction pooling mode unless told otherwise: every transaction (every statement
 * outside one) gets whichever server connection is free, so nothing a client leaves in its
 * session (SET, LISTEN, session-level advisory locks, named prepared statements) is there for its
 * next statement. Any database name is passed through to the same name on the server. Trust
 * authentication for `postgres` (the throwaway servers' user). PgBouncer refuses to run as root:
 * as root it runs as `postgres`.
 */
import { chownSync, writeFileSync } from "node:fs";
import { existsSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import type { Cleanup } from "./cleanup.js";
import { Daemon, startDaemon } from "./daemon.js";
import { postgresUser, runsAsRoot } from "./postgres-server.js";

export interface PgBouncerOptions {
  /** Names the temp folder `<name>-*`. */
  name: string;
  /** host:port of the PostgreSQL server behind it. */
  server: { host: string; port: number };
  /** Default "transaction". */
  poolMode?: "session" | "transaction" | "statement";
  /** Server connections per database and user; default 10. */
  poolSize?: number;
}

/** Debian puts it in /usr/sbin, which is not on every PATH. */
function pgbouncerCommand(): string {
  return existsSync("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : "pgbouncer";
}

async function answers(port: number): Promise<boolean> {
  const client = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`, connectionTimeoutMillis: 2_000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } finally {
    await client.end().catch(() => {});
  }
}

export class PgBouncer extends Daemon {
  constructor(name: string, port: number, dir: string, options: PgBouncerOptions) {
    const ini = path.join(dir, "pgbouncer.ini");
    super(name, port, dir, {
      command: pgbouncerCommand(),
      args: (p, d) => {
        writeFileSync(path.join(d, "userlist.txt"), `"postgres" ""\n`);
        writeFileSync(
          ini,
          [
            "[databases]",
            `* = host=${options.server.host} port=${options.server.port}`,
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            `listen_port = ${p}`,
            "unix_socket_dir =",
            "auth_type = trust",
            `auth_file = ${path.join(d, "userlist.txt")}`,
            "admin_users = postgres",
            `pool_mode = ${options.poolMode ?? "transaction"}`,
            `default_pool_size = ${options.poolSize ?? 10}`,
            "max_client_conn = 1000",
            // What node-postgres and pg-boss may send at connect that PgBouncer does not track.
            "ignore_startup_parameters = extra_float_digits,options",
            "server_reset_query =",
            "",
          ].join("\n"),
        );
        if (runsAsRoot) {
          const user = postgresUser();
          for (const f of [d, ini, path.join(d, "userlist.txt")]) chownSync(f, user.uid, user.gid);
        }
        return [ini];
      },
      ready: answers,
      user: runsAsRoot ? postgresUser() : undefined,
    });
  }

  /** The URL of `database` through this PgBouncer (user postgres). */
  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** `SHOW <what>` on PgBouncer's admin console (STATS, POOLS, CLIENTS, SERVERS, ...). */
  async show<R extends pg.QueryResultRow>(what: string): Promise<R[]> {
    if (!/^[a-z_]+$/i.test(what)) throw new Error(`not a SHOW command: ${what}`);
    const client = new pg.Client({ connectionString: this.url("pgbouncer"), connectionTimeoutMillis: 5_000 });
    client.on("error", () => {});
    await client.connect();
    try {
      // The admin console speaks the simple query protocol only.
      return (await client.query<R>({ text: `SHOW ${what}`, queryMode: "simple" } as pg.QueryConfig)).rows;
    } finally {
      await client.end().catch(() => {});
    }
  }
}

/** A throwaway PgBouncer (see startDaemon: its folder and process are removed by `owner`). */
export function startPgBouncer(owner: Cleanup, options: PgBouncerOptions): Promise<PgBouncer> {
  return startDaemon(owner, { name: options.name }, (port, dir) => new PgBouncer(options.name, port, dir, options));
}
