/**
 * Jobs over cohorts, run by pg-boss: starting one (validated, recorded and its chunks queued in one
 * transaction), and running its chunks (any worker, one chunk at a time per worker loop).
 *
 * A job of N units is ceil(N / chunkUnits) pg-boss jobs, one per chunk (a range of cohort
 * positions). A chunk is done when its row in job_chunks is written, in the same transaction that
 * adds its counts to the job: the checkpoint. A chunk that ran (part way or whole) but was not
 * recorded, because its worker died, is run again by whichever worker pg-boss gives it to once it
 * expires; assignment is sticky (new units are stored with INSERT … ON CONFLICT DO NOTHING, and a
 * unit stored already answers what is stored), so running it again stores nothing new and changes
 * nothing stored, and the checkpoint counts it once.
 */
import { randomUUID } from "node:crypto";
import type PgBoss from "pg-boss";
import { ExperimentStatus, Reason } from "../../gen/ts/assignment/v1/types_pb.js";
import type { ExperimentConfig } from "../engine/experiment-config.js";
import { checkKey, isValidKey, KEY_RULE } from "../engine/rules.js";
import { failedPrecondition, invalidArgument, notFound } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Assigner } from "../service/assigner.js";
import type { ConfigView } from "../service/config-registry.js";
import type { CohortStore } from "../store/cohort-store.js";
import type { Database } from "../store/database.js";
import { type JobKindName, type JobRecord, type JobStore, type StoredJobSpec, TERMINAL_STATES } from "../store/job-store.js";
import { CHUNK_QUEUE, DEAD_CHUNK_QUEUE, transactionBossDb } from "./boss.js";
import { DEFAULT_CHUNK_UNITS } from "./job-defaults.js";

/** Most experiments one job assigns (as StreamAssign takes). */
export const MAX_JOB_EXPERIMENTS = 100;

export interface ChunkData {
  jobId: string;
  chunk: number;
}

export interface JobRequest {
  kind: JobKindName;
  cohort: string;
  experimentKeys: readonly string[];
  tag: string;
  createdBy: string;
  schedule?: string;
}

/** A failure that retrying cannot mend (the cohort or an experiment is gone): fails the job at once. */
class Permanent extends Error {}

const ENROLLED = new Set([Reason.NEW, Reason.STICKY, Reason.OVERRIDE]);

export class Jobs {
  /** Chunks running in this process (see lockChunk). */
  private readonly running = new Set<string>();

  constructor(
    private readonly boss: PgBoss,
    private readonly db: Database,
    readonly store: JobStore,
    private readonly cohorts: CohortStore,
    private readonly registry: ConfigView,
    private readonly assigner: Assigner,
    private readonly chunkUnits: number = DEFAULT_CHUNK_UNITS,
    private readonly log?: Logger,
  ) {}

  /** Checks a job request without starting it: the cohort and the experiments it names exist and
   * fit (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT naming what is wrong). With `now`
   * false (a schedule's template), what may change before it runs (an empty cohort, no experiment
   * of the tag running yet) is not held against it. */
  async check(req: JobRequest, field = "spec", now = true): Promise<void> {
    const cohort = await this.cohorts.get(checkKey(`${field}.cohort`, req.cohort));
    if (!cohort) throw notFound(`${field}.cohort: no cohort "${req.cohort}"`);
    if (now && cohort.size === 0) throw failedPrecondition(`${field}.cohort: cohort "${cohort.name}" is empty`);
    if (now || req.experimentKeys.length > 0 || req.tag === "") await this.resolveExperiments(req, cohort.unitType, field);
  }

