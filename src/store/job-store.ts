import { type Actor, recordChange } from "./audit-log.js";
import type { Database, Queryable } from "./database.js";

export type JobKindName = "assign" | "warm" | "migrate" | "import";
export type JobStateName = "queued" | "running" | "done" | "failed" | "cancelled";

/** What a job does, as stored (experiment keys resolved when the job was started). */
export interface StoredJobSpec {
  kind: JobKindName;
  /** assign, warm, import: the cohort ("" for migrate). */
  cohort: string;
  /** The experiments, resolved at start (a tag's RUNNING experiments then). */
  experimentKeys: string[];
  /** The tag the keys were resolved from, if any. */
  tag: string;
  /** Units per chunk. */
  chunkUnits: number;
  /** The schedule that started it, if any. */
  schedule?: string;
  /** migrate: the experiment copied from. */
  source?: string;
  /** migrate, import: the experiment copied or imported into. */
  target?: string;
  /** migrate: source variant key -> target variant key. */
  variantMapping?: Record<string, string>;
  /** migrate: stop the source once every unit is copied. */
  stopSource?: boolean;
  /** import: replace the target's stored assignments (OVERWRITE). */
  overwrite?: boolean;
  /** assign, warm: attributes of every unit (a Struct's JSON), under each unit's own. */
  attributes?: Record<string, unknown>;
  /** The role of the token that started the job (its changes are recorded in the audit log as
   * that token's). */
  createdByRole?: string;
}

export interface JobRecord {
  id: string;
  spec: StoredJobSpec;
  state: JobStateName;
  /** The cohort's id; null for a migrate job. */
  cohortId: number | null;
  totalUnits: number;
  processedUnits: number;
  enrolled: number;
  chunks: number;
  chunksDone: number;
  error: string | null;
  createdBy: string;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

interface JobRow {
  id: string;
  spec: StoredJobSpec | string;
  state: JobStateName;
  cohort_id: number | null;
  total_units: string;
  processed_units: string;
  enrolled: string;
  chunks: number;
  chunks_done: number;
  error: string | null;
  created_by: string;
  created_at: Date | string;
  started_at: Date | string | null;
  finished_at: Date | string | null;
}

const date = (d: Date | string | null) => (d === null ? null : new Date(d));

const toRecord = (r: JobRow): JobRecord => ({
  id: r.id,
  spec: typeof r.spec === "string" ? (JSON.parse(r.spec) as StoredJobSpec) : r.spec,
  state: r.state,
  cohortId: r.cohort_id,
  totalUnits: Number(r.total_units),
  processedUnits: Number(r.processed_units),
  enrolled: Number(r.enrolled),
  chunks: r.chunks,
  chunksDone: r.chunks_done,
  error: r.error,
  createdBy: r.created_by,
  createdAt: new Date(r.created_at),
  startedAt: date(r.started_at),
  finishedAt: date(r.finished_at),
});

const COLUMNS =
  "id, spec, state, cohort_id, total_units, processed_units, enrolled, chunks, chunks_done, error, created_by, created_at, started_at, finished_at";

export const TERMINAL_STATES: ReadonlySet<JobStateName> = new Set(["done", "failed", "cancelled"]);

/** Jobs and their checkpoints (which chunks finished). */
export class JobStore {
  constructor(private readonly db: Database) {}

  /** Records a new job inside the caller's transaction (the one that also queues its chunks). */
  async insert(
    tx: Queryable,
    job: { id: string; spec: StoredJobSpec; cohortId: number | null; totalUnits: number; chunks: number; createdBy: string },
  ): Promise<JobRecord> {
    const r = await tx.query<JobRow>(
      `INSERT INTO jobs (id, kind, spec, state, cohort_id, total_units, chunks, created_by)
       VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7) RETURNING ${COLUMNS}`,
      [job.id, job.spec.kind, JSON.stringify(job.spec), job.cohortId, job.totalUnits, job.chunks, job.createdBy],
    );
    return toRecord(r.rows[0]!);
  }

  /** Records a job that could not start (a schedule's tick whose cohort or experiments did not
   * fit then), failed with the reason, so that it shows in the list. Nothing if `id` exists. */
  async insertFailed(job: { id: string; spec: StoredJobSpec; createdBy: string; error: string }): Promise<void> {
    await this.db.query(
      `INSERT INTO jobs (id, kind, spec, state, cohort_id, total_units, chunks, created_by, error, finished_at)
       VALUES ($1, $2, $3, 'failed', 0, 0, 0, $4, $5, now()) ON CONFLICT (id) DO NOTHING`,
      [job.id, job.spec.kind, JSON.stringify(job.spec), job.createdBy, job.error],
    );
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const r = await this.db.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE id = $1`, [id]);
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  /** Newest first; only those a schedule started when `schedule` is given. */
  async list(limit: number, schedule?: string): Promise<JobRecord[]> {
    const r =
      schedule === undefined
        ? await this.db.query<JobRow>(`SELECT ${COLUMNS} FROM jobs ORDER BY created_at DESC, id LIMIT $1`, [limit])
        : await this.db.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE spec->>'schedule' = $2 ORDER BY created_at DESC, id LIMIT $1`, [
            limit,
            schedule,
          ]);
    return r.rows.map(toRecord);
  }

