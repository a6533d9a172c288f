/**
 * Fuzzing every RPC of both services with property-based tests (fast-check).
 *
 * Requests are generated from the protobuf schemas themselves: for each method, a random message
 * is built by walking `DescMessage.fields` of its input (scalars, enums including unknown numbers,
 * nested messages, lists, maps, oneofs, google.protobuf.Struct params as random JSON with NaN and
 * infinities), where strings are drawn from random unicode, NUL, empty, huge (up to 300 KB),
 * SQL and format strings, and names that exist on the server (so that calls get past validation
 * and meet real experiments, namespaces and versions). Each is serialized and sent raw to the
 * method path (grpc-js generic client, identity serializers), with the method's call shape
 * (unary, server stream, client stream, bidi stream of 0 to 4 messages). A second property per
 * method starts from a valid request and replaces random fields with random values (so calls
 * get past validation to the semantic refusals and real writes), and a third sends random bytes
 * and corrupted (byte-flipped, truncated, extended) encodings of random messages.
 *
 * For every call: the status is OK or one of INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
 * FAILED_PRECONDITION, ABORTED, RESOURCE_EXHAUSTED, never INTERNAL, UNKNOWN or anything else; a
 * refusal has non-empty details starting with the name of a request field (or `request` for bytes
 * that are no message, `messages[i]` for a stream's i-th message). After each method's runs the
 * server still answers a health check and a correct assignment.
 *
 * FUZZ_SEED=<n> replays a run (the seed is printed); FUZZ_RUNS scales the number of runs.
 */
import {
  create,
  fromBinary,
  toBinary,
  ScalarType,
  type DescField,
  type DescMessage,
  type DescMethod,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, CreateExperimentRequestSchema, ExperimentService, ExperimentStatus } from "assignment-client";
import { methodPath } from "../../src/grpc/service-definition.js";
import { expectFailure, specVariant, units } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { codeName } from "./support/load.js";
import { healthy, rawCall, rawChannel, type RawOutcome } from "./support/raw.js";

let t: TestServer;
let raw: grpc.Client;
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() % 2_147_483_647;
const SCALE = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) : 1;
/** Structured runs per method, and raw-byte runs per method. */
const RUNS = Math.max(1, Math.round(60 * SCALE));
const RAW_RUNS = Math.max(1, Math.round(40 * SCALE));
/** Each method's properties stop after this long (counted as passed for the runs made). */
const TIME_PER_METHOD_MS = 2_500 * SCALE;

const variantsA = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];

beforeAll(async () => {
  t = await startTestServer();
  raw = rawChannel(t.server.address);
  // Real things for random requests to meet: a running experiment with stored units, a draft,
  // a namespace with an experiment in it, overrides.
  await t.experiments.createExperiment({ key: "fz-a", variants: variantsA, status: ExperimentStatus.RUNNING, tags: ["web"] });
  await t.experiments.createExperiment({ key: "fz-b", variants: [...variantsA, { key: "c", weight: 0 }], unitType: "user_id" });
  await t.experiments.createNamespace({ key: "fz-ns", segments: 100 });
  await t.experiments.createExperiment({ key: "fz-c", variants: variantsA, status: ExperimentStatus.RUNNING });
  await t.experiments.allocateSegments({ namespaceKey: "fz-ns", experimentKey: "fz-c", segments: 10 });
  await t.assignments.bulkAssign({ experimentKey: "fz-a", unitIds: units("u-", 50) });
  await t.experiments.setOverrides({ experimentKey: "fz-a", overrides: [{ unitId: "u-1", variantKey: "b" }] });
  // Retired things to archive and take back.
  await t.experiments.createExperiment({ key: "fz-old", variants: variantsA });
  await t.experiments.createNamespace({ key: "fz-old-ns", segments: 10 });
  console.info(`fuzz: seed ${SEED} (FUZZ_SEED=${SEED} replays it), ${RUNS} structured + ${RAW_RUNS} raw runs per method`);
});
afterAll(async () => {
  raw?.close();
  await t?.stop();
});

// ------------------------------------------------------------------------------ generators

