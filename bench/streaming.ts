/**
 * `npm run bench:stream` (also the second half of `npm run bench`): cohort-scale throughput of
 * StreamAssign, ImportAssignments and ExportAssignments through the real gRPC client, each next
 * to a raw baseline measured in the same run on the same PostgreSQL: a plain
 * INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING, and a plain COPY, of the same rows into the
 * same table, and a plain COPY … TO STDOUT of the exported rows. The server runs in its own process;
 * its resident memory is sampled throughout.
 *
 * Environment: DATABASE_URL, REDIS_URL (defaults: local servers); BENCH_STREAM_UNITS (1,000,000);
 * BENCH_SERVER_NODE_OPTIONS (node flags of the server, default --max-old-space-size=192: V8 otherwise
 * lets garbage pile up to several hundred MB before collecting);
 * BENCH_CPU_PROF_DIR (write a V8 CPU profile of the server there).
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus, ImportPolicy, Reason } from "assignment-client";
import type { Cleanup } from "../harness/cleanup.js";
import { residentBytes } from "../harness/processes.js";
import { benchServer, log, runBench } from "./infra.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const UNITS = Number(env.BENCH_STREAM_UNITS ?? 1_000_000);
const BATCH = 10_000;
const SERVER_NODE_ARGS = [
  ...(env.BENCH_SERVER_NODE_OPTIONS ?? "--max-old-space-size=192").split(" ").filter(Boolean),
  ...(env.BENCH_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${env.BENCH_CPU_PROF_DIR}`] : []),
];

const unitId = (prefix: string, i: number) => `${prefix}-${i}`;

/** Resident memory of a process in MB, from /proc. */
const rssMb = (pid: number): number => residentBytes(pid) / 2 ** 20;

/** Samples a process's resident memory every 100 ms: the peak of the whole run, and of the
 * current phase (reset by `phase()`). */
function sampleMemory(pid: number) {
  let peak = 0;
  let phasePeak = 0;
  const timer = setInterval(() => {
    try {
      const now = rssMb(pid);
      peak = Math.max(peak, now);
      phasePeak = Math.max(phasePeak, now);
    } catch {
      /* process gone */
    }
  }, 100);
  return {
    peak: () => peak,
    phase: () => {
      const p = phasePeak;
      phasePeak = 0;
      return p;
    },
    stop: () => clearInterval(timer),
  };
}

let memory: ReturnType<typeof sampleMemory> | undefined;

async function timed<T>(what: string, f: () => Promise<T>): Promise<{ seconds: number; value: T; peakMb: number }> {
  log(`${what} …`);
  memory?.phase();
  const t = performance.now();
  const cpu = process.cpuUsage();
  const value = await f();
  const seconds = (performance.now() - t) / 1000;
  const used = process.cpuUsage(cpu);
  const peakMb = memory?.phase() ?? NaN;
  log(
    `${what}: ${seconds.toFixed(2)} s, server peak ${peakMb.toFixed(0)} MB, benchmark client busy ${(((used.user + used.system) / 1e6 / seconds) * 100).toFixed(0)}% of one core`,
  );
  return { seconds, value, peakMb };
}