  /** Marks a queued job running (its first chunk began). */
  async markRunning(id: string): Promise<void> {
    await this.db.query("UPDATE jobs SET state = 'running', started_at = now() WHERE id = $1 AND state = 'queued'", [id]);
  }

  /** A job as it is now, and whether its chunk `chunk` is recorded finished: one round trip. */
  async getWithChunk(id: string, chunk: number): Promise<{ job: JobRecord; chunkDone: boolean } | undefined> {
    const r = await this.db.query<JobRow & { chunk_done: boolean }>(
      `SELECT ${COLUMNS}, EXISTS (SELECT 1 FROM job_chunks WHERE job_id = $1 AND chunk = $2) AS chunk_done FROM jobs WHERE id = $1`,
      [id, chunk],
    );
    const row = r.rows[0];
    return row ? { job: toRecord(row), chunkDone: row.chunk_done } : undefined;
  }

  /**
   * The checkpoint: records a chunk as finished and adds its counts, once (a chunk run again after
   * a crash changes nothing here); the last chunk makes the job done.
   */
  async finishChunk(id: string, chunk: number, units: number, enrolled: number): Promise<void> {
    await this.finishChunkIn(this.db, id, chunk, units, enrolled);
  }

  /** finishChunk inside the caller's transaction (the one that stored the chunk's rows, so that the
   * rows and the checkpoint commit together); false when the chunk was recorded already. One
   * statement (atomic on its own, so finishChunk needs no transaction of its own): the job's row is
   * updated only when the chunk's row was added. */
  async finishChunkIn(tx: Queryable, id: string, chunk: number, units: number, enrolled: number): Promise<boolean> {
    const r = await tx.query<{ added: number }>(
      `WITH added AS (
         INSERT INTO job_chunks (job_id, chunk, units, enrolled) VALUES ($1, $2, $3::int, $4::int) ON CONFLICT DO NOTHING RETURNING 1
       ), job AS (
         UPDATE jobs SET processed_units = processed_units + $3::int, enrolled = enrolled + $4::int, chunks_done = chunks_done + 1,
             state = CASE WHEN state = 'running' AND chunks_done + 1 = chunks THEN 'done' ELSE state END,
             finished_at = CASE WHEN state = 'running' AND chunks_done + 1 = chunks THEN now() ELSE finished_at END
           WHERE id = $1 AND EXISTS (SELECT 1 FROM added)
       )
       SELECT count(*)::int AS added FROM added`,
      [id, chunk, units, enrolled],
    );
    return r.rows[0]!.added > 0;
  }

  /** Fails a job whatever its state (a migrate job done copying whose source could not be stopped). */
  async failDone(id: string, error: string): Promise<void> {
    await this.db.query("UPDATE jobs SET state = 'failed', error = $2, finished_at = coalesce(finished_at, now()) WHERE id = $1", [
      id,
      error,
    ]);
  }

  /** Fails a job that is not finished yet, keeping the error. */
  async fail(id: string, error: string): Promise<void> {
    await this.db.query(
      "UPDATE jobs SET state = 'failed', error = $2, finished_at = now() WHERE id = $1 AND state IN ('queued', 'running')",
      [id, error],
    );
  }

  /** Cancels a job that is not finished yet (recorded in the audit log); returns it as it is now. */
  async cancel(id: string, actor: Actor): Promise<JobRecord | undefined> {
    await this.db.transaction(async (tx) => {
      const r = await tx.query<{ state: JobStateName }>(
        `UPDATE jobs SET state = 'cancelled', finished_at = now() FROM (SELECT id, state AS was FROM jobs WHERE id = $1 FOR UPDATE) old
          WHERE jobs.id = old.id AND jobs.state IN ('queued', 'running') RETURNING old.was AS state`,
        [id],
      );
      const was = r.rows[0]?.state;
      if (!was) return;
      await recordChange(tx, {
        actor,
        objectKind: "job",
        objectKey: id,
        versionBefore: null,
        versionAfter: null,
        fields: { state: { before: was, after: "cancelled" } },
      });
    });
    return this.get(id);
  }
}
