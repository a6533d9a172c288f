/** Job schedules through a real gRPC client against a real server: stored, listed, deleted, and
 * bad input refused naming it. (That ticks fire once across replicas: schedule-ticks.test.ts.) */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CohortService, createClient, ExperimentStatus, JobKind, JobService, type Client } from "assignment-client";
import { failure, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

let t: TestServer;
let jobs: Client<typeof JobService>;
beforeAll(async () => {
  t = await startTestServer();
  jobs = createClient(JobService, t.server.address, { timeoutMs: 30_000, retry: false });
  const cohorts = createClient(CohortService, t.server.address, { timeoutMs: 30_000 });
  await cohorts.uploadCohort(
    (async function* () {
      yield { setup: { name: "expected-users" }, unitIds: ["u-1", "u-2"] };
    })(),
  );
  cohorts.close();
  await t.experiments.createExperiment({
    key: "hp",
    variants: [{ key: "a", weight: 10_000 }],
    status: ExperimentStatus.RUNNING,
    tags: ["homepage"],
  });
});
afterAll(async () => {
  jobs?.close();
  await t?.stop();
});

const spec = { kind: JobKind.ASSIGN, cohort: "expected-users", tag: "homepage" };

describe("schedules", () => {
  it("are stored, listed and deleted", async () => {
    const { schedule } = await jobs.createSchedule({ schedule: { name: "nightly", cron: "0 3 * * *", timeZone: "Europe/Paris", spec } });
    expect([schedule?.name, schedule?.cron, schedule?.timeZone, schedule?.createdBy]).toEqual([
      "nightly",
      "0 3 * * *",
      "Europe/Paris",
      "anonymous",
    ]);
    expect(schedule?.spec?.tag).toBe("homepage");
    await jobs.createSchedule({ schedule: { name: "hourly", cron: "0 * * * *", spec: { ...spec, tag: "", experimentKeys: ["hp"] } } });
    const { schedules } = await jobs.listSchedules({});
    expect(schedules.map((s) => [s.name, s.cron, s.timeZone, s.spec?.experimentKeys])).toEqual([
      ["hourly", "0 * * * *", "UTC", ["hp"]],
      ["nightly", "0 3 * * *", "Europe/Paris", []],
    ]);
    await jobs.deleteSchedule({ name: "hourly" });
    // Made again under the same name after it was deleted: a schedule like any other.
    await jobs.createSchedule({ schedule: { name: "hourly", cron: "30 * * * *", spec } });
    await jobs.deleteSchedule({ name: "hourly" });
    expect((await jobs.listSchedules({})).schedules.map((s) => s.name)).toEqual(["nightly"]);
    expect((await failure(jobs.deleteSchedule({ name: "hourly" }))).code).toBe(status.NOT_FOUND);
  });

  it("refuses bad input naming it, storing nothing", async () => {
    const cases: [object, number, string][] = [
      [{ name: "bad-cron", cron: "every day", spec }, status.INVALID_ARGUMENT, "schedule.cron: does not parse"],
      [{ name: "bad-minute", cron: "61 * * * *", spec }, status.INVALID_ARGUMENT, "schedule.cron: does not parse"],
      [
        { name: "bad-tz", cron: "0 3 * * *", timeZone: "Mars/Olympus", spec },
        status.INVALID_ARGUMENT,
        'schedule.time_zone: "Mars/Olympus" is not an IANA time zone',
      ],
      [{ name: "no-cron", cron: "", spec }, status.INVALID_ARGUMENT, "schedule.cron: is required"],
      [{ name: "Bad Name", cron: "0 3 * * *", spec }, status.INVALID_ARGUMENT, "schedule.name"],
      [
        { name: "no-cohort", cron: "0 3 * * *", spec: { ...spec, cohort: "nope" } },
        status.NOT_FOUND,
        'schedule.spec.cohort: no cohort "nope"',
      ],
      [
        { name: "no-exp", cron: "0 3 * * *", spec: { ...spec, tag: "", experimentKeys: ["ghost"] } },
        status.NOT_FOUND,
        'schedule.spec.experiment_keys[0]: no experiment "ghost"',
      ],
      [{ name: "nightly", cron: "0 4 * * *", spec }, status.ALREADY_EXISTS, 'schedule.name: a schedule "nightly" exists'],
    ];
    for (const [schedule, code, text] of cases) {
      const f = await failure(jobs.createSchedule({ schedule })).catch((e: Error) => {
        throw new Error(`${JSON.stringify(schedule)}: ${e.message}`);
      });
      expect([f.code, f.details], JSON.stringify(schedule)).toEqual([code, expect.stringContaining(text)]);
    }
    expect((await jobs.listSchedules({})).schedules.map((s) => [s.name, s.cron])).toEqual([["nightly", "0 3 * * *"]]);
  });
});
