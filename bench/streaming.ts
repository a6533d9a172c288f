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
 * BENCH_CPU_PROF_DIR (write a V8 CPU profile of the server there); BENCH_IMPORT_ROUNDS (1: rounds of
 * raw COPY and ImportAssignments, alternating which goes first, each into experiments of its own);
 * BENCH_IMPORT_OTHER_SERVER (another build's dist/harness/server-process.js: its imports join each
 * round, for a comparison of two builds in the same run); BENCH_IMPORT_ONLY=1 (those rounds alone).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus, ImportPolicy, Reason } from "assignment-client";
import type { Cleanup } from "../harness/cleanup.js";
import { residentBytes } from "../harness/processes.js";
import { benchServer, log, runBench, startServerChild } from "./infra.js";

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

const IMPORT_ROUNDS = Number(env.BENCH_IMPORT_ROUNDS ?? 1);
const OTHER_SERVER = env.BENCH_IMPORT_OTHER_SERVER;
const IMPORT_ONLY = env.BENCH_IMPORT_ONLY === "1";
/** Clock ticks per second of /proc/<pid>/stat's CPU times (Linux: 100). */
const CLOCK_TICKS = 100;

/** User + system CPU seconds of a process so far, from /proc (0 once it is gone). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime (fields 14, 15)
  } catch {
    return 0;
  }
}

/** CPU seconds of this database's PostgreSQL backends (the server's connections, the import's
 * and the baseline's among them), by pid. PostgreSQL must run on this machine. */
