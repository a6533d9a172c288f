import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  JobKind,
  type JobSchema,
  type JobService,
  type JobSpec,
  type JobSpecSchema,
  JobState,
  type ScheduleSchema,
} from "../../gen/ts/assignment/v1/job_service_pb.js";
import { invalidArgument, notFound } from "../errors.js";
import type { JobRequest, Jobs } from "./jobs.js";
import { actorOf } from "../service/audit-handlers.js";
import type { Caller } from "../service/roles.js";
import type { ScheduleRecord, Schedules } from "./schedules.js";
import type { JobKindName, JobRecord, JobStateName } from "../store/job-store.js";
import { TERMINAL_STATES } from "../store/job-store.js";
import type { ServiceHandlers } from "../service/handler-types.js";

const KINDS: Record<JobKindName, JobKind> = {
  assign: JobKind.ASSIGN,
  warm: JobKind.WARM,
  migrate: JobKind.MIGRATE,
  import: JobKind.IMPORT,
};
const STATES: Record<JobStateName, JobState> = {
  queued: JobState.QUEUED,
  running: JobState.RUNNING,
  done: JobState.DONE,
  failed: JobState.FAILED,
  cancelled: JobState.CANCELLED,
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** How often WatchJob reads the job again. */
export const WATCH_INTERVAL_MS = 500;

export function kindName(field: string, kind: JobKind): JobKindName {
  switch (kind) {
    case JobKind.ASSIGN:
      return "assign";
    case JobKind.WARM:
      return "warm";
    case JobKind.MIGRATE:
      return "migrate";
    case JobKind.IMPORT:
      return "import";
    default:
      throw invalidArgument(field, "must be JOB_KIND_ASSIGN, JOB_KIND_WARM, JOB_KIND_MIGRATE or JOB_KIND_IMPORT");
  }
}

/** A JobSpec as a job request (the fields of every kind; Jobs refuses those of another kind). */
export function jobRequest(field: string, spec: JobSpec, caller: Caller): JobRequest {
  return {
    kind: kindName(`${field}.kind`, spec.kind),
    cohort: spec.cohort,
    experimentKeys: [...spec.experimentKeys],
    tag: spec.tag,
    source: spec.sourceExperimentKey,
    target: spec.targetExperimentKey,
    variantMapping: { ...spec.variantMapping },
    stopSource: spec.stopSource,
    overwrite: spec.overwrite,
    ...(spec.attributes ? { attributes: spec.attributes } : {}),
    createdBy: caller.name,
    createdByRole: caller.role,
  };
}

/** A stored spec (or a schedule's request) as a JobSpec. */
function specMessage(s: {
  kind: JobKindName;
  cohort: string;
  experimentKeys: readonly string[];
  tag: string;
  source?: string;
  target?: string;
  variantMapping?: Readonly<Record<string, string>>;
  stopSource?: boolean;
  overwrite?: boolean;
  attributes?: Readonly<Record<string, unknown>>;
}): MessageInitShape<typeof JobSpecSchema> {
  return {
    kind: KINDS[s.kind],
    cohort: s.cohort,
    experimentKeys: [...s.experimentKeys],
    tag: s.tag,
    sourceExperimentKey: s.source ?? "",
    targetExperimentKey: s.target ?? "",
    variantMapping: { ...s.variantMapping },
    stopSource: s.stopSource === true,
    overwrite: s.overwrite === true,
    ...(s.attributes ? { attributes: s.attributes as JsonObject } : {}),
  };
}

export function jobMessage(j: JobRecord): MessageInitShape<typeof JobSchema> {
  return {
    id: j.id,
    spec: specMessage(j.spec),
    state: STATES[j.state],
    totalUnits: BigInt(j.totalUnits),
    processedUnits: BigInt(j.processedUnits),
    enrolled: BigInt(j.enrolled),
    chunks: j.chunks,
    chunksDone: j.chunksDone,
    error: j.error ?? "",
    createdBy: j.createdBy,
    createTime: timestampFromDate(j.createdAt),
    startTime: j.startedAt ? timestampFromDate(j.startedAt) : undefined,
    endTime: j.finishedAt ? timestampFromDate(j.finishedAt) : undefined,
    schedule: j.spec.schedule ?? "",
  };
}

export function scheduleMessage(s: ScheduleRecord): MessageInitShape<typeof ScheduleSchema> {
  const r = s.request;
  return {
    name: s.name,
    cron: s.cron,
    timeZone: s.timeZone,
    spec: specMessage(r),
    createdBy: r.createdBy,
    createTime: timestampFromDate(s.createdAt),
  };
}

/** Units per second since the job started, and seconds left at that rate (0 when unknown). */
export function jobRate(j: JobRecord, now = Date.now()): { unitsPerSecond: number; etaSeconds: number } {
  if (!j.startedAt || j.processedUnits === 0) return { unitsPerSecond: 0, etaSeconds: 0 };
  const seconds = ((j.finishedAt?.getTime() ?? now) - j.startedAt.getTime()) / 1000;
  const unitsPerSecond = seconds > 0 ? j.processedUnits / seconds : 0;
  const etaSeconds = unitsPerSecond > 0 && !TERMINAL_STATES.has(j.state) ? (j.totalUnits - j.processedUnits) / unitsPerSecond : 0;
  return { unitsPerSecond, etaSeconds };
}

/** JobService over Jobs (src/jobs). */
export function jobHandlers(jobs: Jobs, schedules: Schedules): ServiceHandlers<typeof JobService> {
  const byId = async (field: string, id: string): Promise<JobRecord> => {
    if (!UUID.test(id)) throw invalidArgument(field, "must be a job id (a lowercase UUID)");
    const j = await jobs.store.get(id);
    if (!j) throw notFound(`${field}: no job "${id}"`);
    return j;
  };
  return {
    async startJob(req, ctx) {
      const spec = req.spec;
      if (!spec) throw invalidArgument("spec", "is required");
      const job = await jobs.start(jobRequest("spec", spec, ctx.caller));
      return { job: jobMessage(job) };
    },

    async getJob(req) {
      return { job: jobMessage(await byId("id", req.id)) };
    },

    async listJobs(req) {
      const limit = req.limit === 0 ? 100 : req.limit;
      if (limit > 1000) throw invalidArgument("limit", "must be 1..1000");
      return { jobs: (await jobs.store.list(limit)).map(jobMessage) };
    },

    async cancelJob(req, ctx) {
      await byId("id", req.id);
      const job = (await jobs.store.cancel(req.id, actorOf(ctx)))!;
      return { job: jobMessage(job) };
    },

    async createSchedule(req, ctx) {
      const s = req.schedule;
      if (!s) throw invalidArgument("schedule", "is required");
      if (!s.spec) throw invalidArgument("schedule.spec", "is required");
      const made = await schedules.create({
        name: s.name,
        cron: s.cron,
        timeZone: s.timeZone,
        request: jobRequest("schedule.spec", s.spec, ctx.caller),
      });
      return { schedule: scheduleMessage(made) };
    },

    async listSchedules() {
      return { schedules: (await schedules.list()).map(scheduleMessage) };
    },

    async deleteSchedule(req, ctx) {
      await schedules.delete(req.name, actorOf(ctx));
      return {};
    },

    async *watchJob(req, ctx) {
      let job = await byId("id", req.id);
      let last = "";
      for (;;) {
        const key = `${job.state}:${job.chunksDone}:${job.error ?? ""}`;
        if (key !== last) {
          last = key;
          yield { job: jobMessage(job), ...jobRate(job) };
        }
        if (TERMINAL_STATES.has(job.state)) return;
        await new Promise<void>((resolve) => {
          const stop = () => {
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(() => {
            ctx.signal.removeEventListener("abort", stop);
            resolve();
          }, WATCH_INTERVAL_MS);
          ctx.signal.addEventListener("abort", stop, { once: true });
        });
        if (ctx.signal.aborted) return;
        job = (await jobs.store.get(req.id)) ?? job;
      }
    },
  };
}
