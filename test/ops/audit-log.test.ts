/**
 * The audit log, through real gRPC clients against a real server (on PostgreSQL, and on PGlite):
 * a scenario makes a known list of changes with named tokens of each role, plus refused calls
 * (wrong role, bad input, a stale version, an unknown token, more segments than free), then
 * checks that ListChanges answers exactly one change per successful call, matching the list
 * written here (RPC, token, object, versions, changed fields with their values), and none for the
 * refused ones; that the table holds exactly those rows; that filters and pages select from them;
 * and that GetExperiment answers each past version as the scenario made it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Change, type Client, createClient, ExperimentService, ExperimentStatus, ImportPolicy } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { parseTokenFile } from "../../src/ops/token-file.js";
import { type RunningServer, startServer } from "../../src/server.js";
import { expectFailure, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const TOKENS = {
  alice: "audit-test-alice-0123456789", // admin
  olga: "audit-test-olga-0123456789", // operator
  rita: "audit-test-rita-0123456789", // reader
};
const TOKEN_FILE = `alice admin ${TOKENS.alice}\nolga operator ${TOKENS.olga}\nrita reader ${TOKENS.rita}\n`;

/** A change as the test expects it: fields as JSON `{field: [before, after]}`. */
interface Expected {
  rpc: string;
  token: string;
  role: string;
  kind: "experiment" | "namespace";
  key: string;
  before?: bigint;
  after?: bigint;
  fields: Record<string, [JsonValue, JsonValue]>;
}

/** A Change from ListChanges in the form of Expected. */
function simplify(c: Change): Expected {
  const fields: Record<string, [JsonValue, JsonValue]> = {};
  for (const f of c.fields) {
    fields[f.field] = [f.before ? toJson(ValueSchema, f.before) : null, f.after ? toJson(ValueSchema, f.after) : null];
  }
  const out: Expected = {
    rpc: c.rpc,
    token: c.tokenName,
    role: c.tokenRole,
    kind: c.objectKind as Expected["kind"],
    key: c.objectKey,
    fields,
  };
  if (c.versionBefore !== undefined) out.before = c.versionBefore;
  if (c.versionAfter !== undefined) out.after = c.versionAfter;
  return out;
}

type Clients = Record<keyof typeof TOKENS | "nobody", Client<typeof ExperimentService>>;

/** Every change of the log, newest first, read in pages of `pageSize` with `filter`. */
async function allChanges(client: Client<typeof ExperimentService>, filter: Record<string, unknown> = {}, pageSize = 0): Promise<Change[]> {
  const out: Change[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 1000; pages++) {
    const r = await client.listChanges({ ...filter, pageSize, pageToken });
    out.push(...r.changes);
    if (r.nextPageToken === "") return out;
    pageToken = r.nextPageToken;
  }
  throw new Error("more than 1000 pages");
}

async function* rows(...messages: unknown[]) {
  yield* messages as never[];
}

/**
 * The scenario: makes the changes (returning the list the log must hold, oldest first) and the
 * refused calls, checking each refusal's code.
 */