  /**
   * Validates, records and queues a job (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT naming
   * what is wrong; nothing recorded then). With `id` (a schedule's tick), a job of that id started
   * already is returned as it is, so a tick run twice starts one job.
   */
  async start(req: JobRequest, field = "spec", id: string = randomUUID()): Promise<JobRecord> {
    const existing = await this.store.get(id);
    if (existing) return existing;
    const cohort = await this.cohorts.get(checkKey(`${field}.cohort`, req.cohort));
    if (!cohort) throw notFound(`${field}.cohort: no cohort "${req.cohort}"`);
    if (cohort.size === 0) throw failedPrecondition(`${field}.cohort: cohort "${cohort.name}" is empty`);
    const experiments = await this.resolveExperiments(req, cohort.unitType, field);
    const chunks = Math.ceil(cohort.size / this.chunkUnits);
    const spec: StoredJobSpec = {
      kind: req.kind,
      cohort: cohort.name,
      experimentKeys: experiments.map((e) => e.key),
      tag: req.tag,
      chunkUnits: this.chunkUnits,
      ...(req.schedule ? { schedule: req.schedule } : {}),
    };
    return this.db.transaction(async (tx) => {
      const job = await this.store.insert(tx, { id, spec, cohortId: cohort.id, totalUnits: cohort.size, chunks, createdBy: req.createdBy });
      // pg-boss's insert takes at most a few thousand rows comfortably per statement.
      for (let from = 0; from < chunks; from += 5_000) {
        const rows: PgBoss.JobInsert<ChunkData>[] = [];
        for (let c = from; c < Math.min(chunks, from + 5_000); c++) rows.push({ name: CHUNK_QUEUE, data: { jobId: id, chunk: c } });
        await this.boss.insert(rows, { db: transactionBossDb(tx) as PgBoss.Db });
      }
      return job;
    });
  }

