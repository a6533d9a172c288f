import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  ImportPolicy,
  type CopyAssignmentsRequest,
  type CopyAssignmentsResponseSchema,
  type ExportAssignmentsRequest,
  type ExportAssignmentsResponseSchema,
  type ImportAssignmentsRequest,
  type ImportAssignmentsResponseSchema,
} from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { isValidKey, isValidUnitId, KEY_RULE, UNIT_ID_RULE } from "../engine/rules.js";
import { Code, cancelled, deadlineExceeded, failedPrecondition, hasCode, invalidArgument, notFound } from "../errors.js";
import type { CallContext } from "./handler-types.js";
import { actorOf } from "./audit-handlers.js";
import { recordImport } from "../store/import-staging.js";
import type { ExperimentStore } from "../store/experiment-store.js";
import type { TransferStore } from "../store/transfer-store.js";
import { DEFAULT_COPY_BATCH, DEFAULT_EXPORT_BATCH, MAX_COPY_BATCH, MAX_EXPORT_BATCH, MAX_IMPORT_ERRORS } from "assignment-client/limits";
import type { ConfigView } from "./config-registry.js";
import { withIdleDeadline } from "../util/idle-deadline.js";

interface ImportTarget {
  id: number;
  variants: Map<string, number>;
}

export interface TransferOptions {
  /** How long an import waits for its client's next message before it is abandoned. */
  importIdleMs: number;
}

/**
 * ImportAssignments, ExportAssignments and CopyAssignments. What a slow or stalled peer can hold
 * (the TransferStore's connections are a pool of their own, apart from page loads'):
 * - an export holds one page of rows and no connection while it waits for its reader;
 * - a copy holds nothing while it waits for its reader (each page is one statement, committed);
 * - an import holds a connection and its open transaction while it waits for the next message,
 *   for at most `importIdleMs`: then it is abandoned (DEADLINE_EXCEEDED) and nothing is stored.
 */
export class AssignmentTransfers {
  constructor(
    private readonly transfers: TransferStore,
    private readonly experiments: ExperimentStore,
    private readonly registry: ConfigView,
    private readonly options: TransferOptions,
  ) {}

