/**
 * Cron schedules of job templates, on pg-boss's scheduler. pg-boss keeps one schedule per queue
 * (in its table pgboss.schedule, in the same database), so each schedule has a queue of its own,
 * `assignment-schedule.<name>`. Its semantics, which make a tick fire once across every server:
 * - one server at a time (a timestamp claimed in the database every 10 s) looks at the schedules,
 *   and for each whose last tick is less than a minute ago sends a job to pg-boss's own queue with
 *   a singleton key of the schedule's name and a 60 s slot: a second send in the same minute is
 *   refused by a unique index; so at most one tick a minute fires, whichever server sends it;
 * - any server's worker moves it into the schedule's queue; a worker of that queue (this file)
 *   starts the job, with the tick's pg-boss job id as the job's id: a tick run twice (its worker
 *   died before pg-boss heard it was done) finds its job started and starts no other.
 */
import type PgBoss from "pg-boss";
import { ServiceError, alreadyExists, invalidArgument, notFound } from "../errors.js";
import type { Logger } from "../logger.js";
import { checkKey } from "../engine/rules.js";
import type { JobKindName, StoredJobSpec } from "../store/job-store.js";
import { type Actor, recordChange } from "../store/audit-log.js";
import type { Queryable } from "../store/database.js";
import { createQueue, SCHEDULE_QUEUE_PREFIX } from "./boss.js";
import { type JobRequest, type Jobs, jobFields } from "./jobs.js";

export interface ScheduleRecord {
  name: string;
  cron: string;
  timeZone: string;
  request: JobRequest;
  createdAt: Date;
}

interface ScheduleData {
  request: JobRequest;
}

interface ScheduleRow {
  name: string;
  cron: string;
  timezone: string | null;
  data: ScheduleData | null;
  created_on: Date | string;
}

/** How often a server looks for schedules made or removed elsewhere, to work their queues. */
export const SCHEDULE_SYNC_MS = 5_000;

const queueOf = (name: string) => `${SCHEDULE_QUEUE_PREFIX}${name}`;