async function backendCpu(sql: pg.Client): Promise<Map<number, number>> {
  const { rows } = await sql.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`);
  return new Map(rows.map((r) => [r.pid, cpuSeconds(r.pid)]));
}

/** CPU seconds the backends used since `before` (backends that appeared count whole). */
async function backendCpuSince(sql: pg.Client, before: Map<number, number>): Promise<number> {
  let used = 0;
  for (const [pid, now] of await backendCpu(sql)) used += now - (before.get(pid) ?? 0);
  return used;
}

/** Waits until the sequencer moved every outbox row into the event log. */
async function drainOutbox(sql: pg.Client): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    const { rows } = await sql.query<{ waiting: boolean }>(`SELECT EXISTS (SELECT 1 FROM assignment_outbox) AS waiting`);
    if (!rows[0]!.waiting) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the event outbox did not drain within 120 s");
}

interface Phase {
  seconds: number;
  peakMb: number;
  /** CPU seconds of the server process (0 for the raw COPY: no server) and of the database's backends. */
  serverCpu: number;
  dbCpu: number;
}

interface ImportRound {
  round: number;
  /** 1-minute load average before each phase. */
  load: number[];
  copy?: Phase;
  imported?: Phase;
  other?: Phase;
}

/** A phase timed, with the CPU of the server (`pid`) and of the database's backends. */
async function measured(sql: pg.Client, what: string, pid: number | undefined, f: () => Promise<void>): Promise<Phase> {
  const db = await backendCpu(sql);
  const server = pid === undefined ? 0 : cpuSeconds(pid);
  const { seconds, peakMb } = await timed(what, f);
  return {
    seconds,
    peakMb,
    serverCpu: pid === undefined ? 0 : cpuSeconds(pid) - server,
    dbCpu: await backendCpuSince(sql, db),
  };
}

/** Plain COPY of the rows into the round's raw-copy experiment, on a connection of its own. */
async function rawCopyPhase(sql: pg.Client, url: string, round: number): Promise<Phase> {
  const id = (await sql.query<{ id: number }>(`SELECT id FROM experiments WHERE key = $1`, [`raw-copy-${round}`])).rows[0]!.id;
  const copier = new pg.Client({ connectionString: url });
  await copier.connect();
  try {
    return await measured(sql, `raw COPY of ${UNITS} rows (round ${round})`, undefined, async () => {
      const copy = copier.query(copyFrom(`COPY assignments (experiment_id, unit_id, variant, version, source) FROM STDIN`));
      await pipeline(
        Readable.from(
          (function* () {
            for (let i = 0; i < UNITS; i += BATCH) {
              let chunk = "";
              for (let k = i; k < Math.min(i + BATCH, UNITS); k++) chunk += `${id}\t${unitId("u", k)}\t${k % 2}\t1\t2\n`;
              yield chunk;
            }
          })(),
        ),
        copy,
      );
    });
  } finally {
    await copier.end();
  }
}

/** ImportAssignments of the same rows through `client` into the round's experiment `key`-`round`. */
async function importPhase(
  client: ReturnType<typeof createClient<typeof ExperimentService>>,
  sql: pg.Client,
  round: number,
  pid: number,
  key: string,
): Promise<Phase> {
  const experimentKey = `${key}-${round}`;
  let result: { imported: bigint } | undefined;
  const phase = await measured(sql, `ImportAssignments ${UNITS} rows into ${experimentKey}`, pid, async () => {
    result = await client.importAssignments(
      (async function* () {
        for (let i = 0; i < UNITS; i += BATCH) {
          const rows = Array.from({ length: Math.min(BATCH, UNITS - i) }, (_, k) => ({
            experimentKey,
            unitId: unitId("u", i + k),
            variantKey: (i + k) % 2 ? "treatment" : "control",
          }));
          yield i === 0 ? { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows } : { rows };
        }
      })(),
    );
  });
  if (result?.imported !== BigInt(UNITS)) throw new Error(`imported ${result?.imported}, expected ${UNITS}`);
  return phase;
}

/** The rounds of ImportAssignments against raw COPY: each ratio, CPU per 1,000 rows, the load. */
function importReport(rounds: ImportRound[]): string[] {
  const perK = (cpu: number) => `${((cpu / UNITS) * 1e6).toFixed(1)} ms`; // CPU seconds per row ×1e6 = ms per 1,000 rows
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const hasOther = rounds.some((r) => r.other);
  const lines = [
    `ImportAssignments ÷ raw COPY of the same ${UNITS.toLocaleString("en-US")} rows, alternating rounds (outbox drained before each phase; CPU per 1,000 rows: server process / this database's PostgreSQL backends):`,
    "",
    `| round | load average | raw COPY rows/s | backends CPU | import rows/s | ÷ raw COPY | server CPU | backends CPU |${hasOther ? " other build rows/s | ÷ raw COPY | server CPU | backends CPU |" : ""}`,
    `|---|---|---|---|---|---|---|---|${hasOther ? "---|---|---|---|" : ""}`,
  ];
  for (const r of rounds) {
    const c = r.copy!;
    const i = r.imported!;
    const o = r.other;
    lines.push(
      `| ${r.round} | ${r.load.map((l) => l.toFixed(1)).join(" / ")} | ${Math.round(UNITS / c.seconds).toLocaleString("en-US")} | ${perK(c.dbCpu)} | ` +
        `${Math.round(UNITS / i.seconds).toLocaleString("en-US")} | ${(c.seconds / i.seconds).toFixed(2)} | ${perK(i.serverCpu)} | ${perK(i.dbCpu)} |` +
        (o
          ? ` ${Math.round(UNITS / o.seconds).toLocaleString("en-US")} | ${(c.seconds / o.seconds).toFixed(2)} | ${perK(o.serverCpu)} | ${perK(o.dbCpu)} |`
          : ""),
    );
  }
  lines.push("", `Median ÷ raw COPY: ${median(rounds.map((r) => r.copy!.seconds / r.imported!.seconds)).toFixed(2)}`);
  if (hasOther) lines.push(`Median ÷ raw COPY, other build: ${median(rounds.map((r) => r.copy!.seconds / r.other!.seconds)).toFixed(2)}`);
  return lines;
}