  async importAssignments(
    requests: AsyncIterable<ImportAssignmentsRequest>,
    ctx: CallContext,
  ): Promise<MessageInitShape<typeof ImportAssignmentsResponseSchema>> {
    const staging = await this.transfers.beginImport();
    let received = 0;
    let invalid = 0;
    const errors: { position: bigint; message: string }[] = [];
    let overwrite = false;
    let skipInvalid = false;
    let first = true;
    const targets = new Map<string, ImportTarget>(); // experiments met, by key
    // The experiment of the previous row, looked up again only when the key changes.
    const receivedPer = new Map<number, number>(); // valid rows per experiment id, for the audit log
    let lastKey: string | undefined;
    let last: ImportTarget | string = "";
    try {
      const idleSeconds = this.options.importIdleMs / 1000;
      const messages = withIdleDeadline(requests, this.options.importIdleMs, () =>
        deadlineExceeded(
          `no message from the client for ${idleSeconds} s after ${received} rows: the import was abandoned and nothing was stored (an import holds a transaction open while it waits: send its rows without pauses)`,
        ),
      );
      for await (const message of messages) {
        if (ctx.signal.aborted) throw cancelled("the client cancelled the import; nothing was stored");
        if (message.setup) {
          if (!first) throw invalidArgument(`messages[${received}].setup`, "is allowed only in the first message");
          const policy = message.setup.policy;
          if (![ImportPolicy.UNSPECIFIED, ImportPolicy.SKIP_EXISTING, ImportPolicy.OVERWRITE].includes(policy)) {
            throw invalidArgument("setup.policy", "must be SKIP_EXISTING or OVERWRITE");
          }
          overwrite = policy === ImportPolicy.OVERWRITE;
          skipInvalid = message.setup.skipInvalid;
        }
        first = false;
        const rows = message.rows;
        const experimentIds = new Int32Array(rows.length);
        const variantIds = new Int32Array(rows.length);
        const unitIds: string[] = [];
        for (let i = 0; i < rows.length; i++) {
          const row = rows[i]!;
          const position = received++;
          if (row.experimentKey !== lastKey) {
            lastKey = row.experimentKey;
            last = targets.get(lastKey) ?? this.importTarget(lastKey);
            if (typeof last !== "string") targets.set(lastKey, last);
          }
          const problem =
            typeof last === "string"
              ? last
              : !isValidUnitId(row.unitId)
                ? `unit_id: ${UNIT_ID_RULE}`
                : (last.variants.get(row.variantKey) ??
                  `variant_key: "${row.variantKey}" is not a variant of "${lastKey}" (${[...last.variants.keys()].join(", ")})`);
          if (typeof problem === "string") {
            invalid++;
            if (errors.length < MAX_IMPORT_ERRORS) errors.push({ position: BigInt(position), message: problem });
            continue;
          }
          const k = unitIds.length;
          const id = (last as ImportTarget).id;
          experimentIds[k] = id;
          receivedPer.set(id, (receivedPer.get(id) ?? 0) + 1);
          variantIds[k] = problem;
          unitIds.push(row.unitId);
        }
        const firstError = errors[0];
        if (firstError && !skipInvalid) {
          throw invalidArgument(
            `rows[${firstError.position}]`,
            `${firstError.message.replace(/^rows\[\d+\]\./, "")}; the import is refused whole and nothing was stored (set setup.skip_invalid to import the valid rows)`,
          );
        }
        const n = unitIds.length;
        await staging.write({ experimentIds: experimentIds.subarray(0, n), unitIds, variantIds: variantIds.subarray(0, n) }, overwrite);
      }
      const actor = actorOf(ctx);
      const result = await staging.commit(
        overwrite,
        () => !ctx.signal.aborted,
        (tx, r) => recordImport(tx, actor, overwrite, receivedPer, r),
      );
      if (result.overwrittenExperiments.length > 0) await this.registry.refresh();
      return {
        received: BigInt(received),
        imported: BigInt(result.imported),
        skipped: BigInt(received - invalid - result.imported),
        invalid: BigInt(invalid),
        errors,
      };
    } catch (err) {
      await staging.abort();
      throw err;
    }
  }

  /** The experiment an import row names, with its variant ids by key; or what is wrong with the key. */
  private importTarget(experimentKey: string): ImportTarget | string {
    if (!isValidKey(experimentKey)) return `experiment_key: ${KEY_RULE}`;
    const exp = this.registry.get(experimentKey);
    if (!exp) return `experiment_key: no experiment "${experimentKey}"`;
    return { id: exp.id, variants: new Map(exp.variants.map((v) => [v.key, v.id])) };
  }

  async *exportAssignments(
    req: ExportAssignmentsRequest,
    ctx: CallContext,
  ): AsyncIterable<MessageInitShape<typeof ExportAssignmentsResponseSchema>> {
    const exp = await this.experimentByKey("experiment_key", req.experimentKey);
    const size = this.batchSize("batch_size", req.batchSize, DEFAULT_EXPORT_BATCH, MAX_EXPORT_BATCH);
    const legendIndex = new Map(exp.variants.map((v, i) => [v.id, i]));
    const legend = exp.variants.map((v) => v.key);
    for await (const rows of this.transfers.exportBatches(exp.id, size)) {
      if (ctx.signal.aborted) return;
      yield {
        experimentKey: exp.key,
        legend,
        unitIds: rows.map((r) => r.unitId),
        variantIndexes: rows.map((r) => legendIndex.get(r.variant) ?? 0),
        sources: rows.map((r) => r.source),
        versions: rows.map((r) => BigInt(r.version)),
      };
    }
  }