async function scenario(c: Clients): Promise<Expected[]> {
  const log: Expected[] = [];
  const alice = { token: "alice", role: "admin" };
  const olga = { token: "olga", role: "operator" };

  // 1, 2: two experiments; 3: a namespace.
  await c.alice.createExperiment({
    key: "checkout",
    variants: [
      { key: "a", weight: 5000, params: { color: "red" } },
      { key: "b", weight: 5000, params: { color: "blue", size: 3 } },
    ],
    tags: ["web"],
    description: "first",
  });
  log.push({
    rpc: "CreateExperiment",
    ...alice,
    kind: "experiment",
    key: "checkout",
    after: 1n,
    fields: {
      key: [null, "checkout"],
      salt: [null, "checkout"],
      unit_type: [null, "user_id"],
      hash_version: [null, 1],
      variants: [
        null,
        [
          { id: 0, key: "a", weight: 5000, params: { color: "red" } },
          { id: 1, key: "b", weight: 5000, params: { color: "blue", size: 3 } },
        ],
      ],
      rollout: [null, 10000],
      status: [null, "DRAFT"],
      default_variant: [null, null],
      winner: [null, null],
      tags: [null, ["web"]],
      description: [null, "first"],
      condition: [null, ""],
      namespace: [null, null],
      segments: [null, 0],
    },
  });
  await c.alice.createExperiment({
    key: "pricing",
    salt: "pricing-salt",
    variants: [
      { key: "x", weight: 5000 },
      { key: "y", weight: 5000 },
    ],
  });
  log.push({
    rpc: "CreateExperiment",
    ...alice,
    kind: "experiment",
    key: "pricing",
    after: 1n,
    fields: {
      key: [null, "pricing"],
      salt: [null, "pricing-salt"],
      unit_type: [null, "user_id"],
      hash_version: [null, 1],
      variants: [
        null,
        [
          { id: 0, key: "x", weight: 5000 },
          { id: 1, key: "y", weight: 5000 },
        ],
      ],
      rollout: [null, 10000],
      status: [null, "DRAFT"],
      default_variant: [null, null],
      winner: [null, null],
      tags: [null, []],
      description: [null, ""],
      condition: [null, ""],
      namespace: [null, null],
      segments: [null, 0],
    },
  });
  await c.alice.createNamespace({ key: "ns", segments: 100 });
  log.push({
    rpc: "CreateNamespace",
    ...alice,
    kind: "namespace",
    key: "ns",
    after: 1n,
    fields: { key: [null, "ns"], salt: [null, "ns"], unit_type: [null, "user_id"], segments: [null, 100], hash_version: [null, 1] },
  });

  // Refused: a reader creating, an operator changing params, a bad key, an unknown token.
  await expectFailure(c.rita.createExperiment({ key: "by-rita", variants: [{ key: "a", weight: 10000 }] }), status.PERMISSION_DENIED);
  await expectFailure(
    c.olga.updateExperiment({ key: "checkout", version: 1n, description: "not yours" }),
    status.PERMISSION_DENIED,
    "description",
  );
  await expectFailure(
    c.alice.createExperiment({ key: "Bad Key!", variants: [{ key: "a", weight: 10000 }] }),
    status.INVALID_ARGUMENT,
    "key",
  );
  await expectFailure(c.nobody.createNamespace({ key: "ns-nobody" }), status.UNAUTHENTICATED);

  // 4: params and weights; 5: started by the operator; 6: ramped.
  await c.alice.updateExperiment({
    key: "checkout",
    version: 1n,
    variants: {
      variants: [
        { key: "a", weight: 2000, params: { color: "green" } },
        { key: "b", weight: 8000, params: { color: "blue", size: 3 } },
      ],
    },
  });
  log.push({
    rpc: "UpdateExperiment",
    ...alice,
    kind: "experiment",
    key: "checkout",
    before: 1n,
    after: 2n,
    fields: {
      variants: [
        [
          { id: 0, key: "a", weight: 5000, params: { color: "red" } },
          { id: 1, key: "b", weight: 5000, params: { color: "blue", size: 3 } },
        ],
        [
          { id: 0, key: "a", weight: 2000, params: { color: "green" } },
          { id: 1, key: "b", weight: 8000, params: { color: "blue", size: 3 } },
        ],
      ],
    },
  });
  // Refused: a stale version (inside the transaction that would have changed it).
  await expectFailure(c.olga.updateExperiment({ key: "checkout", version: 1n, status: ExperimentStatus.RUNNING }), status.ABORTED);
  await c.olga.updateExperiment({ key: "checkout", version: 2n, status: ExperimentStatus.RUNNING });
  log.push({
    rpc: "UpdateExperiment",
    ...olga,
    kind: "experiment",
    key: "checkout",
    before: 2n,
    after: 3n,
    fields: { status: ["DRAFT", "RUNNING"] },
  });
  await c.olga.updateExperiment({ key: "checkout", version: 3n, rollout: 5000 });
  log.push({
    rpc: "UpdateExperiment",
    ...olga,
    kind: "experiment",
    key: "checkout",
    before: 3n,
    after: 4n,
    fields: { rollout: [10000, 5000] },
  });

  // 7, 8: segments allocated and released; refused: more than free, and by an operator.
  await expectFailure(c.alice.allocateSegments({ namespaceKey: "ns", experimentKey: "pricing", segments: 101 }), status.RESOURCE_EXHAUSTED);
  await expectFailure(c.olga.allocateSegments({ namespaceKey: "ns", experimentKey: "pricing", segments: 1 }), status.PERMISSION_DENIED);
  await c.alice.allocateSegments({ namespaceKey: "ns", experimentKey: "pricing", segments: 10 });
  log.push({
    rpc: "AllocateSegments",
    ...alice,
    kind: "experiment",
    key: "pricing",
    before: 1n,
    after: 2n,
    fields: { namespace: [null, "ns"], segments: [0, 10], segments_allocated: [null, 10] },
  });
  await c.alice.releaseSegments({ namespaceKey: "ns", experimentKey: "pricing" });
  log.push({
    rpc: "ReleaseSegments",
    ...alice,
    kind: "experiment",
    key: "pricing",
    before: 2n,
    after: 3n,
    fields: { segments: [10, 0], segments_released: [null, 10] },
  });

  // 9: an import (counts, never unit ids); refused: invalid rows, and by a reader.
  await expectFailure(
    c.olga.importAssignments(rows({ rows: [{ experimentKey: "checkout", unitId: "u-9", variantKey: "zzz" }] })),
    status.INVALID_ARGUMENT,
  );
  await expectFailure(
    c.rita.importAssignments(rows({ rows: [{ experimentKey: "checkout", unitId: "u-9", variantKey: "a" }] })),
    status.PERMISSION_DENIED,
  );
  await c.olga.importAssignments(
    rows(
      {
        rows: [
          { experimentKey: "checkout", unitId: "u-1", variantKey: "a" },
          { experimentKey: "checkout", unitId: "u-2", variantKey: "b" },
        ],
      },
      { rows: [{ experimentKey: "checkout", unitId: "u-3", variantKey: "b" }] },
    ),
  );
  log.push({
    rpc: "ImportAssignments",
    ...olga,
    kind: "experiment",
    key: "checkout",
    before: 4n,
    after: 4n,
    fields: { policy: [null, "SKIP_EXISTING"], rows_received: [null, 3], rows_imported: [null, 3] },
  });

  // 10: a copy of those three into pricing (one page).
  for await (const _ of c.olga.copyAssignments({
    sourceExperimentKey: "checkout",
    targetExperimentKey: "pricing",
    variantMapping: { a: "x", b: "y" },
  }))
    void _;
  log.push({
    rpc: "CopyAssignments",
    ...olga,
    kind: "experiment",
    key: "pricing",
    before: 3n,
    after: 3n,
    fields: { source_experiment: [null, "checkout"], rows_scanned: [null, 3], rows_copied: [null, 3] },
  });

  // 11: an OVERWRITE import into both experiments: one change of each, each a new version.
  await c.olga.importAssignments(
    rows({
      setup: { policy: ImportPolicy.OVERWRITE },
      rows: [
        { experimentKey: "checkout", unitId: "u-1", variantKey: "b" },
        { experimentKey: "pricing", unitId: "u-1", variantKey: "y" },
        { experimentKey: "pricing", unitId: "u-7", variantKey: "x" },
      ],
    }),
  );
  log.push({
    rpc: "ImportAssignments",
    ...olga,
    kind: "experiment",
    key: "checkout",
    before: 4n,
    after: 5n,
    fields: { policy: [null, "OVERWRITE"], rows_received: [null, 1], rows_imported: [null, 1] },
  });
  log.push({
    rpc: "ImportAssignments",
    ...olga,
    kind: "experiment",
    key: "pricing",
    before: 3n,
    after: 4n,
    fields: { policy: [null, "OVERWRITE"], rows_received: [null, 2], rows_imported: [null, 2] },
  });

  // 12, 13: overrides set and cleared (counts); refused: an unknown variant, and by a reader.
  await expectFailure(
    c.olga.setOverrides({ experimentKey: "checkout", overrides: [{ unitId: "t-1", variantKey: "nope" }] }),
    status.INVALID_ARGUMENT,
    "variant_key",
  );
  await expectFailure(
    c.rita.setOverrides({ experimentKey: "checkout", overrides: [{ unitId: "t-1", variantKey: "a" }] }),
    status.PERMISSION_DENIED,
  );
  await c.olga.setOverrides({
    experimentKey: "checkout",
    overrides: [
      { unitId: "t-1", variantKey: "a" },
      { unitId: "t-2", variantKey: "b" },
    ],
  });
  log.push({
    rpc: "SetOverrides",
    ...olga,
    kind: "experiment",
    key: "checkout",
    before: 5n,
    after: 6n,
    fields: { overrides_set: [null, 2], override_count: [0, 2] },
  });
  await c.olga.clearOverrides({ experimentKey: "checkout", unitIds: ["t-1"] });
  log.push({
    rpc: "ClearOverrides",
    ...olga,
    kind: "experiment",
    key: "checkout",
    before: 6n,
    after: 7n,
    fields: { overrides_cleared: [null, 1], override_count: [2, 1] },
  });

  // Refused inside the transaction: removing a variant that stored assignments use.
  await expectFailure(
    c.alice.updateExperiment({ key: "checkout", version: 7n, variants: { variants: [{ key: "a", weight: 10000 }] } }),
    status.FAILED_PRECONDITION,
    "b",
  );
  // 14: admin changes everything else an update can.
  await c.alice.updateExperiment({
    key: "checkout",
    version: 7n,
    winner: "b",
    defaultVariant: "b",
    tags: { tags: ["web", "q3"] },
    description: "second",
  });
  log.push({
    rpc: "UpdateExperiment",
    ...alice,
    kind: "experiment",
    key: "checkout",
    before: 7n,
    after: 8n,
    fields: {
      winner: [null, "b"],
      default_variant: [null, "b"],
      tags: [["web"], ["web", "q3"]],
      description: ["first", "second"],
    },
  });

  // 15-17: archiving. Refused: a RUNNING experiment, by an operator, and a namespace whose
  // experiment is not archived; no row for those, nor for archiving what is archived already.
  await expectFailure(c.alice.archiveExperiment({ key: "checkout" }), status.FAILED_PRECONDITION, "RUNNING");
  await expectFailure(c.olga.archiveExperiment({ key: "pricing" }), status.PERMISSION_DENIED);
  await expectFailure(c.alice.archiveNamespace({ key: "ns" }), status.FAILED_PRECONDITION, "pricing");
  const pricing = (await c.alice.getExperiment({ key: "pricing" })).experiment!.version;
  await c.alice.archiveExperiment({ key: "pricing" });
  log.push({
    rpc: "ArchiveExperiment",
    ...alice,
    kind: "experiment",
    key: "pricing",
    before: pricing,
    after: pricing + 1n,
    fields: { archived: [false, true] },
  });
  await c.alice.archiveExperiment({ key: "pricing" });
  await c.alice.archiveNamespace({ key: "ns" });
  // The namespace's version: 1 made, 2 segments allocated, 3 released, 4 archived, 5 unarchived.
  log.push({ rpc: "ArchiveNamespace", ...alice, kind: "namespace", key: "ns", before: 3n, after: 4n, fields: { archived: [false, true] } });
  await c.alice.unarchiveNamespace({ key: "ns" });
  log.push({
    rpc: "UnarchiveNamespace",
    ...alice,
    kind: "namespace",
    key: "ns",
    before: 4n,
    after: 5n,
    fields: { archived: [true, false] },
  });
  return log;
}

