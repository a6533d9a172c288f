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
import { type Attributes, checkAttributes, checkCallAttributes, mergeAttributes } from "../engine/attributes.js";
import { applyExperimentChanges } from "../engine/experiment-update.js";
import { Code, failedPrecondition, hasCode, invalidArgument, notFound, ServiceError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Assigner } from "../service/assigner.js";
import type { ConfigView } from "../service/config-registry.js";
import type { AssignmentTransfers } from "../service/assignment-transfers.js";
import { type Actor, type FieldChanges, recordChange } from "../store/audit-log.js";
import type { CohortRecord, CohortStore } from "../store/cohort-store.js";
import type { ExperimentStore } from "../store/experiment-store.js";
import { recordImport } from "../store/import-staging.js";
import type { TransferStore } from "../store/transfer-store.js";
import type { Database } from "../store/database.js";
import { type JobKindName, type JobRecord, type JobStore, type StoredJobSpec, TERMINAL_STATES } from "../store/job-store.js";
import { CHUNK_QUEUE, DEAD_CHUNK_QUEUE, JOB_CHANNEL, transactionBossDb } from "./boss.js";
import { DEFAULT_CHUNK_UNITS } from "./job-defaults.js";

/** Most experiments one job assigns (as StreamAssign takes). */
export const MAX_JOB_EXPERIMENTS = 100;

export interface ChunkData {
  jobId: string;
  chunk: number;
  /** migrate: the chunk's source units are those after `after` (from the first when absent) up to
   * `until` (included; to the last when absent), by unit id. */
  after?: string;
  until?: string;
}

export interface JobRequest {
  kind: JobKindName;
  cohort: string;
  experimentKeys: readonly string[];
  tag: string;
  createdBy: string;
  /** The role of the caller's token (the audit log records a job's changes as its). */
  createdByRole?: string;
  schedule?: string;
  /** migrate: source and target experiments, the variant mapping, stop the source when done. */
  source?: string;
  target?: string;
  variantMapping?: Readonly<Record<string, string>>;
  stopSource?: boolean;
  /** import: the target experiment is `target`; replace stored assignments (OVERWRITE). */
  overwrite?: boolean;
  /** assign, warm: attributes of every unit (a Struct's JSON), for targeting conditions. */
  attributes?: Readonly<Record<string, unknown>>;
}

/** What migrate and import jobs need besides the Assigner: the stores and checks of
 * CopyAssignments and ImportAssignments, and the experiment store (to stop a migrate's source). */
export interface TransferTools {
  transfers: AssignmentTransfers;
  store: TransferStore;
  experiments: ExperimentStore;
}

/** A job as it will be recorded, and its chunks. */
interface JobPlan {
  spec: StoredJobSpec;
  cohortId: number | null;
  totalUnits: number;
  chunks: ChunkData[];
}

/** Who a job's changes are recorded as: the token that started it, or made the schedule whose tick
 * started it. */
function requestActor(r: Pick<JobRequest, "createdBy" | "createdByRole" | "schedule">): Actor {
  return { tokenName: r.createdBy, tokenRole: r.createdByRole ?? "operator", rpc: r.schedule ? "CreateSchedule" : "StartJob" };
}

/** What a job does, as fields of the audit log (those of its kind only). */
export function jobFields(s: Omit<JobRequest, "createdBy"> | StoredJobSpec): FieldChanges {
  const out: FieldChanges = { kind: { before: null, after: s.kind } };
  const put = (name: string, value: string | boolean | string[] | Record<string, string> | undefined) => {
    const empty = value === undefined || value === "" || value === false || (Array.isArray(value) && value.length === 0);
    if (!empty) out[name] = { before: null, after: value as FieldChanges[string]["after"] };
  };
  put("cohort", s.cohort);
  put("experiment_keys", [...s.experimentKeys]);
  put("tag", s.tag);
  put("source_experiment_key", s.source);
  put("target_experiment_key", s.target);
  put("variant_mapping", s.variantMapping && Object.keys(s.variantMapping).length > 0 ? { ...s.variantMapping } : undefined);
  put("stop_source", s.stopSource);
  put("overwrite", s.overwrite);
  put("schedule", s.schedule);
  return out;
}