  private async resolveExperiments(req: JobRequest, unitType: string, field: string): Promise<ExperimentConfig[]> {
    await this.registry.refresh();
    if (req.experimentKeys.length > 0) {
      if (req.tag !== "") throw invalidArgument(`${field}.tag`, "must be empty when experiment_keys are given");
      if (req.experimentKeys.length > MAX_JOB_EXPERIMENTS) {
        throw invalidArgument(`${field}.experiment_keys`, `must name at most ${MAX_JOB_EXPERIMENTS} experiments`);
      }
      const seen = new Set<string>();
      return req.experimentKeys.map((key, i) => {
        if (!isValidKey(key)) throw invalidArgument(`${field}.experiment_keys[${i}]`, KEY_RULE);
        if (seen.has(key)) throw invalidArgument(`${field}.experiment_keys[${i}]`, `names "${key}" twice`);
        seen.add(key);
        const e = this.registry.get(key);
        if (!e) throw notFound(`${field}.experiment_keys[${i}]: no experiment "${key}"`);
        if (e.unitType !== unitType) {
          throw failedPrecondition(
            `${field}.experiment_keys[${i}]: experiment "${key}" has unit type ${e.unitType}; cohort "${req.cohort}" holds ${unitType} ids`,
          );
        }
        return e;
      });
    }
    if (req.tag === "") throw invalidArgument(`${field}.experiment_keys`, "must name at least one experiment, or set tag");
    const tagged = this.registry
      .all()
      .filter((e) => e.status === ExperimentStatus.RUNNING && e.unitType === unitType && e.tags.includes(req.tag));
    if (tagged.length === 0) throw failedPrecondition(`${field}.tag: no RUNNING experiment of unit type ${unitType} has tag "${req.tag}"`);
    if (tagged.length > MAX_JOB_EXPERIMENTS)
      throw failedPrecondition(`${field}.tag: more than ${MAX_JOB_EXPERIMENTS} experiments have tag "${req.tag}"`);
    return [...tagged].sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /** Runs `loops` worker loops on this process: each takes one chunk at a time. */
  async work(loops: number, pollingIntervalSeconds = 1): Promise<void> {
    for (let i = 0; i < loops; i++) {
      await this.boss.work<ChunkData>(CHUNK_QUEUE, { batchSize: 1, pollingIntervalSeconds }, async ([job]) => {
        if (job) await this.runChunk(job.data);
      });
    }
    await this.boss.work<ChunkData>(DEAD_CHUNK_QUEUE, { batchSize: 1, pollingIntervalSeconds, includeMetadata: true }, async ([job]) => {
      if (!job) return;
      const output = job.output as { message?: string; value?: { message?: string } } | null;
      const message = output?.message ?? output?.value?.message ?? "failed";
      await this.store.fail(job.data.jobId, `chunk ${job.data.chunk} failed after its retries: ${message}`);
    });
  }

  /** One chunk: assigns (or warms) its units, then records the checkpoint. Throws to have pg-boss
   * retry it (with backoff); fails the job at once when retrying cannot help. */
  async runChunk({ jobId, chunk }: ChunkData): Promise<void> {
    const job = await this.store.get(jobId);
    if (!job || TERMINAL_STATES.has(job.state)) return;
    if (await this.store.chunkDone(jobId, chunk)) return;
    const lock = await this.lockChunk(jobId, chunk);
    try {
      // Checked again under the lock: another worker may have just finished it.
      if (await this.store.chunkDone(jobId, chunk)) return;
      await this.runLockedChunk(job, chunk);
    } finally {
      await lock.release();
    }
  }

  /**
   * One chunk at a time, whatever pg-boss does: pg-boss 10 has no heartbeat, so a chunk that runs
   * longer than its timeout (a stalled or overloaded worker) is handed to another worker while the
   * first still runs. A session-level advisory lock per chunk (released when its session ends, so a
   * killed worker's lock goes with its connection; an in-process set besides, for the one session
   * of PGlite) makes the second wait for a retry instead.
   */
  private async lockChunk(jobId: string, chunk: number): Promise<{ release(): Promise<void> }> {
    const key = `job-chunk:${jobId}:${chunk}`;
    if (this.running.has(key)) throw new Error(`chunk ${chunk} is being run by this worker already`);
    const session = await this.db.session();
    let locked = false;
    try {
      const r = await session.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [key]);
      locked = r.rows[0]?.ok === true;
    } finally {
      if (!locked) session.release();
    }
    if (!locked) throw new Error(`chunk ${chunk} is being run by another worker`);
    this.running.add(key);
    return {
      release: async () => {
        this.running.delete(key);
        let clean = false;
        try {
          await session.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [key]);
          clean = true;
        } finally {
          session.release(!clean);
        }
      },
    };
  }

  private async runLockedChunk(job: JobRecord, chunk: number): Promise<void> {
    const jobId = job.id;
    await this.store.markRunning(jobId);
    // One line when a chunk begins and one when it is recorded (debug): which worker ran what, when.
    this.log?.debug({ job: jobId, chunk, pid: process.pid }, "job chunk started");
    try {
      const cohort = await this.cohorts.getById(job.cohortId);
      if (!cohort) throw new Permanent(`cohort "${job.spec.cohort}" was deleted while the job ran`);
      const experiments = job.spec.experimentKeys.map((key) => {
        const e = this.registry.get(key);
        if (!e) throw new Permanent(`experiment "${key}" no longer exists`);
        return e;
      });
      const from = chunk * job.spec.chunkUnits;
      const unitIds = await this.cohorts.range(cohort.id, from, from + job.spec.chunkUnits);
      const warm = job.spec.kind === "warm";
      const results = await this.assigner.assignGrid(experiments, unitIds, cohort.unitType, {
        dryRun: warm,
        allowUnstored: false,
        skipRedisRead: !warm,
        paceToRedis: true,
      });
      // assign: answers that enrol a unit (new or stored); warm: stored assignments found (and cached).
      let enrolled = 0;
      for (const r of results) if (warm ? r.stored : ENROLLED.has(r.reason)) enrolled++;
      await this.store.finishChunk(jobId, chunk, unitIds.length, enrolled);
      this.log?.debug({ job: jobId, chunk, pid: process.pid, units: unitIds.length }, "job chunk finished");
    } catch (err) {
      if (err instanceof Permanent) {
        await this.store.fail(jobId, err.message);
        return;
      }
      this.log?.warn({ err, job: jobId, chunk }, "job chunk failed (pg-boss retries it)");
      throw err;
    }
  }
}