/** The checks, on a server that ran the scenario. */
function checks(get: () => { c: Clients; expected: Expected[]; rowCount: () => Promise<number> }) {
  it("ListChanges holds exactly one change per successful call, as the scenario made it, newest first; none for refused calls", async () => {
    const { c, expected } = get();
    const changes = await allChanges(c.rita);
    expect(changes.map(simplify)).toEqual([...expected].reverse());
    // Ids fall and times never rise, newest first.
    for (let i = 1; i < changes.length; i++) {
      expect(changes[i]!.id).toBeLessThan(changes[i - 1]!.id);
      expect(timestampDate(changes[i]!.time!).getTime()).toBeLessThanOrEqual(timestampDate(changes[i - 1]!.time!).getTime());
    }
    expect(await get().rowCount()).toBe(expected.length);
  });

  it("pages of any size give the same list; filters by object, token name and time select from it", async () => {
    const { c, expected } = get();
    const all = await allChanges(c.olga);
    expect((await allChanges(c.olga, {}, 2)).map(simplify)).toEqual(all.map(simplify));
    expect((await allChanges(c.olga, {}, 1)).length).toBe(expected.length);
    const newest = [...expected].reverse();

    const pricing = await allChanges(c.olga, { objectKind: "experiment", objectKey: "pricing" }, 3);
    expect(pricing.map(simplify)).toEqual(newest.filter((e) => e.kind === "experiment" && e.key === "pricing"));
    const ns = await allChanges(c.olga, { objectKind: "namespace" });
    expect(ns.map(simplify)).toEqual(newest.filter((e) => e.kind === "namespace"));
    const byOlga = await allChanges(c.olga, { tokenName: "olga" });
    expect(byOlga.map(simplify)).toEqual(newest.filter((e) => e.token === "olga"));
    expect(await allChanges(c.olga, { tokenName: "rita" })).toEqual([]);

    // Time: changes at or after the 9th's time, and before it; together they are all.
    const pivot = all[all.length - 9]!;
    const pivotDate = timestampDate(pivot.time!);
    const since = await allChanges(c.olga, { since: timestampFromDate(pivotDate) });
    const until = await allChanges(c.olga, { until: timestampFromDate(pivotDate) });
    expect(since.map((x) => x.id)).toContain(pivot.id);
    expect(since.every((x) => timestampDate(x.time!) >= pivotDate)).toBe(true);
    expect(until.every((x) => timestampDate(x.time!) < pivotDate)).toBe(true);
    expect([...since, ...until].map((x) => x.id).sort((p, q) => Number(q - p))).toEqual(all.map((x) => x.id));
    expect(await allChanges(c.olga, { since: timestampFromDate(new Date(Date.now() + 3_600_000)) })).toEqual([]);
  });

  it("refuses bad filters with INVALID_ARGUMENT naming the field, and callers without a role for it", async () => {
    const { c } = get();
    await expectFailure(c.rita.listChanges({ objectKind: "table" }), status.INVALID_ARGUMENT, "object_kind");
    await expectFailure(c.rita.listChanges({ objectKey: "Not A Key" }), status.INVALID_ARGUMENT, "object_key");
    await expectFailure(c.rita.listChanges({ pageToken: "abc" }), status.INVALID_ARGUMENT, "page_token");
    await expectFailure(c.rita.listChanges({ pageToken: "9999999999999999999" }), status.INVALID_ARGUMENT, "page_token");
    await expectFailure(c.rita.listChanges({ tokenName: "no\u0000name" }), status.INVALID_ARGUMENT, "token_name");
    await expectFailure(c.rita.listChanges({ since: { seconds: 10n ** 15n, nanos: 0 } }), status.INVALID_ARGUMENT, "since");
    await expectFailure(c.rita.listChanges({ pageSize: 1001 }), status.INVALID_ARGUMENT, "page_size");
    const t = timestampFromDate(new Date());
    await expectFailure(c.rita.listChanges({ since: t, until: t }), status.INVALID_ARGUMENT, "until");
    await expectFailure(c.nobody.listChanges({}), status.UNAUTHENTICATED);
  });

  it("GetExperiment answers every past version as the scenario made it; NOT_FOUND naming a version never made", async () => {
    const { c } = get();
    const at = async (key: string, version: bigint) => (await c.rita.getExperiment({ key, version })).experiment!;
    const v1 = await at("checkout", 1n);
    expect(v1.version).toBe(1n);
    expect(v1.variants.map((v) => [v.key, v.weight, v.params])).toEqual([
      ["a", 5000, { color: "red" }],
      ["b", 5000, { color: "blue", size: 3 }],
    ]);
    expect([v1.status, v1.rollout, v1.description, v1.tags]).toEqual([ExperimentStatus.DRAFT, 10000, "first", ["web"]]);
    const v2 = await at("checkout", 2n);
    expect(v2.variants.map((v) => [v.weight, v.params])).toEqual([
      [2000, { color: "green" }],
      [8000, { color: "blue", size: 3 }],
    ]);
    expect(v2.status).toBe(ExperimentStatus.DRAFT);
    expect((await at("checkout", 3n)).status).toBe(ExperimentStatus.RUNNING);
    expect([(await at("checkout", 3n)).rollout, (await at("checkout", 4n)).rollout]).toEqual([10000, 5000]);
    expect([(await at("checkout", 7n)).winner, (await at("checkout", 8n)).winner]).toEqual(["", "b"]);
    const current = (await c.rita.getExperiment({ key: "checkout" })).experiment!;
    expect(current.version).toBe(8n);
    expect(await at("checkout", 8n)).toEqual(current);
    // pricing: in the namespace at version 2 only.
    expect([(await at("pricing", 1n)).namespace, (await at("pricing", 1n)).segments]).toEqual(["", 0]);
    expect([(await at("pricing", 2n)).namespace, (await at("pricing", 2n)).segments]).toEqual(["ns", 10]);
    expect((await at("pricing", 3n)).segments).toBe(0);

    await expectFailure(c.rita.getExperiment({ key: "checkout", version: 9n }), status.NOT_FOUND, "version", "never had version 9");
    await expectFailure(c.rita.getExperiment({ key: "checkout", version: 0n }), status.NOT_FOUND, "version");
    await expectFailure(c.rita.getExperiment({ key: "nothing", version: 1n }), status.NOT_FOUND, "nothing");
  });
}