/** A failure that retrying cannot mend (the cohort or an experiment is gone): fails the job at once. */
class Permanent extends Error {}

/** A chunk's checkpoint found recorded already (by another worker) when its rows were about to
 * commit: they are rolled back. */
class AlreadyRecorded extends Error {}

const ENROLLED = new Set([Reason.NEW, Reason.STICKY, Reason.OVERRIDE]);

export class Jobs {
  /** Chunks running in this process (see lockChunk). */
  private readonly running = new Set<string>();
  /** Cohorts of the jobs this process ran chunks of, by id (see knownCohort). */
  private readonly cohortCache = new Map<number, CohortRecord>();

  constructor(
    private readonly boss: PgBoss,
    private readonly db: Database,
    readonly store: JobStore,
    private readonly cohorts: CohortStore,
    private readonly registry: ConfigView,
    private readonly assigner: Assigner,
    private readonly tools: TransferTools,
    private readonly chunkUnits: number = DEFAULT_CHUNK_UNITS,
    private readonly log?: Logger,
  ) {}

  /** Checks a job request without starting it: the cohort and the experiments it names exist and
   * fit (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT naming what is wrong). With `now`
   * false (a schedule's template), what may change before it runs (an empty cohort, no experiment
   * of the tag running yet) is not held against it. */
  async check(req: JobRequest, field = "spec", now = true): Promise<void> {
    if (req.kind === "migrate") {
      this.onlyFor(req, field);
      await this.tools.transfers.planCopy(req.source ?? "", req.target ?? "", req.variantMapping ?? {}, `${field}.`);
      return;
    }
    const cohort = await this.cohorts.get(checkKey(`${field}.cohort`, req.cohort));
    if (!cohort) throw notFound(`${field}.cohort: no cohort "${req.cohort}"`);
    if (now && cohort.size === 0) throw failedPrecondition(`${field}.cohort: cohort "${cohort.name}" is empty`);
    if (req.kind === "import") {
      await this.importTarget(req, cohort, field, now);
      return;
    }
    this.onlyFor(req, field);
    checkCallAttributes(`${field}.attributes`, req.attributes);
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
    const plan = await this.plan(req, field);
    const spec: StoredJobSpec = {
      ...plan.spec,
      chunkUnits: this.chunkUnits,
      ...(req.schedule ? { schedule: req.schedule } : {}),
      ...(req.createdByRole ? { createdByRole: req.createdByRole } : {}),
    };
    const chunks = plan.chunks.length;
    return this.db.transaction(async (tx) => {
      const job = await this.store.insert(tx, {
        id,
        spec,
        cohortId: plan.cohortId,
        totalUnits: plan.totalUnits,
        chunks,
        createdBy: req.createdBy,
      });
      // pg-boss's insert takes at most a few thousand rows comfortably per statement.
      for (let from = 0; from < chunks; from += 5_000) {
        const rows: PgBoss.JobInsert<ChunkData>[] = plan.chunks
          .slice(from, from + 5_000)
          .map((data) => ({ name: CHUNK_QUEUE, data: { ...data, jobId: id } }));
        await this.boss.insert(rows, { db: transactionBossDb(tx) as PgBoss.Db });
      }
      // Wakes the worker loops of every server at commit (see work), instead of their next poll.
      await tx.query("SELECT pg_notify($1, $2)", [JOB_CHANNEL, id]);
      await recordChange(tx, {
        actor: requestActor(req),
        objectKind: "job",
        objectKey: id,
        versionBefore: null,
        versionAfter: null,
        fields: { ...jobFields(spec), state: { before: null, after: "queued" }, total_units: { before: null, after: plan.totalUnits } },
      });
      return job;
    });
  }

