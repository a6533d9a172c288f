import { readConfigEpoch } from "./config-change.js";
import {
  type ExperimentRecord,
  type ExperimentRow,
  type NamespaceRecord,
  type NamespaceRow,
  SELECT_EXPERIMENTS,
  SELECT_NAMESPACES,
  toExperimentRecord,
  toNamespaceRecord,
} from "./config-records.js";
import type { Database } from "./database.js";
import { allHoldouts, type HoldoutRecord } from "./holdout-store.js";

/** Everything an evaluating server keeps in memory, read in one go. */
export interface ConfigSnapshot {
  epoch: bigint;
  experiments: ExperimentRecord[];
  /** Without allocations (the segments say who holds what). */
  namespaces: NamespaceRecord[];
  /** namespace id -> (segment -> experiment id) */
  segments: Map<number, Array<[number, number]>>;
  holdouts: HoldoutRecord[];
}

/** What servers hold in memory, read from the database: the configuration and its epoch. */
export class ConfigSnapshotStore {
  constructor(private readonly db: Database) {}

  /** The whole configuration, read in one REPEATABLE READ transaction so that it is consistent. */
  async loadConfig(): Promise<ConfigSnapshot> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY`);
      const epoch = await readConfigEpoch(tx);
      const { rows: ex } = await tx.query<ExperimentRow>(`${SELECT_EXPERIMENTS} ORDER BY e.key`);
      const { rows: ns } = await tx.query<NamespaceRow>(`${SELECT_NAMESPACES} ORDER BY key`);
      const { rows: seg } = await tx.query<{ namespace_id: number; segment: number; experiment_id: number }>(
        `SELECT namespace_id, segment, experiment_id FROM namespace_segments`,
      );
      const holdouts = await allHoldouts(tx);
      const segments = new Map<number, Array<[number, number]>>();
      for (const s of seg) {
        let list = segments.get(s.namespace_id);
        if (!list) segments.set(s.namespace_id, (list = []));
        list.push([s.segment, s.experiment_id]);
      }
      return {
        epoch,
        experiments: ex.map(toExperimentRecord),
        namespaces: ns.map((n) => toNamespaceRecord(n, new Map())),
        segments,
        holdouts,
      };
    });
  }

  /** The epoch, read on the connection that receives the notifications where there is one: an
   * answer also proves that notifications can arrive (see ConfigRegistry). */
  async configEpoch(): Promise<bigint> {
    return readConfigEpoch(this.db.notifications ?? this.db);
  }

  /** A random id made when the schema was created; cache keys carry it. */
  async installationId(): Promise<string> {
    const { rows } = await this.db.query<{ id: string }>(`SELECT id FROM installation`);
    return rows[0]!.id;
  }
}