export class Schedules {
  private readonly worked = new Map<string, string>(); // queue -> pg-boss worker id
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly boss: PgBoss,
    private readonly db: Queryable,
    private readonly jobs: Jobs,
    private readonly log?: Logger,
  ) {}

  async create(s: { name: string; cron: string; timeZone: string; request: JobRequest }): Promise<ScheduleRecord> {
    checkKey("schedule.name", s.name);
    if (s.cron.trim() === "") throw invalidArgument("schedule.cron", "is required (e.g. '0 3 * * *': every day at 03:00)");
    if (s.timeZone !== "") {
      try {
        new Intl.DateTimeFormat("en", { timeZone: s.timeZone });
      } catch {
        throw invalidArgument("schedule.time_zone", `"${s.timeZone}" is not an IANA time zone (e.g. Europe/Paris; UTC when empty)`);
      }
    }
    await this.jobs.check(s.request, "schedule.spec", false);
    if ((await this.list()).some((x) => x.name === s.name)) throw alreadyExists(`schedule.name: a schedule "${s.name}" exists`);
    const queue = queueOf(s.name);
    await createQueue(this.boss, queue, { name: queue, retryLimit: 3, retryDelay: 5, retryBackoff: true, expireInSeconds: 300 });
    const data: ScheduleData = { request: { ...s.request, schedule: s.name } };
    try {
      await this.boss.schedule(queue, s.cron, data as unknown as object, { tz: s.timeZone || "UTC" });
    } catch (err) {
      await this.boss.deleteQueue(queue).catch(() => {});
      // cron-parser's own words: "Invalid cron expression", "Invalid explicit day of month definition", a bad time zone, …
      throw invalidArgument(
        s.timeZone ? "schedule.cron or schedule.time_zone" : "schedule.cron",
        `does not parse: ${(err as Error).message}`,
      );
    }
    await this.sync();
    const made = (await this.list()).find((x) => x.name === s.name);
    if (!made) throw notFound(`schedule.name: schedule "${s.name}" was deleted meanwhile`);
    // pg-boss keeps the schedule apart from our transactions: recorded once it is stored.
    await recordChange(this.db, {
      actor: { tokenName: s.request.createdBy, tokenRole: s.request.createdByRole ?? "operator", rpc: "CreateSchedule" },
      objectKind: "schedule",
      objectKey: s.name,
      versionBefore: null,
      versionAfter: null,
      fields: {
        cron: { before: null, after: made.cron },
        time_zone: { before: null, after: made.timeZone },
        ...jobFields({ ...s.request, schedule: undefined }),
      },
    });
    return made;
  }

  async list(): Promise<ScheduleRecord[]> {
    const rows = (await this.boss.getSchedules()) as unknown as ScheduleRow[];
    return rows
      .filter((r) => r.name.startsWith(SCHEDULE_QUEUE_PREFIX) && r.data?.request)
      .map((r) => ({
        name: r.name.slice(SCHEDULE_QUEUE_PREFIX.length),
        cron: r.cron,
        timeZone: r.timezone ?? "UTC",
        request: r.data!.request,
        createdAt: new Date(r.created_on),
      }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async delete(name: string, actor: Actor): Promise<void> {
    checkKey("name", name);
    const old = (await this.list()).find((x) => x.name === name);
    if (!old) throw notFound(`name: no schedule "${name}"`);
    const queue = queueOf(name);
    await this.boss.unschedule(queue);
    // Ticks not begun are dropped. The queue itself stays (pg-boss cannot drop a queue that still
    // holds finished jobs; they are archived and removed in time); a schedule made again under the
    // same name uses it again.
    await this.boss.purgeQueue(queue);
    await recordChange(this.db, {
      actor,
      objectKind: "schedule",
      objectKey: name,
      versionBefore: null,
      versionAfter: null,
      fields: { deleted: { before: false, after: true }, cron: { before: old.cron, after: null } },
    });
    await this.sync();
  }

  /** Works the queue of every schedule (and stops working those removed), now and every
   * SCHEDULE_SYNC_MS: for servers that run jobs. */
  async run(): Promise<void> {
    this.running = true;
    await this.sync();
    this.timer = setInterval(() => {
      this.sync().catch((err: unknown) => this.log?.warn({ err }, "looking for job schedules failed"));
    }, SCHEDULE_SYNC_MS);
    this.timer.unref();
  }

  stop(): void {
    this.running = false;
    clearInterval(this.timer);
  }

  private sync(): Promise<void> {
    this.syncing ??= this.syncOnce().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    if (!this.running) return; // not a worker
    const queues = new Set((await this.list()).map((s) => queueOf(s.name)));
    for (const queue of queues) {
      if (this.worked.has(queue)) continue;
      const id = await this.boss.work<ScheduleData>(queue, { batchSize: 1, pollingIntervalSeconds: 2 }, async ([job]) => {
        if (job) await this.fire(job.id, job.data.request);
      });
      this.worked.set(queue, id);
    }
    for (const [queue, id] of this.worked) {
      if (queues.has(queue)) continue;
      await this.boss.offWork({ id });
      this.worked.delete(queue);
    }
  }

  /** A tick: starts the job, with the tick's id (once, however often the tick is run). */
  private async fire(tickId: string, request: JobRequest): Promise<void> {
    try {
      const job = await this.jobs.start(request, "schedule.spec", tickId);
      this.log?.info({ schedule: request.schedule, job: job.id }, "schedule started a job");
    } catch (err) {
      if (!(err instanceof ServiceError)) throw err; // the store failed: pg-boss retries the tick
      // The template does not fit now (an empty cohort, no experiment of the tag running): a failed
      // job says so in the list, and the next tick tries again.
      const spec: StoredJobSpec = {
        kind: request.kind as JobKindName,
        cohort: request.cohort,
        experimentKeys: [...request.experimentKeys],
        tag: request.tag,
        chunkUnits: 0,
        schedule: request.schedule,
      };
      await this.jobs.store.insertFailed({ id: tickId, spec, createdBy: request.createdBy, error: err.message });
      this.log?.warn({ schedule: request.schedule, err }, "a schedule's job could not start");
    }
  }
}