  /** What a request makes: the job's spec (without its chunk size) and chunks, checked. */
  private async plan(req: JobRequest, field: string): Promise<JobPlan> {
    const id = (chunk: number) => ({ jobId: "", chunk });
    if (req.kind === "migrate") {
      this.onlyFor(req, field);
      const { source, target } = await this.tools.transfers.planCopy(
        req.source ?? "",
        req.target ?? "",
        req.variantMapping ?? {},
        `${field}.`,
      );
      const bounds = await this.tools.store.unitBounds(source.id, this.chunkUnits);
      const total = await this.tools.store.countAssignments(source.id);
      // One more chunk than bounds: the units after the last bound (and any stored meanwhile).
      const chunks: ChunkData[] = [];
      for (let c = 0; c <= bounds.length; c++) {
        chunks.push({ ...id(c), ...(c > 0 ? { after: bounds[c - 1] } : {}), ...(c < bounds.length ? { until: bounds[c] } : {}) });
      }
      return {
        spec: {
          kind: "migrate",
          cohort: "",
          experimentKeys: [],
          tag: "",
          chunkUnits: 0,
          source: source.key,
          target: target.key,
          variantMapping: { ...req.variantMapping },
          stopSource: req.stopSource === true,
        },
        cohortId: null,
        totalUnits: total,
        chunks,
      };
    }
    const cohort = await this.cohorts.get(checkKey(`${field}.cohort`, req.cohort));
    if (!cohort) throw notFound(`${field}.cohort: no cohort "${req.cohort}"`);
    if (cohort.size === 0) throw failedPrecondition(`${field}.cohort: cohort "${cohort.name}" is empty`);
    const chunks = Array.from({ length: Math.ceil(cohort.size / this.chunkUnits) }, (_, c) => id(c));
    if (req.kind === "import") {
      const target = await this.importTarget(req, cohort, field, true);
      return {
        spec: {
          kind: "import",
          cohort: cohort.name,
          experimentKeys: [],
          tag: "",
          chunkUnits: 0,
          target: target.key,
          overwrite: req.overwrite === true,
        },
        cohortId: cohort.id,
        totalUnits: cohort.size,
        chunks,
      };
    }
    this.onlyFor(req, field);
    const experiments = await this.resolveExperiments(req, cohort.unitType, field);
    const attributes = checkCallAttributes(`${field}.attributes`, req.attributes);
    return {
      spec: {
        kind: req.kind,
        cohort: cohort.name,
        experimentKeys: experiments.map((e) => e.key),
        tag: req.tag,
        chunkUnits: 0,
        ...(attributes.size > 0 ? { attributes: { ...req.attributes } } : {}),
      },
      cohortId: cohort.id,
      totalUnits: cohort.size,
      chunks,
    };
  }

  /** Refuses the fields of other kinds of job (a request that mixes them is a mistake). */
  private onlyFor(req: JobRequest, field: string): void {
    const set: [string, boolean][] =
      req.kind === "migrate"
        ? [
            ["cohort", req.cohort !== ""],
            ["experiment_keys", req.experimentKeys.length > 0],
            ["tag", req.tag !== ""],
            ["overwrite", req.overwrite === true],
            ["attributes", Object.keys(req.attributes ?? {}).length > 0],
          ]
        : [
            ["source_experiment_key", (req.source ?? "") !== ""],
            ["target_experiment_key", (req.target ?? "") !== ""],
            ["variant_mapping", Object.keys(req.variantMapping ?? {}).length > 0],
            ["stop_source", req.stopSource === true],
            ["overwrite", req.overwrite === true],
          ];
    for (const [name, isSet] of set) {
      if (isSet) throw invalidArgument(`${field}.${name}`, `must be empty for JOB_KIND_${req.kind.toUpperCase()}`);
    }
  }