/** Names that exist on the server (so random calls reach past validation), and near misses. */
const NAMES = [
  "fz-a",
  "fz-b",
  "fz-c",
  "fz-ns",
  "fz-new",
  "a",
  "b",
  "c",
  "user_id",
  "device_id",
  "u-1",
  "u-2",
  "web",
  "Fz-A",
  "fz-a ",
  "fz_a",
];

const stringArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 10 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      "\u0000",
      "a\u0000b",
      "'; DROP TABLE assignments; --",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a hostile string, not a template
      "%s%n{0}${x}",
      "\uFFFF\uFFFE",
      "\u202Eevil",
      "\uD800", // a lone surrogate (sent as U+FFFD)
      "😀".repeat(129), // 516 bytes
      "é".repeat(256), // 512 bytes
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(513, 10_000, 300_000).map((n) => "x".repeat(n)) },
);

const uint32Arb = fc.oneof(
  fc.constantFrom(0, 1, 2, 99, 100, 10_000, 10_001, 50_000, 50_001, 100_000, 100_001, 2 ** 31, 2 ** 32 - 1),
  fc.nat({ max: 2 ** 32 - 1 }),
);
const int32Arb = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const uint64Arb = fc.oneof(
  fc.bigInt(0n, 40n),
  fc.constantFrom(2n ** 31n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n),
  fc.bigInt(0n, 2n ** 64n - 1n),
);
const int64Arb = fc.oneof(fc.bigInt(-40n, 40n), fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n));

const jsonArb: fc.Arbitrary<JsonValue> = fc.letrec<{ value: JsonValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.double(), // NaN, ±Infinity and -0 included: a Struct's number_value can hold them
    stringArb,
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie("value"), { maxKeys: 3 }),
  ),
})).value;
const structArb = fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), stringArb), jsonArb, { maxKeys: 4 });

function scalarArb(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return stringArb;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return uint32Arb;
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32Arb;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return uint64Arb;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Arb;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
  }
}

/** Known values and unknown ones (proto3 enums are open: any int32 is on the wire). */
const enumArb = (f: { enum: { values: readonly { number: number }[] } }) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...f.enum.values.map((v) => v.number)) },
    { weight: 1, arbitrary: fc.oneof(fc.integer({ min: -3, max: 40 }), int32Arb) },
  );

function singularArb(f: DescField, kind: "scalar" | "enum" | "message", depth: number): fc.Arbitrary<unknown> {
  const ff = f as DescField & { scalar?: ScalarType; enum?: { values: { number: number }[] }; message?: DescMessage };
  if (kind === "scalar") return scalarArb(ff.scalar!);
  if (kind === "enum") return enumArb(ff as { enum: { values: { number: number }[] } });
  if (ff.message!.typeName === "google.protobuf.Struct") return structArb;
  return messageArb(ff.message!, depth + 1);
}

const cache = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/** A random init object of `desc`: every field may be absent; lists of 0 to 12 (sometimes
 * 10,001) elements; maps of up to 4 entries. */
function messageArb(desc: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const key = `${desc.typeName}@${depth}`;
  const hit = cache.get(key);
  if (hit) return hit;
  if (depth > 3) return fc.constant({});
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  // A oneof (proto3 `optional` makes none here) is one of its members, or none.
  for (const o of desc.oneofs) {
    fields[o.localName] = fc.oneof(
      ...o.fields.map((f) =>
        singularArb(f, f.fieldKind as "scalar" | "enum" | "message", depth).map((value) => ({ case: f.localName, value })),
      ),
    );
  }
  for (const f of desc.fields) {
    if (f.oneof) continue;
    switch (f.fieldKind) {
      case "scalar":
      case "enum":
      case "message":
        fields[f.localName] = singularArb(f, f.fieldKind, depth);
        break;
      case "list": {
        const el = singularArb(f, f.listKind, depth);
        fields[f.localName] =
          f.listKind === "scalar" && f.scalar === ScalarType.STRING
            ? fc.oneof(
                { weight: 20, arbitrary: fc.array(el, { maxLength: 12 }) },
                { weight: 1, arbitrary: fc.constantFrom(10_000, 10_001).map((n) => units("fz-many-", n)) },
              )
            : fc.array(el, { maxLength: 6 });
        break;
      }
      case "map":
        fields[f.localName] = fc.dictionary(
          scalarArb(f.mapKey).map((k) => String(k)),
          singularArb(f, f.mapKind, depth),
          { maxKeys: 4 },
        );
        break;
    }
  }
  const arb = fc.record(fields, { requiredKeys: [] }) as fc.Arbitrary<Record<string, unknown>>;
  cache.set(key, arb);
  return arb;
}

