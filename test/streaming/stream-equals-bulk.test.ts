/**
 * StreamAssign (proto: "a cohort of any size … the server answers each batch with one packed
 * message, in order") gives the same answers as BulkAssign for the same units, stores exactly one
 * row per enrolled unit, and a dry-run stream stores nothing (SPEC.md rule 9).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, columnAnswers, type ColumnAnswer } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { specInRollout, specVariant, sql, units, type WeightedVariant } from "../grpc/helpers.js";
import { chunk, differences, responseAnswers, runStream, streamRequests } from "./support/streams.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const BATCH = 10_000;

const storedRows = async (key: string): Promise<number> =>
  (
    await sql<{ n: number }>(
      t.databaseUrl,
      `SELECT count(*)::int AS n FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = $1`,
      [key],
    )
  )[0].n;

/** BulkAssign of `ids` in calls of BATCH ids, answers in order. */
async function bulk(key: string, ids: readonly string[]): Promise<ColumnAnswer[]> {
  const out: ColumnAnswer[] = [];
  for (const part of chunk(ids, BATCH)) {
    out.push(...columnAnswers((await t.assignments.bulkAssign({ experimentKey: key, unitIds: part })).column!));
  }
  return out;
}

/**
 * Checks the shape of a stream's responses (batch numbers 0, 1, 2, … in order, one column per
 * experiment in setup order, one position per id of the request) and returns, per experiment,
 * the answers of every unit in request order.
 */
function unpack(responses: Awaited<ReturnType<typeof runStream>>, keys: readonly string[], batches: readonly string[][]): ColumnAnswer[][] {
  expect(responses.map((r) => r.batch)).toEqual(batches.map((_, i) => BigInt(i)));
  const perExperiment: ColumnAnswer[][] = keys.map(() => []);
  responses.forEach((r, b) => {
    expect(r.columns.map((c) => c.experimentKey)).toEqual(keys);
    const answers = responseAnswers(r);
    answers.forEach((col, j) => {
      expect(col.length, `batch ${b}, ${keys[j]}`).toBe(batches[b].length);
      perExperiment[j].push(...col);
    });
  });
  return perExperiment;
}

describe("StreamAssign of 200,000 units", () => {
  const variants: WeightedVariant[] = [
    { key: "red", weight: 3000 },
    { key: "green", weight: 3000 },
    { key: "blue", weight: 4000 },
  ];

  it("one experiment: batches answered in order, each position its request's id, same answers as BulkAssign, 200,000 rows", async () => {
    await t.experiments.createExperiment({ key: "cohort", variants, status: ExperimentStatus.RUNNING });
    const ids = units("cohort-unit-", 200_000);
    const batches = chunk(ids, BATCH);
    expect(batches.length).toBe(20);

    const responses = await runStream(t.assignments, streamRequests({ experimentKeys: ["cohort"] }, batches));
    const [streamed] = unpack(responses, ["cohort"], batches);

    // Every position answers the id at that position of its request: the variant is the SPEC
    // hash of that very id (three variants, so a shifted or reordered position shows), NEW and
    // stored, since nobody asked for these units before.
    expect(
      differences(ids, streamed, (u) => ({
        variantKey: specVariant(u, "cohort", variants),
        reason: Reason.NEW,
        enrolled: true,
        stored: true,
      })),
    ).toEqual([]);
    expect(responses.every((r) => r.columns[0].legend[0] === "")).toBe(true);

    // BulkAssign on the same units: the same variants, enrolled and stored; STICKY now.
    const bulked = await bulk("cohort", ids);
    expect(differences(ids, bulked, (_, i) => ({ ...streamed[i], reason: Reason.STICKY }))).toEqual([]);

    expect(await storedRows("cohort")).toBe(200_000);
    const [{ distinct, wrong }] = await sql<{ distinct: number; wrong: number }>(
      t.databaseUrl,
      `SELECT count(DISTINCT unit_id)::int AS distinct, count(*) FILTER (WHERE unit_id NOT LIKE 'cohort-unit-%')::int AS wrong
         FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = 'cohort'`,
    );
    expect({ distinct, wrong }).toEqual({ distinct: 200_000, wrong: 0 });
  });

  it("two experiments (100,000 units, one at 50% rollout), BulkAssign first this time: the stream answers the same, STICKY where Bulk said NEW", async () => {
    const variantsB: WeightedVariant[] = [
      { key: "off", weight: 5000 },
      { key: "on", weight: 5000 },
    ];
    await t.experiments.createExperiment({ key: "pair-a", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "pair-b", variants: variantsB, rollout: 5000, status: ExperimentStatus.RUNNING });
    const ids = units("pair-unit-", 100_000); // x 2 experiments: 200,000 cells, batches of 10,000 ids
    const batches = chunk(ids, BATCH);

    const bulkA = await bulk("pair-a", ids);
    const bulkB = await bulk("pair-b", ids);
    expect(
      differences(ids, bulkA, (u) => ({
        variantKey: specVariant(u, "pair-a", variants),
        reason: Reason.NEW,
        enrolled: true,
        stored: true,
      })),
    ).toEqual([]);
    const inRolloutB = (u: string) => specInRollout(u, "pair-b", 5000);
    expect(
      differences(ids, bulkB, (u) =>
        inRolloutB(u)
          ? { variantKey: specVariant(u, "pair-b", variantsB), reason: Reason.NEW, enrolled: true, stored: true }
          : { variantKey: "off", reason: Reason.NOT_IN_ROLLOUT, enrolled: false, stored: false },
      ),
    ).toEqual([]);

    // The setup rides on the first batch this time; the experiments come in the opposite order.
    const responses = await runStream(t.assignments, streamRequests({ experimentKeys: ["pair-b", "pair-a"] }, batches, true));
    const [streamB, streamA] = unpack(responses, ["pair-b", "pair-a"], batches);
    const sticky = (a: ColumnAnswer) => (a.reason === Reason.NEW ? { ...a, reason: Reason.STICKY } : a);
    expect(differences(ids, streamA, (_, i) => sticky(bulkA[i]))).toEqual([]);
    expect(differences(ids, streamB, (_, i) => sticky(bulkB[i]))).toEqual([]);

    expect(await storedRows("pair-a")).toBe(100_000);
    const enrolledB = ids.filter(inRolloutB).length;
    expect(enrolledB).toBeGreaterThan(45_000);
    expect(enrolledB).toBeLessThan(55_000);
    expect(await storedRows("pair-b")).toBe(enrolledB);
  });

  it("a dry-run stream answers the hashed variants (NEW, stored=false) and stores nothing", async () => {
    await t.experiments.createExperiment({ key: "dry", variants, status: ExperimentStatus.RUNNING });
    const ids = units("dry-unit-", 30_000);
    const batches = chunk(ids, BATCH);
    const responses = await runStream(t.assignments, streamRequests({ experimentKeys: ["dry"], options: { dryRun: true } }, batches));
    const [answers] = unpack(responses, ["dry"], batches);
    expect(
      differences(ids, answers, (u) => ({
        variantKey: specVariant(u, "dry", variants),
        reason: Reason.NEW,
        enrolled: true,
        stored: false,
      })),
    ).toEqual([]);
    expect(await storedRows("dry")).toBe(0);
    // Nothing cached either: a real call afterwards still answers NEW.
    const again = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "dry", unitIds: ids.slice(0, 100) })).column!);
    expect(again.every((a) => a.reason === Reason.NEW)).toBe(true);
    expect(await storedRows("dry")).toBe(100);
  });
});