  /** An import's target: it exists (NOT_FOUND), is not archived, has the cohort's unit type, and
   * (`now`) has every variant the cohort's rows name (FAILED_PRECONDITION); the cohort has a
   * variant column (FAILED_PRECONDITION). */
  private async importTarget(req: JobRequest, cohort: CohortRecord, field: string, now: boolean) {
    for (const [name, isSet] of [
      ["experiment_keys", req.experimentKeys.length > 0],
      ["tag", req.tag !== ""],
      ["source_experiment_key", (req.source ?? "") !== ""],
      ["variant_mapping", Object.keys(req.variantMapping ?? {}).length > 0],
      ["stop_source", req.stopSource === true],
      ["attributes", Object.keys(req.attributes ?? {}).length > 0],
    ] as const) {
      if (isSet) throw invalidArgument(`${field}.${name}`, "must be empty for JOB_KIND_IMPORT (it imports into target_experiment_key)");
    }
    if (cohort.variants === null) {
      throw failedPrecondition(
        `${field}.cohort: cohort "${cohort.name}" has no variant column; an IMPORT job needs one uploaded with with_variants`,
      );
    }
    const target = await this.tools.transfers.experimentByKey(`${field}.target_experiment_key`, req.target ?? "");
    if ("archivedAt" in target && target.archivedAt) {
      throw failedPrecondition(
        `${field}.target_experiment_key: experiment "${target.key}" is archived; unarchive it before importing into it`,
      );
    }
    if (target.unitType !== cohort.unitType) {
      throw failedPrecondition(
        `${field}.target_experiment_key: experiment "${target.key}" has unit type ${target.unitType}; cohort "${cohort.name}" holds ${cohort.unitType} ids`,
      );
    }
    if (now) {
      const keys = new Set(target.variants.map((v) => v.key));
      const unknown = cohort.variants.filter((v) => !keys.has(v));
      if (unknown.length > 0) {
        throw failedPrecondition(
          `${field}.cohort: cohort "${cohort.name}" names variant${unknown.length > 1 ? "s" : ""} ${unknown
            .slice(0, 5)
            .map((v) => `"${v}"`)
            .join(", ")} that experiment "${target.key}" does not have (${[...keys].join(", ")})`,
        );
      }
    }
    return target;
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
    const workers: string[] = [];
    for (let i = 0; i < loops; i++) {
      // pg-boss 10's worker loop waits out the rest of its polling interval after every fetch,
      // even one that found a chunk: a chunk done, the loop is told to fetch the next at once
      // (else a loop would idle most of each second between chunks of a few hundred ms).
      let worker: string | undefined;
      worker = await this.boss.work<ChunkData>(CHUNK_QUEUE, { batchSize: 1, pollingIntervalSeconds }, async ([job]) => {
        if (!job) return;
        await this.runChunk(job.data);
        if (worker) this.boss.notifyWorker(worker);
      });
      workers.push(worker);
    }
    // A job queued (here or by another server) wakes every idle loop at once: its first chunks
    // start within a round trip of StartJob's commit, not at the loops' next poll (up to
    // `pollingIntervalSeconds` later). Polling stays, for retries and for a notification missed.
    const wake = () => {
      for (const w of workers) this.boss.notifyWorker(w);
    };
    await this.db.notifications?.listen(JOB_CHANNEL, wake, wake);
    await this.boss.work<ChunkData>(DEAD_CHUNK_QUEUE, { batchSize: 1, pollingIntervalSeconds, includeMetadata: true }, async ([job]) => {
      if (!job) return;
      const output = job.output as { message?: string; value?: { message?: string } } | null;
      const message = output?.message ?? output?.value?.message ?? "failed";
      await this.store.fail(job.data.jobId, `chunk ${job.data.chunk} failed after its retries: ${message}`);
    });
  }