  async *copyAssignments(
    req: CopyAssignmentsRequest,
    ctx: CallContext,
  ): AsyncIterable<MessageInitShape<typeof CopyAssignmentsResponseSchema>> {
    const { source, target, mapping } = await this.planCopy(req.sourceExperimentKey, req.targetExperimentKey, req.variantMapping);
    const size = this.batchSize("batch_size", req.batchSize, DEFAULT_COPY_BATCH, MAX_COPY_BATCH);
    const total = BigInt(await this.transfers.countAssignments(source.id));
    const actor = actorOf(ctx);
    let scanned = 0n;
    let copied = 0n;
    let after: string | undefined;
    for (;;) {
      if (ctx.signal.aborted) return;
      const page = await this.transfers.copyPage(source, target, mapping, after, size, actor);
      scanned += BigInt(page.scanned);
      copied += BigInt(page.copied);
      const done = page.scanned < size || page.last === null;
      yield { scanned, copied, skipped: scanned - copied, total, done };
      if (done) return;
      after = page.last!;
    }
  }

  /**
   * Checks a copy of stored assignments (CopyAssignments, a MIGRATE job) and resolves it: both
   * experiments (NOT_FOUND), a target not archived and of the source's unit type
   * (FAILED_PRECONDITION), different, and a mapping of source variant keys to target variant keys
   * (INVALID_ARGUMENT naming the entry) as variant ids. `prefix` names the request's fields.
   */
  async planCopy(sourceKey: string, targetKey: string, variantMapping: Readonly<Record<string, string>>, prefix = "") {
    const source = await this.experimentByKey(`${prefix}source_experiment_key`, sourceKey);
    const target = await this.experimentByKey(`${prefix}target_experiment_key`, targetKey);
    if ("archivedAt" in target && target.archivedAt) {
      throw failedPrecondition(
        `${prefix}target_experiment_key: experiment "${target.key}" is archived; unarchive it before copying into it`,
      );
    }
    if (source.id === target.id) throw invalidArgument(`${prefix}target_experiment_key`, "must differ from source_experiment_key");
    if (source.unitType !== target.unitType) {
      throw failedPrecondition(
        `${prefix}target_experiment_key: unit type ${target.unitType} of "${target.key}" differs from the source's ${source.unitType}`,
      );
    }
    const sourceIds = new Map(source.variants.map((v) => [v.key, v.id]));
    const targetIds = new Map(target.variants.map((v) => [v.key, v.id]));
    const mapping = new Map<number, number>();
    const entries = Object.entries(variantMapping);
    if (entries.length === 0) throw invalidArgument(`${prefix}variant_mapping`, "must map at least one source variant to a target variant");
    for (const [from, to] of entries) {
      const f = sourceIds.get(from);
      if (f === undefined) throw invalidArgument(`${prefix}variant_mapping["${from}"]`, `key must be a variant of "${source.key}"`);
      const t = targetIds.get(to);
      if (t === undefined) {
        throw invalidArgument(`${prefix}variant_mapping["${from}"]`, `value must be a variant of "${target.key}" (got "${to}")`);
      }
      mapping.set(f, t);
    }
    return { source, target, mapping };
  }

  /** The experiment named, from memory, else from the store (one this server does not serve, or
   * not yet); NOT_FOUND only when the store says so, its other failures as they are. */
  async experimentByKey(field: string, key: string) {
    if (!isValidKey(key)) throw invalidArgument(field, KEY_RULE);
    const exp =
      this.registry.get(key) ??
      (await this.experiments.getExperiment(key).catch((err: unknown) => {
        if (hasCode(err, Code.NotFound)) return undefined;
        throw err;
      }));
    if (!exp) throw notFound(`${field}: no experiment "${key}"`);
    return exp;
  }

  private batchSize(field: string, value: number, fallback: number, max: number): number {
    if (value === 0) return fallback;
    if (value > max) throw invalidArgument(field, `must be 1..${max}`);
    return value;
  }
}
