/**
 * ImportAssignments cancelled by its caller ends CANCELLED (not INVALID_ARGUMENT) and stores
 * nothing, whenever the cancel comes: while rows are still arriving, or after the last one, right
 * before the commit. One whose caller stops sending is abandoned after the idle deadline
 * (DEADLINE_EXCEEDED), stores nothing and gives its session back. Against the embedded database (the stores are real), with the handler called
 * directly: a cancelling gRPC client never sees the status its server chose.
 */
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImportAssignmentsRequestSchema, type ImportAssignmentsRequest } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { Code, ServiceError } from "../../src/errors.js";
import { AssignmentTransfers } from "../../src/service/assignment-transfers.js";
import { ConfigRegistry } from "../../src/service/config-registry.js";
import type { CallContext } from "../../src/service/handler-types.js";
import { ANONYMOUS } from "../../src/service/roles.js";
import { ConfigSnapshotStore } from "../../src/store/config-snapshot-store.js";
import { ExperimentStore } from "../../src/store/experiment-store.js";
import { PgliteDatabase } from "../../src/store/pglite-database.js";
import { TransferStore } from "../../src/store/transfer-store.js";

let db: PgliteDatabase;
let registry: ConfigRegistry;
let transfers: AssignmentTransfers;
const IDLE_MS = 300;

beforeAll(async () => {
  db = await PgliteDatabase.open({ dataDir: "memory://" });
  await db.migrate();
  const experiments = new ExperimentStore(db);
  await experiments.createExperiment(
    {
      key: "target",
      salt: "target",
      unitType: "user_id",
      hashVersion: 1,
      variants: [
        { id: 0, key: "a", weight: 5000 },
        { id: 1, key: "b", weight: 5000 },
      ],
      rollout: 10_000,
      status: ExperimentStatus.RUNNING,
      defaultVariant: null,
      tags: [],
      description: "",
      condition: "",
    },
    { tokenName: "test", tokenRole: "admin", rpc: "CreateExperiment" },
  );
  registry = new ConfigRegistry(new ConfigSnapshotStore(db), db.notifications);
  await registry.start();
  transfers = new AssignmentTransfers(new TransferStore(db), experiments, registry, { importIdleMs: IDLE_MS });
});
afterAll(async () => {
  registry?.stop();
  await db?.close();
});

const message = (from: number, setup = false): ImportAssignmentsRequest =>
  create(ImportAssignmentsRequestSchema, {
    setup: setup ? {} : undefined,
    rows: Array.from({ length: 100 }, (_, i) => ({ experimentKey: "target", unitId: `u-${from + i}`, variantKey: i % 2 ? "b" : "a" })),
  });

const context = (signal: AbortSignal): CallContext => ({
  method: "ImportAssignments",
  requestHeader: { get: () => null },
  signal,
  caller: ANONYMOUS,
});

describe("a cancelled import", () => {
  it.each([
    ["while rows are still arriving", 1],
    ["after the last row, before the commit", 3],
  ])("%s: CANCELLED, nothing stored", async (_when, cancelAfter) => {
    const controller = new AbortController();
    async function* requests() {
      for (let m = 0; m < 3; m++) {
        yield message(m * 100, m === 0);
        if (m + 1 === cancelAfter) controller.abort();
      }
    }
    const outcome = await transfers.importAssignments(requests(), context(controller.signal)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(outcome).toBeInstanceOf(ServiceError);
    expect((outcome as ServiceError).code).toBe(Code.Canceled);
    expect((await db.query(`SELECT 1 FROM assignments`)).rowCount).toBe(0);
  });

  it("the same import, not cancelled, stores every row", async () => {
    async function* requests() {
      for (let m = 0; m < 3; m++) yield message(m * 100, m === 0);
    }
    const r = await transfers.importAssignments(requests(), context(new AbortController().signal));
    expect(r.imported).toBe(300n);
    expect((await db.query(`SELECT 1 FROM assignments`)).rowCount).toBe(300);
  });
});

describe("an import whose caller stops sending", () => {
  it("is abandoned after the idle deadline: DEADLINE_EXCEEDED, nothing stored, and the next import runs", async () => {
    await db.query(`DELETE FROM assignments`);
    let sent = 0;
    async function* requests() {
      yield message(1_000, true);
      sent++;
      yield message(1_100);
      sent++;
      await new Promise(() => {}); // the caller goes quiet, without ending the stream
    }
    const outcome = await transfers.importAssignments(requests(), context(new AbortController().signal)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(sent).toBe(2);
    expect(outcome).toBeInstanceOf(ServiceError);
    expect((outcome as ServiceError).code).toBe(Code.DeadlineExceeded);
    expect((outcome as ServiceError).message).toMatch(
      /no message from the client for 0\.3 s after 200 rows: the import was abandoned and nothing was stored/,
    );
    expect((await db.query(`SELECT 1 FROM assignments`)).rowCount).toBe(0);

    // Pauses shorter than the deadline are fine, and the abandoned import holds nothing.
    async function* slow() {
      for (let m = 0; m < 3; m++) {
        yield message(2_000 + m * 100, m === 0);
        await new Promise((r) => setTimeout(r, IDLE_MS / 3));
      }
    }
    expect((await transfers.importAssignments(slow(), context(new AbortController().signal))).imported).toBe(300n);
  });
});