  /** One chunk: assigns (warms, copies, imports) its units, then records the checkpoint. Throws to
   * have pg-boss retry it (with backoff); fails the job at once when retrying cannot help. */
  async runChunk(data: ChunkData): Promise<void> {
    const { jobId, chunk } = data;
    const lock = await this.lockChunk(jobId, chunk);
    try {
      // Read under the lock: another worker may have just finished the chunk, or the job ended.
      const now = await this.store.getWithChunk(jobId, chunk);
      if (!now) return;
      const { job, chunkDone } = now;
      // A migrate job done copying stops its source; a chunk run again (its worker died before
      // pg-boss heard it finished) makes sure it did.
      if (job.state === "done") return await this.stopSource(job);
      if (TERMINAL_STATES.has(job.state) || chunkDone) return;
      if ("busy" in lock) throw new Error(lock.busy);
      await this.runLockedChunk(job, data);
    } finally {
      if ("release" in lock) await lock.release();
    }
  }

  /**
   * One chunk at a time, whatever pg-boss does: pg-boss 10 has no heartbeat, so a chunk that runs
   * longer than its timeout (a stalled or overloaded worker) is handed to another worker while the
   * first still runs. An advisory lock per chunk (released when its connection ends, so a killed
   * worker's lock goes with it; an in-process set besides, which is all the embedded database with
   * its one process needs) makes the second wait for a retry instead (`busy`: held elsewhere; the
   * chunk is run only if it is not finished).
   */
  private async lockChunk(jobId: string, chunk: number): Promise<{ release(): Promise<void> } | { busy: string }> {
    const key = `job-chunk:${jobId}:${chunk}`;
    if (this.running.has(key)) return { busy: `chunk ${chunk} is being run by this worker already` };
    const lock = this.db.advisoryLocks ? await this.db.advisoryLocks.tryLock(key) : { release: async () => {} };
    if (!lock) return { busy: `chunk ${chunk} is being run by another worker` };
    this.running.add(key);
    return {
      release: async () => {
        this.running.delete(key);
        await lock.release();
      },
    };
  }

  private async runLockedChunk(job: JobRecord, data: ChunkData): Promise<void> {
    const jobId = job.id;
    const chunk = data.chunk;
    if (job.state === "queued") await this.store.markRunning(jobId);
    // One line when a chunk begins and one when it is recorded (debug): which worker ran what, when.
    this.log?.debug({ job: jobId, chunk, pid: process.pid }, "job chunk started");
    try {
      if (job.spec.kind === "migrate") {
        await this.migrateChunk(job, data);
        const now = await this.store.get(jobId);
        if (now?.state === "done") await this.stopSource(now);
      } else if (job.spec.kind === "import") {
        await this.importChunk(job, chunk);
      } else {
        await this.assignChunk(job, chunk);
      }
      this.log?.debug({ job: jobId, chunk, pid: process.pid }, "job chunk finished");
    } catch (err) {
      if (err instanceof Permanent) {
        await this.store.fail(jobId, err.message);
        return;
      }
      this.log?.warn({ err, job: jobId, chunk }, "job chunk failed (pg-boss retries it)");
      throw err;
    }
  }

  private async cohortOf(job: JobRecord): Promise<CohortRecord> {
    const cohort = job.cohortId === null ? undefined : await this.cohorts.getById(job.cohortId);
    if (!cohort) throw new Permanent(`cohort "${job.spec.cohort}" was deleted while the job ran`);
    if (this.cohortCache.size >= 64) this.cohortCache.clear();
    this.cohortCache.set(cohort.id, cohort);
    return cohort;
  }

  /** The job's cohort as read by an earlier chunk (a cohort's record never changes: an upload of
   * the same name makes a new one), else read now. One read per job and process, not per chunk:
   * a chunk that finds fewer ids than the cohort held reads it again (Permanent when deleted). */
  private async knownCohort(job: JobRecord): Promise<CohortRecord> {
    return (job.cohortId !== null && this.cohortCache.get(job.cohortId)) || this.cohortOf(job);
  }