/** Valid encodings of random messages, then corrupted: bytes flipped, cut short, or appended. */
function corruptedArb(desc: DescMessage): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      messageArb(desc),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 8 }),
      fc.nat({ max: 2 }),
    )
    .map(([init, flips, cut, tail, how]) => {
      const b = toBinary(desc, create(desc, init as never)).slice(0, 2_000);
      if (how === 0 && b.length > 0) for (const [at, v] of flips) b[at % b.length] = v;
      if (how === 1) return b.slice(0, b.length === 0 ? 0 : cut % b.length);
      if (how === 2) return new Uint8Array([...b, ...tail]);
      return b;
    });
}

/**
 * A valid request per method (against the entities made in beforeAll); the near-valid generator
 * keeps most of its fields and replaces one or more with random values, so that calls get past
 * validation and meet the semantic refusals (ALREADY_EXISTS, ABORTED, FAILED_PRECONDITION,
 * RESOURCE_EXHAUSTED, NOT_FOUND) and real writes.
 */
const TEMPLATES: Record<string, Record<string, unknown>[]> = {
  Assign: [{ experimentKey: "fz-a", unitId: "u-7", options: { explain: true } }],
  AssignUnit: [{ units: { user_id: "u-7" }, experimentKeys: ["fz-a", "fz-c"] }],
  BulkAssign: [{ experimentKey: "fz-a", unitIds: ["u-1", "u-2", "u-99"] }],
  MatrixAssign: [{ experimentKeys: ["fz-a", "fz-c"], unitIds: ["u-1", "u-3"] }],
  StreamAssign: [{ setup: { experimentKeys: ["fz-a"] } }, { unitIds: ["u-1", "u-4"] }, { unitIds: ["u-5"] }],
  CreateExperiment: [
    {
      key: "fz-new",
      variants: [
        { key: "a", weight: 5000, params: { color: "red" } },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
      tags: ["web"],
      description: "d",
    },
  ],
  GetExperiment: [{ key: "fz-a", version: 1n }],
  ListExperiments: [{ status: ExperimentStatus.RUNNING, tag: "web", includeArchived: true }],
  UpdateExperiment: [
    {
      key: "fz-b",
      version: 1n,
      rollout: 5000,
      variants: {
        variants: [
          { key: "a", weight: 5000, params: { size: 1 } },
          { key: "b", weight: 5000 },
          { key: "c", weight: 0 },
        ],
      },
    },
  ],
  CreateNamespace: [{ key: "fz-ns2", segments: 10 }],
  GetNamespace: [{ key: "fz-ns" }],
  ListNamespaces: [{ includeArchived: true }],
  AllocateSegments: [{ namespaceKey: "fz-ns", experimentKey: "fz-c", segments: 5 }],
  ReleaseSegments: [{ namespaceKey: "fz-ns", experimentKey: "fz-c" }],
  SetOverrides: [{ experimentKey: "fz-a", overrides: [{ unitId: "u-5", variantKey: "a" }] }],
  ClearOverrides: [{ experimentKey: "fz-a", unitIds: ["u-5"] }],
  ListOverrides: [{ experimentKey: "fz-a", pageSize: 2 }],
  ArchiveExperiment: [{ key: "fz-old" }],
  UnarchiveExperiment: [{ key: "fz-old" }],
  ArchiveNamespace: [{ key: "fz-old-ns" }],
  UnarchiveNamespace: [{ key: "fz-old-ns" }],
  GetExperimentStats: [{ key: "fz-a" }],
  ImportAssignments: [
    { setup: { policy: 1 }, rows: [{ experimentKey: "fz-a", unitId: "imp-1", variantKey: "a" }] },
    { rows: [{ experimentKey: "fz-b", unitId: "imp-2", variantKey: "c" }] },
  ],
  ExportAssignments: [{ experimentKey: "fz-a", batchSize: 10 }],
  CopyAssignments: [{ sourceExperimentKey: "fz-a", targetExperimentKey: "fz-b", variantMapping: { a: "a", b: "b" } }],
  ListChanges: [
    {
      objectKind: "experiment",
      objectKey: "fz-a",
      tokenName: "anonymous",
      since: { seconds: 1n, nanos: 0 },
      until: { seconds: 4_000_000_000n, nanos: 0 },
      pageSize: 5,
      pageToken: "100",
    },
  ],
  EraseUnits: [{ unitType: "user_id", unitIds: ["fz-erase-1", "fz-erase-2"] }],
  WatchAssignments: [{ start: { case: "fromOldest", value: true }, experimentKeys: ["fz-a"], maxBatch: 10, stopWhenCaughtUp: true }],
  ResolveParams: [{ units: { user_id: "u-7" }, namespaceKeys: ["fz-ns"], attributes: { country: "US" } }],
  BulkResolveParams: [{ unitIds: ["u-1", "u-2"], namespaceKeys: ["fz-ns"], unitAttributes: [{ a: 1 }, {}] }],
  UpdateNamespace: [{ key: "fz-ns", defaultParams: { color: "blue", size: [1, 2] } }],
  CreateHoldout: [{ key: "fz-h", share: 500, tags: ["web"] }],
  GetHoldout: [{ key: "fz-h" }],
  ListHoldouts: [{}],
  UpdateHoldout: [{ key: "fz-h", share: 700, tags: { tags: ["web", "app"] } }],
  GetHoldoutStats: [{ key: "fz-h" }],
};

/** Server streams that follow new events until the caller cancels (unless asked to stop when
 * caught up): their calls are given FOLLOW_MS, and ending at that deadline is their normal end. */
const FOLLOWS = new Set(["WatchAssignments"]);
const FOLLOW_MS = 1_000;
const timeoutOf = (m: DescMethod) => (FOLLOWS.has(m.name) ? FOLLOW_MS : undefined);

/** `template` with zero to two of its fields changed: each replaced by a random value of its
 * type, or, for a message or a list of messages, changed the same way inside. */
function nearValidArb(desc: DescMessage, template: Record<string, unknown>, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const replacements: Record<string, fc.Arbitrary<unknown>> = {};
  // A oneof is one slot (its init is { case, value }), replaced as a whole.
  const slots = [...desc.fields.filter((f) => !f.oneof), ...desc.oneofs];
  for (const f of slots) {
    const kept = template[f.localName];
    const random = messageArb(desc).map((r) => r[f.localName]);
    const nested = f.kind === "field" ? (f as { message?: DescMessage }).message : undefined;
    let inside: fc.Arbitrary<unknown> | undefined;
    if (nested && !nested.typeName.startsWith("google.") && kept !== undefined && depth < 3) {
      inside = Array.isArray(kept)
        ? fc.tuple(...kept.map((k) => nearValidArb(nested, k as Record<string, unknown>, depth + 1)))
        : nearValidArb(nested, kept as Record<string, unknown>, depth + 1);
    } else if (nested?.typeName === "google.protobuf.Struct") {
      inside = structArb;
    }
    replacements[f.localName] = inside ? fc.oneof(random, inside) : random;
  }
  const names = slots.map((f) => f.localName);
  return fc.tuple(fc.record(replacements), fc.subarray(names, { maxLength: Math.min(2, names.length) })).map(([r, changed]) => {
    const out: Record<string, unknown> = { ...template };
    for (const n of changed) {
      if (r[n] === undefined) delete out[n];
      else out[n] = r[n];
    }
    return out;
  });
}

// ------------------------------------------------------------------------------ checks

/** Every field name of every request message (proto names), for "the details name a field". */
function fieldNames(msgs: readonly DescMessage[], out = new Set<string>(["request", "messages", "stream"])): Set<string> {
  for (const m of msgs) {
    for (const f of m.fields) {
      if (out.has(`${m.typeName}.${f.name}`)) continue;
      out.add(`${m.typeName}.${f.name}`);
      out.add(f.name);
      const nested = (f as { message?: DescMessage }).message;
      if (nested && !nested.typeName.startsWith("google.")) fieldNames([nested], out);
    }
  }
  return out;
}
const FIELD_NAMES = fieldNames([...AssignmentService.methods, ...ExperimentService.methods].map((m) => m.input));

const REFUSALS = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.ABORTED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.OUT_OF_RANGE, // a position older than the events retained
]);