async function main(cleanup: Cleanup): Promise<void> {
  const { db, prefix, server } = await benchServer(cleanup, {
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
  const perRound = ["imported", "raw-copy", ...(OTHER_SERVER ? ["imported-other"] : [])];
  const roundKeys = Array.from({ length: IMPORT_ROUNDS }, (_, r) => perRound.map((k) => `${k}-${r + 1}`)).flat();
  for (const key of ["stream", "stream-events-off", "raw-insert", ...roundKeys]) {
    await admin.createExperiment({ key, variants, status: ExperimentStatus.RUNNING });
  }
  // Another build's server on the same database (BENCH_IMPORT_OTHER_SERVER), for its imports.
  const other = OTHER_SERVER
    ? await startServerChild(
        "other build",
        { DATABASE_URL: db.url, REDIS_URL, REDIS_PREFIX: prefix, LOG_LEVEL: "warn" },
        SERVER_NODE_ARGS,
        "server",
        OTHER_SERVER,
      )
    : undefined;
  if (other) cleanup.add("stop the other build's server", other.stop);
  const otherAdmin = other ? createClient(ExperimentService, other.address) : undefined;
  if (otherAdmin) cleanup.add("close the other build's client", async () => otherAdmin.close());
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  cleanup.add("close SQL client", () => sql.end());
  const idOf = async (key: string) => (await sql.query<{ id: number }>(`SELECT id FROM experiments WHERE key = $1`, [key])).rows[0].id;

  // --- ImportAssignments against a plain COPY of the same rows into the same table (same
  // triggers, same columns), in alternating rounds, each into experiments of its own. Before each
  // timed phase the event outbox is drained: otherwise the sequencer moves the previous phase's
  // rows (a million outbox rows after a COPY) while the next phase runs, and charges that phase.
  const runImportRounds = async (): Promise<ImportRound[]> => {
    const importRounds: ImportRound[] = [];
    for (let round = 1; round <= IMPORT_ROUNDS; round++) {
      const phases: Array<[string, () => Promise<Phase>]> = [
        ["raw COPY", () => rawCopyPhase(sql, db.url, round)],
        ["ImportAssignments", () => importPhase(admin, sql, round, server.pid, "imported")],
      ];
      if (other) phases.push(["ImportAssignments, other build", () => importPhase(otherAdmin!, sql, round, other.pid, "imported-other")]);
      if (round % 2 === 0) phases.reverse();
      const result: ImportRound = { round, load: [] };
      for (const [name, run] of phases) {
        await drainOutbox(sql);
        result.load.push(os.loadavg()[0]!);
        const p = await run();
        if (name === "raw COPY") result.copy = p;
        else if (name === "ImportAssignments") result.imported = p;
        else result.other = p;
      }
      importRounds.push(result);
    }
    return importRounds;
  };
  if (IMPORT_ONLY) {
    process.stdout.write(`${importReport(await runImportRounds()).join("\n")}\n`);
    return;
  }

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

  const importRounds = await runImportRounds();
  const rawCopy = importRounds[0]!.copy!;
  const imported = importRounds[0]!.imported!;

  // --- baseline: plain COPY … TO STDOUT of the same rows, in unit id order, read by one client
  const importedId = await idOf("imported-1");
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
    for await (const r of admin.exportAssignments({ experimentKey: "imported-1" })) n += r.unitIds.length;
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
    `| ImportAssignments (round 1) | ${f(rate(imported.seconds))} | raw COPY ${f(rate(rawCopy.seconds))} | ${(rawCopy.seconds / imported.seconds).toFixed(2)} | ≥ 0.7 | ${imported.peakMb.toFixed(0)} MB |`,
    `| ExportAssignments | ${f(rate(exported.seconds))} | raw COPY TO ${f(rate(rawExport.seconds))} | ${(rawExport.seconds / exported.seconds).toFixed(2)} | ≥ 500,000 | ${exported.peakMb.toFixed(0)} MB |`,
    "",
    `Server resident memory, peak over the whole run: ${memory.peak().toFixed(0)} MB (target ≤ 300 MB).`,
    "",
    ...importReport(importRounds),
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

await runBench(main);