  /** assign, warm: the chunk's units through the Assigner, then the checkpoint. */
  private async assignChunk(job: JobRecord, chunk: number): Promise<void> {
    const started = performance.now();
    const cohort = await this.knownCohort(job);
    const experiments = job.spec.experimentKeys.map((key) => {
      const e = this.registry.get(key);
      if (!e) throw new Permanent(`experiment "${key}" no longer exists`);
      return e;
    });
    const from = chunk * job.spec.chunkUnits;
    const to = from + job.spec.chunkUnits;
    // Targeting: the job's attributes for every unit, each unit's own (uploaded with the cohort) over them.
    const call = checkCallAttributes("spec.attributes", job.spec.attributes);
    let unitIds: string[];
    let attributes: Attributes | Attributes[] = call;
    if (cohort.hasAttributes) {
      const rows = await this.cohorts.rangeWithAttributes(cohort.id, from, to);
      unitIds = rows.unitIds;
      attributes = rows.attributes.map((a, i) => (a ? mergeAttributes(call, checkAttributes(`cohort position ${from + i}`, a)) : call));
    } else {
      unitIds = await this.cohorts.range(cohort.id, from, to);
    }
    if (unitIds.length !== Math.max(0, Math.min(to, cohort.size) - from)) await this.cohortOf(job); // deleted meanwhile?
    const read = performance.now();
    const warm = job.spec.kind === "warm";
    const results = await this.assigner.assignGrid(
      experiments,
      unitIds,
      cohort.unitType,
      {
        dryRun: warm,
        allowUnstored: false,
        skipRedisRead: !warm,
        paceToRedis: true,
      },
      attributes,
    );
    // assign: answers that enrol a unit (new or stored); warm: stored assignments found (and cached).
    let enrolled = 0;
    for (const r of results) if (warm ? r.stored : ENROLLED.has(r.reason)) enrolled++;
    const assigned = performance.now();
    await this.store.finishChunk(job.id, chunk, unitIds.length, enrolled);
    // Where a chunk's time goes (debug): reading its ids, assigning them, the checkpoint.
    const ms = (a: number, b: number) => Math.round(b - a);
    this.log?.debug(
      {
        job: job.id,
        chunk,
        units: unitIds.length,
        readMs: ms(started, read),
        assignMs: ms(read, assigned),
        checkpointMs: ms(assigned, performance.now()),
      },
      "job chunk phases",
    );
  }

  /** Who a job's changes are recorded as in the audit log: the token that started it (or made its
   * schedule). */
  private actor(job: JobRecord): Actor {
    return requestActor({ createdBy: job.createdBy, createdByRole: job.spec.createdByRole, schedule: job.spec.schedule });
  }

  /**
   * migrate: the chunk's range of source units copied as CopyAssignments copies them (the same
   * checks and the same statement, TransferStore.copyPage: units the target has already are left
   * alone), in pages; the last page's transaction records the checkpoint, so the chunk's counts
   * are those of the copy that committed with it. A chunk run again after a crash copies nothing
   * already copied (ON CONFLICT DO NOTHING).
   */
  private async migrateChunk(job: JobRecord, data: ChunkData): Promise<void> {
    const spec = job.spec;
    const { source, target, mapping } = await this.tools.transfers
      .planCopy(spec.source ?? "", spec.target ?? "", spec.variantMapping ?? {})
      .catch((err: unknown) => {
        throw err instanceof ServiceError ? new Permanent(`the copy no longer fits: ${err.message}`) : err;
      });
    const actor = this.actor(job);
    // Pages larger than a chunk's range at start: a range holds more rows only if units were
    // stored in the source meanwhile (or, for the last, open-ended one, after its last bound).
    const size = spec.chunkUnits * 4;
    let after = data.after;
    let scanned = 0;
    let copied = 0;
    try {
      for (;;) {
        const page = await this.tools.store.copyPage(source, target, mapping, after, size, actor, {
          ...(data.until !== undefined ? { until: data.until } : {}),
          within: async (tx, p) => {
            if (p.scanned < size && !(await this.store.finishChunkIn(tx, job.id, data.chunk, scanned + p.scanned, copied + p.copied))) {
              throw new AlreadyRecorded();
            }
          },
        });
        scanned += page.scanned;
        copied += page.copied;
        if (page.scanned < size) return;
        after = page.last ?? after;
      }
    } catch (err) {
      if (!(err instanceof AlreadyRecorded)) throw err;
    }
  }