async function main(cleanup: Cleanup): Promise<void> {
  const { db, server } = await benchServer(cleanup, {
    adminDatabaseUrl: ADMIN_DATABASE_URL,
    redisUrl: REDIS_URL,
    nodeArgs: SERVER_NODE_ARGS,
  });
  memory = sampleMemory(server.pid);
  cleanup.add("stop memory sampling", async () => memory?.stop());
  log(`server started: ${rssMb(server.pid).toFixed(0)} MB resident`);
  const admin = createClient(ExperimentService, server.address);
  const assign = createClient(AssignmentService, server.address);
  cleanup.add("close clients", async () => {
    admin.close();
    assign.close();
  });

  const variants = [
    { key: "control", weight: 5000 },
    { key: "treatment", weight: 5000 },
  ];
  for (const key of ["stream", "stream-events-off", "imported", "raw-insert", "raw-copy"]) {
    await admin.createExperiment({ key, variants, status: ExperimentStatus.RUNNING });
  }
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  cleanup.add("close SQL client", () => sql.end());
  const idOf = async (key: string) => (await sql.query<{ id: number }>(`SELECT id FROM experiments WHERE key = $1`, [key])).rows[0].id;

  // --- baseline: plain INSERT … unnest … ON CONFLICT of the same rows, batches of 10,000
  const rawInsertId = await idOf("raw-insert");
  const rawInsert = await timed(`raw INSERT … unnest … ON CONFLICT of ${UNITS} rows`, async () => {
    for (let i = 0; i < UNITS; i += BATCH) {
      const ids = Array.from({ length: Math.min(BATCH, UNITS - i) }, (_, k) => unitId("u", i + k));
      await sql.query(
        `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
         SELECT $1, u, v, 1, 1 FROM unnest($2::text[], $3::smallint[]) AS t(u, v) ON CONFLICT DO NOTHING`,
        [rawInsertId, ids, ids.map((_, k) => k % 2)],
      );
    }
  });

  const streamOf = (prefix: string, dryRun: boolean, key: string) =>
    (async function* () {
      for (let i = 0; i < UNITS; i += BATCH) {
        const unitIds = Array.from({ length: Math.min(BATCH, UNITS - i) }, (_, k) => unitId(prefix, i + k));
        yield i === 0 ? { setup: { experimentKeys: [key], options: { dryRun } }, unitIds } : { unitIds };
      }
    })();
  const consume = async (prefix: string, dryRun: boolean, expect: Reason, key = "stream") => {
    let n = 0;
    for await (const r of assign.streamAssign(streamOf(prefix, dryRun, key))) {
      const reasons = r.columns[0].reasons;
      for (let k = 0; k < reasons.length; k++)
        if (reasons[k] !== expect) throw new Error(`unit ${n + k}: ${Reason[reasons[k]]}, expected ${Reason[expect]}`);
      n += reasons.length;
    }
    if (n !== UNITS) throw new Error(`stream answered ${n} units, expected ${UNITS}`);
  };

  // --- the same with assignment events off (the outbox trigger of INSERTs disabled): the
  // baseline of the events' cost (issue: events on ≥ 0.9× off). The sequencer keeps running.
  await sql.query(`ALTER TABLE assignments DISABLE TRIGGER assignment_events_inserted`);
  const eventsOff = await timed(`StreamAssign ${UNITS} new units, stored, events off`, () =>
    consume("o", false, Reason.NEW, "stream-events-off"),
  );
  await sql.query(`ALTER TABLE assignments ENABLE TRIGGER assignment_events_inserted`);
  // --- StreamAssign: new units, stored (and cached) before each answer, events on
  const stored = await timed(`StreamAssign ${UNITS} new units, stored`, () => consume("u", false, Reason.NEW));
  // Events on: every row stored by the stream was numbered (the sequencer catches up within its
  // interval; the raw INSERT baseline's rows are events too, the events-off run's are not).
  const streamId = await idOf("stream");
  const streamEvents = async () =>
    Number((await sql.query<{ n: string }>(`SELECT count(*) AS n FROM assignment_events WHERE experiment_id = $1`, [streamId])).rows[0].n);
  for (let i = 0; i < 1200 && (await streamEvents()) < UNITS; i++) await new Promise((r) => setTimeout(r, 100));
  const numbered = await streamEvents();
  if (numbered !== UNITS) throw new Error(`expected ${UNITS} events of the stream, found ${numbered}`);
  const { rows: storedCount } = await sql.query<{ n: string }>(`SELECT count(*) AS n FROM assignments WHERE experiment_id = $1`, [
    await idOf("stream"),
  ]);
  if (Number(storedCount[0].n) !== UNITS) throw new Error(`expected ${UNITS} stored rows, found ${storedCount[0].n}`);
  // --- the same units again as a dry run (answers from the caches)
  const dryWarm = await timed(`StreamAssign the same ${UNITS} units, dry run`, () => consume("u", true, Reason.STICKY));
  // --- new units as a dry run (every unit looked up in Redis and PostgreSQL, nothing stored)
  const dryNew = await timed(`StreamAssign ${UNITS} new units, dry run`, () => consume("n", true, Reason.NEW));

  // --- baseline: plain COPY of the same rows
  const rawCopyId = await idOf("raw-copy");
  const rawCopy = await timed(`raw COPY of ${UNITS} rows`, async () => {
    const copy = sql.query(copyFrom(`COPY assignments (experiment_id, unit_id, variant, version, source) FROM STDIN`));
    await pipeline(
      Readable.from(
        (function* () {
          for (let i = 0; i < UNITS; i += BATCH) {
            let chunk = "";
            for (let k = i; k < Math.min(i + BATCH, UNITS); k++) chunk += `${rawCopyId}\t${unitId("u", k)}\t${k % 2}\t1\t2\n`;
            yield chunk;
          }
        })(),
      ),
      copy,
    );
  });

  // --- ImportAssignments of the same rows into another experiment
  const imported = await timed(`ImportAssignments ${UNITS} rows`, () =>
    admin.importAssignments(
      (async function* () {
        for (let i = 0; i < UNITS; i += BATCH) {
          const rows = Array.from({ length: Math.min(BATCH, UNITS - i) }, (_, k) => ({
            experimentKey: "imported",
            unitId: unitId("u", i + k),
            variantKey: (i + k) % 2 ? "treatment" : "control",
          }));
          yield i === 0 ? { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows } : { rows };
        }
      })(),
    ),
  );
  if (imported.value.imported !== BigInt(UNITS)) throw new Error(`imported ${imported.value.imported}, expected ${UNITS}`);

  // --- baseline: plain COPY … TO STDOUT of the same rows, in unit id order, read by one client
  const importedId = await idOf("imported");
  const rawExport = await timed(`raw COPY TO of ${UNITS} rows`, async () => {
    let lines = 0;
    const copy = sql.query(
      copyTo(
        `COPY (SELECT unit_id, variant, source, version FROM assignments WHERE experiment_id = ${importedId} ORDER BY unit_id) TO STDOUT`,
      ),
    );
    for await (const chunk of copy) for (const byte of chunk as Buffer) if (byte === 10) lines++;
    if (lines !== UNITS) throw new Error(`raw COPY TO read ${lines} rows, expected ${UNITS}`);
  });

  // --- ExportAssignments
  const exported = await timed(`ExportAssignments ${UNITS} rows`, async () => {
    let n = 0;
    for await (const r of admin.exportAssignments({ experimentKey: "imported" })) n += r.unitIds.length;
    if (n !== UNITS) throw new Error(`exported ${n} rows, expected ${UNITS}`);
  });
  memory.stop();

  const rate = (s: number) => Math.round(UNITS / s);
  const f = (x: number) => x.toLocaleString("en-US");
  const lines = [
    `Streaming, ${f(UNITS)} rows, ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}`,
    "",
    "| scenario | rate (rows/s) | baseline in the same run | ratio | target | server peak RSS |",
    "|---|---|---|---|---|---|",
    `| StreamAssign, new units stored and cached | ${f(rate(stored.seconds))} | raw INSERT…unnest…ON CONFLICT ${f(rate(rawInsert.seconds))} | ${(rawInsert.seconds / stored.seconds).toFixed(2)} | ≥ 100,000 and ≥ 0.5 | ${stored.peakMb.toFixed(0)} MB |`,
    `| StreamAssign, new units stored, assignment events on | ${f(rate(stored.seconds))} | events off ${f(rate(eventsOff.seconds))} | ${(eventsOff.seconds / stored.seconds).toFixed(2)} | ≥ 0.9 | ${stored.peakMb.toFixed(0)} MB |`,
    `| StreamAssign dry run, same units (cached) | ${f(rate(dryWarm.seconds))} | | | ≥ 1,000,000 | ${dryWarm.peakMb.toFixed(0)} MB |`,
    `| StreamAssign dry run, new units (looked up, nothing stored) | ${f(rate(dryNew.seconds))} | | | (information) | ${dryNew.peakMb.toFixed(0)} MB |`,
    `| ImportAssignments | ${f(rate(imported.seconds))} | raw COPY ${f(rate(rawCopy.seconds))} | ${(rawCopy.seconds / imported.seconds).toFixed(2)} | ≥ 0.5 | ${imported.peakMb.toFixed(0)} MB |`,
    `| ExportAssignments | ${f(rate(exported.seconds))} | raw COPY TO ${f(rate(rawExport.seconds))} | ${(rawExport.seconds / exported.seconds).toFixed(2)} | ≥ 500,000 | ${exported.peakMb.toFixed(0)} MB |`,
    "",
    `Server resident memory, peak over the whole run: ${memory.peak().toFixed(0)} MB (target ≤ 300 MB).`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

await runBench(main);