/** method -> status name -> count, for the report. */
const tally = new Map<string, Map<string, number>>();

function describeRequest(x: unknown): string {
  return JSON.stringify(x, (_, v) =>
    typeof v === "bigint"
      ? `${v}n`
      : typeof v === "string" && v.length > 80
        ? `${v.slice(0, 40)}…(${v.length} chars)`
        : v instanceof Uint8Array
          ? `bytes(${Buffer.from(v).toString("hex").slice(0, 80)})`
          : v,
  ).slice(0, 1_500);
}

function check(method: DescMethod, out: RawOutcome, request: unknown): void {
  const name = codeName(out.code);
  const t = tally.get(method.name) ?? tally.set(method.name, new Map()).get(method.name)!;
  t.set(name, (t.get(name) ?? 0) + 1);
  const where = `${method.name} answered ${name} "${out.details}" to ${describeRequest(request)}`;
  if (out.code === grpc.status.OK) return;
  if (out.code === grpc.status.DEADLINE_EXCEEDED && FOLLOWS.has(method.name)) return;
  if (!REFUSALS.has(out.code)) throw new Error(`unexpected status: ${where}`);
  if (out.details.trim() === "") throw new Error(`a refusal without details: ${where}`);
  const field = /^([a-z_]+)(?=[[.:])/.exec(out.details)?.[1];
  if (!field || !FIELD_NAMES.has(field)) throw new Error(`the details name no request field: ${where}`);
}

/**
 * fc.assert for at most `ms` (counted as passed for the runs made), but never zero runs: fast-check
 * fails a property interrupted before its first run ends, which a slow first call on a loaded
 * machine (a real CopyAssignments, say) would otherwise do. So the first run is made untimed.
 */
async function assertForAWhile<T>(property: fc.IAsyncProperty<T>, o: { numRuns: number; seed: number; ms: number }): Promise<void> {
  await fc.assert(property, { numRuns: 1, seed: o.seed });
  if (o.numRuns > 1)
    await fc.assert(property, {
      numRuns: o.numRuns - 1,
      seed: (o.seed + 7_919) % 2_147_483_647,
      plugins: [fc.interruptAfterTimeLimit(o.ms)],
    });
}

const kindOf = (m: DescMethod) => m.methodKind;
const streamsRequests = (m: DescMethod) => m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming";

async function stillServing(): Promise<void> {
  expect(await healthy(raw)).toBe(true);
  const a = (await t.assignments.assign({ experimentKey: "fz-health", unitId: "probe" })).assignment!;
  expect(a.reason).toBeGreaterThan(0); // answered (UNKNOWN_EXPERIMENT unless a fuzz run created it)
  const col = await t.assignments.bulkAssign({ experimentKey: "fz-c", unitIds: ["probe"], options: { dryRun: true } });
  expect(col.column!.variantIndexes.length).toBe(1);
}

// ------------------------------------------------------------------------------ properties

const METHODS = [...AssignmentService.methods, ...ExperimentService.methods];

describe("fuzzing every RPC", () => {
  for (const method of METHODS) {
    it(`${method.parent.name}/${method.name}: random well-formed messages and random bytes get OK or a refusal naming a field, never INTERNAL`, async () => {
      const path = methodPath(method);
      const messages = streamsRequests(method)
        ? fc.array(messageArb(method.input), { maxLength: 4 })
        : messageArb(method.input).map((m) => [m]);
      await assertForAWhile(
        fc.asyncProperty(messages, async (inits) => {
          const bytes = inits.map((i) => Buffer.from(toBinary(method.input, create(method.input, i as never))));
          const t0 = Date.now();
          if (process.env.FUZZ_TRACE) console.error(`SEND ${method.name} ${describeRequest(inits).slice(0, 3000)}`);
          const out = await rawCall(raw, path, kindOf(method), bytes, timeoutOf(method));
          if (process.env.FUZZ_TRACE)
            console.error(`TRACE ${method.name} ${Date.now() - t0}ms ${codeName(out.code)} ${describeRequest(inits).slice(0, 600)}`);
          check(method, out, inits);
        }),
        { numRuns: RUNS, seed: SEED, ms: TIME_PER_METHOD_MS },
      );
      const template = TEMPLATES[method.name];
      const nearValid = fc.tuple(...template.map((m) => nearValidArb(method.input, m)));
      await assertForAWhile(
        fc.asyncProperty(nearValid, async (inits) => {
          const bytes = inits.map((i) => Buffer.from(toBinary(method.input, create(method.input, i as never))));
          check(method, await rawCall(raw, path, kindOf(method), bytes, timeoutOf(method)), inits);
        }),
        { numRuns: RUNS, seed: SEED + 2, ms: TIME_PER_METHOD_MS },
      );
      const bytesArb = fc.oneof(fc.uint8Array({ maxLength: 300 }), corruptedArb(method.input));
      const rawMessages = streamsRequests(method) ? fc.array(bytesArb, { maxLength: 4 }) : bytesArb.map((b) => [b]);
      await assertForAWhile(
        fc.asyncProperty(rawMessages, async (chunks) => {
          check(
            method,
            await rawCall(
              raw,
              path,
              kindOf(method),
              chunks.map((c) => Buffer.from(c)),
              timeoutOf(method),
            ),
            chunks,
          );
        }),
        { numRuns: RAW_RUNS, seed: SEED + 1, ms: TIME_PER_METHOD_MS },
      );
      await stillServing();
    });
  }

  it("what the fuzzing found, pinned: U+0000 in a salt or in params, NaN and infinities in params are refused naming the field", async () => {
    // Before: INVALID_ARGUMENT "invalid input: invalid byte sequence for encoding "UTF8": 0x00" /
    // "unsupported Unicode escape sequence" (from PostgreSQL, naming no field), and NaN or
    // infinities silently stored as null.
    await expectFailure(
      t.experiments.createExperiment({ key: "fz-pin-1", salt: "a\u0000b", variants: variantsA }),
      grpc.status.INVALID_ARGUMENT,
      "salt:",
    );
    await expectFailure(t.experiments.createNamespace({ key: "fz-pin-2", salt: "\u0000" }), grpc.status.INVALID_ARGUMENT, "salt:");
    const cases: JsonObject[] = [
      { k: "a\u0000" },
      { "k\u0000": 1 },
      { x: Number.NaN },
      { x: [Number.POSITIVE_INFINITY] },
      { x: { y: Number.NEGATIVE_INFINITY } },
    ];
    for (const params of cases) {
      await expectFailure(
        t.experiments.createExperiment({ key: "fz-pin-3", variants: [{ key: "a", weight: 10_000, params }] }),
        grpc.status.INVALID_ARGUMENT,
        "variants[0].params:",
      );
    }
    const e = (await t.experiments.createExperiment({ key: "fz-pin-4", variants: variantsA })).experiment!;
    await expectFailure(
      t.experiments.updateExperiment({
        key: "fz-pin-4",
        version: e.version,
        variants: { variants: [variantsA[0], { ...variantsA[1], params: { n: Number.NaN } }] },
      }),
      grpc.status.INVALID_ARGUMENT,
      "variants.variants[1].params:",
    );
    await expectFailure(t.experiments.getExperiment({ key: "fz-pin-1" }), grpc.status.NOT_FOUND);
    expect((await t.experiments.getExperiment({ key: "fz-pin-4" })).experiment!.version).toBe(e.version);
  });

  it("variant params: any google.protobuf.Struct is stored and answered as sent, or refused naming variants[i].params", async () => {
    // Params are free-form JSON; PostgreSQL's jsonb cannot hold U+0000 and JSON has no NaN or
    // infinities, so those must be refused naming the field, not stored altered or refused as
    // "invalid input" without a field.
    const nasty = fc.constantFrom(
      "\u0000",
      "a\u0000b",
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      -0,
      "\uFFFF",
      "😀",
      "",
      "x".repeat(10_000),
    );
    const paramsArb = fc
      .tuple(
        structArb,
        fc.dictionary(fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom("\u0000", "k\u0000")), nasty, { maxKeys: 2 }),
        fc.boolean(),
      )
      .map(([a, b, nest]) => (nest ? { ...a, nested: { list: [b] } } : { ...a, ...b }));
    let n = 0;
    const outcomes = new Map<string, number>();
    await assertForAWhile(
      fc.asyncProperty(paramsArb, fc.boolean(), async (params, update) => {
        const key = `fz-params-${n++}`;
        const variants = [{ key: "a", weight: 10_000, params }];
        let out: RawOutcome;
        if (update) {
          await t.experiments.createExperiment({ key, variants: variantsA, status: ExperimentStatus.RUNNING });
          const req = create(ExperimentService.method.updateExperiment.input, { key, version: 1n, variants: { variants } } as never);
          out = await rawCall(raw, methodPath(ExperimentService.method.updateExperiment), "unary", [
            Buffer.from(toBinary(ExperimentService.method.updateExperiment.input, req)),
          ]);
        } else {
          const req = create(ExperimentService.method.createExperiment.input, { key, variants, status: ExperimentStatus.RUNNING } as never);
          out = await rawCall(raw, methodPath(ExperimentService.method.createExperiment), "unary", [
            Buffer.from(toBinary(ExperimentService.method.createExperiment.input, req)),
          ]);
        }
        outcomes.set(codeName(out.code), (outcomes.get(codeName(out.code)) ?? 0) + 1);
        const method = update ? ExperimentService.method.updateExperiment : ExperimentService.method.createExperiment;
        check(method, out, { params });
        if (out.code !== grpc.status.OK) {
          expect(out.details, describeRequest(params)).toMatch(/^variants(\.variants)?\[0\]\.params/);
          return;
        }
        // Stored as sent: read back, and answered with the assignment.
        const a = (await t.assignments.assign({ experimentKey: key, unitId: "p", options: { includeParams: true } })).assignment!;
        // What went over the wire (UTF-8: a lone surrogate arrives as U+FFFD).
        const wire = fromBinary(
          CreateExperimentRequestSchema,
          toBinary(CreateExperimentRequestSchema, create(CreateExperimentRequestSchema, { variants: [{ params }] } as never)),
        );
        const sent = JSON.parse(JSON.stringify(wire.variants[0].params ?? {}));
        expect(JSON.parse(JSON.stringify(a.params ?? {})), describeRequest(params)).toEqual(sent);
        expect(JSON.parse(JSON.stringify((await t.experiments.getExperiment({ key })).experiment!.variants[0].params ?? {}))).toEqual(sent);
      }),
      { numRuns: RUNS, seed: SEED + 3, ms: TIME_PER_METHOD_MS * 2 },
    );
    console.info(`fuzz: variant params: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    await stillServing();
  });

  it("the server is healthy after everything, and still assigns by the SPEC", async () => {
    await stillServing();
    // fz-c was never changed by a fuzz run unless one named its current version; check a fresh
    // experiment instead.
    // A holdout a fuzz run made (one without tags covers every experiment of its unit type) would
    // hold some of these units out (rule 7: default variant, HOLDOUT): release them all first.
    for (const h of (await t.experiments.listHoldouts({})).holdouts) await t.experiments.updateHoldout({ key: h.key, share: 0 });
    await t.experiments.createExperiment({ key: "fz-final", variants: variantsA, status: ExperimentStatus.RUNNING });
    const ids = units("final-", 200);
    const col = (await t.assignments.bulkAssign({ experimentKey: "fz-final", unitIds: ids })).column!;
    expect(col.variantIndexes.map((v) => col.legend[v])).toEqual(ids.map((u) => specVariant(u, "fz-final", variantsA)));
    const summary = [...tally].map(([m, codes]) => `${m} ${JSON.stringify(Object.fromEntries(codes))}`).join("; ");
    console.info(`fuzz: outcomes per method: ${summary}`);
    const total = [...tally.values()].reduce((a, m) => a + [...m.values()].reduce((x, y) => x + y, 0), 0);
    console.info(`fuzz: ${total} calls in all, none INTERNAL`);
    expect(tally.size).toBe(METHODS.length);
    expect(Object.keys(TEMPLATES).sort()).toEqual(METHODS.map((m) => m.name).sort());
  });
});