  /**
   * import: the chunk's (unit, variant) rows imported into the target as ImportAssignments imports
   * them (the same staging and merge, TransferStore.beginImport: SKIP_EXISTING or OVERWRITE, the
   * audit log's record), in one transaction that also records the checkpoint: a chunk is imported
   * once, or not at all, whatever crashes.
   */
  private async importChunk(job: JobRecord, chunk: number): Promise<void> {
    const spec = job.spec;
    const cohort = await this.cohortOf(job);
    const target = this.registry.get(spec.target ?? "");
    if (!target) throw new Permanent(`experiment "${spec.target}" no longer exists`);
    const from = chunk * spec.chunkUnits;
    const { unitIds, variants } = await this.cohorts.rows(cohort.id, from, from + spec.chunkUnits);
    const ids = new Map(target.variants.map((v) => [v.key, v.id]));
    const variantIds = new Int32Array(unitIds.length);
    for (let i = 0; i < unitIds.length; i++) {
      const v = ids.get(variants[i]!);
      if (v === undefined)
        throw new Permanent(`variant "${variants[i]}" (cohort position ${from + i}) is not a variant of "${target.key}"`);
      variantIds[i] = v;
    }
    const overwrite = spec.overwrite === true;
    const actor = this.actor(job);
    const staging = await this.tools.store.beginImport();
    try {
      await staging.write({ experimentIds: new Int32Array(unitIds.length).fill(target.id), unitIds, variantIds }, overwrite);
      const result = await staging.commit(overwrite, undefined, async (tx, r) => {
        await recordImport(tx, actor, overwrite, new Map([[target.id, unitIds.length]]), r);
        if (!(await this.store.finishChunkIn(tx, job.id, chunk, unitIds.length, r.imported))) throw new AlreadyRecorded();
      });
      if (result.overwrittenExperiments.length > 0) await this.registry.refresh();
    } catch (err) {
      await staging.abort();
      if (!(err instanceof AlreadyRecorded)) throw err;
    }
  }

  /** migrate with stop_source, once every unit is copied: stops the source (nothing if stopped
   * already). A source that cannot be stopped fails the job saying so. */
  private async stopSource(job: JobRecord): Promise<void> {
    if (job.spec.kind !== "migrate" || !job.spec.stopSource) return;
    const key = job.spec.source ?? "";
    for (let attempt = 1; ; attempt++) {
      try {
        const current = await this.tools.experiments.getExperiment(key);
        if (current.status === ExperimentStatus.STOPPED) return;
        await this.tools.experiments.updateExperiment(
          key,
          current.version,
          (c) => applyExperimentChanges(c, { status: ExperimentStatus.STOPPED }),
          this.actor(job),
        );
        await this.registry.refresh();
        this.log?.info({ job: job.id, experiment: key }, "migrate job stopped its source");
        return;
      } catch (err) {
        if (hasCode(err, Code.Aborted) && attempt < 5) continue; // changed meanwhile: read it again
        if (!(err instanceof ServiceError)) throw err;
        await this.store.failDone(job.id, `every unit was copied, but stopping "${key}" failed: ${err.message}`);
        return;
      }
    }
  }
}
