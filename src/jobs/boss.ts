/**
 * pg-boss (https://github.com/timgit/pg-boss, version 10): the job engine. It keeps its queues in
 * its own schema (`pgboss`) of the same database as the data, so a job's chunks are queued in the
 * same transaction that records the job, and a worker that dies mid-chunk leaves the chunk
 * `active` until its expiry, when pg-boss puts it back (a retry, with backoff) for any worker.
 *
 * On PostgreSQL it has a small pool of its own. On the embedded PGlite (no network protocol) it runs
 * in process over PGlite through `executeSql`, its one hook for bringing a connection: statements
 * with parameters go through `query`, those without (pg-boss's own multi-statement transactions,
 * `BEGIN; … COMMIT;`) through `exec`, which PGlite runs whole before any other caller's.
 */
import type { PGlite } from "@electric-sql/pglite";
import PgBoss from "pg-boss";
import type { Queryable } from "../store/database.js";
import { isDeadlock } from "../store/pg-errors.js";

/** The queue of job chunks: one pg-boss job per chunk of a few thousand units. */
export const CHUNK_QUEUE = "assignment-job-chunks";
/** The NOTIFY channel that wakes worker loops when a job is queued (see Jobs.work). */
export const JOB_CHANNEL = "assignment_jobs";
/** Chunks that failed after their retries (pg-boss's dead-letter queue): they fail their job. */
export const DEAD_CHUNK_QUEUE = "assignment-job-chunks-failed";
/** Schedules: pg-boss keeps one cron schedule per queue, so each schedule has a queue of its own. */
export const SCHEDULE_QUEUE_PREFIX = "assignment-schedule.";

export interface BossOptions {
  /** Seconds a chunk may stay active before pg-boss takes it for dead and retries it (the time a
   * crashed worker delays its chunk). */
  chunkTimeoutSeconds: number;
  /** Retries of a failed or timed-out chunk before its job fails. */
  retryLimit: number;
  /** Seconds before the first retry, doubled (with jitter) for each further one. */
  retryDelaySeconds: number;
  /** How often pg-boss looks for expired chunks (its maintenance; one server does it at a time). */
  maintenanceIntervalSeconds: number;
}

type Db = { executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount?: number }> };

/** pg-boss's `db` over PGlite. */
export function pgliteBossDb(pg: PGlite): Db {
  return {
    async executeSql(text, values) {
      if (values && values.length > 0) {
        const r = await pg.query(text, values);
        return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
      }
      const results = await pg.exec(text);
      const last = results[results.length - 1];
      return { rows: last?.rows ?? [], rowCount: last?.affectedRows ?? last?.rows.length ?? 0 };
    },
  };
}

/** pg-boss's `db` over one of our transactions: what is sent through it commits with the transaction. */
export function transactionBossDb(tx: Queryable): Db {
  return { executeSql: (text, values) => tx.query(text, values) };
}

export async function startBoss(
  connection: { url: string; max: number } | { pglite: PGlite },
  options: BossOptions,
  onError: (err: Error) => void,
): Promise<PgBoss> {
  const boss = new PgBoss({
    ...("url" in connection
      ? { connectionString: connection.url, max: connection.max, application_name: "assignment-server-jobs" }
      : { db: pgliteBossDb(connection.pglite) as PgBoss.Db }),
    maintenanceIntervalSeconds: options.maintenanceIntervalSeconds,
    // Schedules are looked at every 10 s (one server at a time); pg-boss sends each tick once.
    cronMonitorIntervalSeconds: 10,
    cronWorkerIntervalSeconds: 5,
  });
  boss.on("error", onError);
  await boss.start();
  const queue = {
    expireInSeconds: options.chunkTimeoutSeconds,
    retryLimit: options.retryLimit,
    retryDelay: options.retryDelaySeconds,
    retryBackoff: true,
    // Finished chunks are kept a day (pg-boss archives them); the job's own row keeps the outcome.
    retentionMinutes: 24 * 60,
  };
  await createQueue(boss, DEAD_CHUNK_QUEUE, { name: DEAD_CHUNK_QUEUE, ...queue });
  await createQueue(boss, CHUNK_QUEUE, { name: CHUNK_QUEUE, ...queue, deadLetter: DEAD_CHUNK_QUEUE });
  return boss;
}

/**
 * pg-boss's createQueue, run again when PostgreSQL aborted it to break a deadlock. Servers started
 * together on a fresh database (WORKERS=N, replicas) create the same queues at once; pg-boss 10's
 * create_queue adds foreign keys to its queue table, and two of them can deadlock on it. The one
 * aborted finds the queue made by the other when it runs again (ON CONFLICT DO NOTHING).
 */
export async function createQueue(boss: PgBoss, name: string, options: PgBoss.Queue): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await boss.createQueue(name, options);
      return;
    } catch (err) {
      if (!isDeadlock(err) || attempt >= 5) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt + Math.random() * 50));
    }
  }
}
