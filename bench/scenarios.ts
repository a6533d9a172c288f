/** The measured calls. Each scenario sends one request shape through the real typed client and
 * returns every cell's answer so the runner can check it (outside the timed span). */
import { createClient as createConnectClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { AssignmentService, type Client, type ExperimentService, ExperimentStatus, type Layer, type Reason } from "assignment-client";
import { TRIVIAL_PATH } from "../harness/trivial-echo.js";

export type AssignmentClient = Client<typeof AssignmentService>;

/** The experiments every scenario uses: RUNNING, 50/50, full rollout, unit type user_id. */
export const EXPERIMENT_KEYS = Array.from({ length: 10 }, (_, i) => `bench-exp-${i}`);

/** Creates the EXPERIMENT_KEYS experiments through `admin`. */
export async function createBenchExperiments(admin: Client<typeof ExperimentService>): Promise<void> {
  for (const key of EXPERIMENT_KEYS) {
    await admin.createExperiment({
      key,
      variants: [
        { key: "control", weight: 5_000 },
        { key: "treatment", weight: 5_000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
  }
}

export interface Outcome {
  reasons: Reason[];
  stored: boolean[];
  /** Only filled when the call asked for explanations. */
  layers: (Layer | undefined)[];
}

export interface Scenario {
  id: string;
  title: string;
  /** Unit ids per request. */
  units: number;
  /** Cells (unit × experiment) per request. */
  cells: number;
  /** Distinct requests cycled through in the warm phases. */
  warmPool: number;
  /** Targets, ms, and the old design's numbers (warm / cold), from the brief. */
  target: { warm: number; cold: number };
  old: { warm: number; cold: number };
  call(client: AssignmentClient, unitIds: string[], explain: boolean): Promise<Outcome>;
}

const opts = (explain: boolean) => (explain ? { explain: true } : undefined);

export const SCENARIOS: Scenario[] = [
  {
    id: "1x10",
    title: "1 unit × 10 experiments (AssignUnit)",
    units: 1,
    cells: 10,
    warmPool: 200,
    target: { warm: 1.5, cold: 3 },
    old: { warm: 15, cold: 25 },
    async call(client, [unitId], explain) {
      const res = await client.assignUnit({ units: { user_id: unitId }, experimentKeys: EXPERIMENT_KEYS, options: opts(explain) });
      return {
        reasons: res.assignments.map((a) => a.reason),
        stored: res.assignments.map((a) => a.stored),
        layers: res.assignments.map((a) => a.explanation?.layer),
      };
    },
  },
  {
    id: "1000x1",
    title: "1,000 units × 1 experiment (BulkAssign)",
    units: 1_000,
    cells: 1_000,
    warmPool: 4,
    target: { warm: 3, cold: 15 },
    old: { warm: 8, cold: 35 },
    async call(client, unitIds, explain) {
      const { column } = await client.bulkAssign({ experimentKey: EXPERIMENT_KEYS[0], unitIds, options: opts(explain) });
      return {
        reasons: column?.reasons ?? [],
        stored: column?.stored ?? [],
        layers: column?.explanations.map((e) => e.layer) ?? [],
      };
    },
  },
  {
    id: "100x10",
    title: "100 units × 10 experiments (MatrixAssign)",
    units: 100,
    cells: 1_000,
    warmPool: 10,
    target: { warm: 3, cold: 15 },
    old: { warm: 25, cold: 80 },
    async call(client, unitIds, explain) {
      const { columns } = await client.matrixAssign({ experimentKeys: EXPERIMENT_KEYS, unitIds, options: opts(explain) });
      return {
        reasons: columns.flatMap((c) => c.reasons),
        stored: columns.flatMap((c) => c.stored),
        layers: columns.flatMap((c) => c.explanations.map((e) => e.layer)),
      };
    },
  },
];

/** One empty unary call to the bare grpc-js echo server: the transport's floor. */
export function trivialCaller(address: string): { call(): Promise<void>; close(): void } {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const empty = Buffer.alloc(0);
  return {
    call: () =>
      new Promise<void>((resolve, reject) =>
        client.makeUnaryRequest(TRIVIAL_PATH, identity, identity, empty, new grpc.Metadata(), {}, (err) => (err ? reject(err) : resolve())),
      ),
    close: () => client.close(),
  };
}

/** Assign over the HTTP port: a Connect client (binary protobuf, or JSON) over HTTP/1.1. */
export function connectAssignClient(baseUrl: string, json: boolean): { assign(experimentKey: string, unitId: string): Promise<Outcome> } {
  const client = createConnectClient(AssignmentService, createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: !json }));
  return {
    async assign(experimentKey, unitId) {
      const { assignment } = await client.assign({ experimentKey, unitId });
      return { reasons: [assignment!.reason], stored: [assignment!.stored], layers: [] };
    },
  };
}