function clientsFor(address: string): Clients {
  const make = (token: string) => createClient(ExperimentService, address, { token, timeoutMs: 30_000, retry: false });
  return { alice: make(TOKENS.alice), olga: make(TOKENS.olga), rita: make(TOKENS.rita), nobody: make("audit-test-nobody-0123456789") };
}

describe("audit log on PostgreSQL", () => {
  let t: TestServer;
  let c: Clients;
  let expected: Expected[];
  beforeAll(async () => {
    t = await startTestServer({ tokens: parseTokenFile(TOKEN_FILE) });
    c = clientsFor(t.server.address);
    expected = await scenario(c);
  });
  afterAll(async () => {
    for (const client of Object.values(c ?? {})) client.close();
    await t?.stop();
  });
  checks(() => ({
    c,
    expected,
    rowCount: async () => Number((await t.server.database.query<{ n: string }>(`SELECT count(*) AS n FROM audit_log`)).rows[0]!.n),
  }));
});

describe("audit log on PGlite", () => {
  let dir: string;
  let server: RunningServer;
  let c: Clients;
  let expected: Expected[];
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "pglite-audit-"));
    server = await startServer({
      pgliteDataDir: path.join(dir, "db"),
      port: 0,
      logger: createLogger("silent"),
      tokens: parseTokenFile(TOKEN_FILE),
    });
    c = clientsFor(server.address);
    expected = await scenario(c);
  });
  afterAll(async () => {
    for (const client of Object.values(c ?? {})) client.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  checks(() => ({
    c,
    expected,
    rowCount: async () => Number((await server.database.query<{ n: string }>(`SELECT count(*) AS n FROM audit_log`)).rows[0]!.n),
  }));
});
