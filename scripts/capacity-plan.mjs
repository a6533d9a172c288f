#!/usr/bin/env node
/**
 * Recomputes the capacity plan of docs/capacity.md from its inputs: `node scripts/capacity-plan.mjs`
 * prints the plan as Markdown. Every input is either measured on the development machine (the
 * command is in docs/capacity.md) or an assumption about the traffic, named as such; change one with
 * `--name=value` (e.g. `--dailyActiveUnits=20000000 --partitions=128`) and the plan follows.
 */

export const INPUTS = {
  // ---- the target (issue: 100,000,000 units x 50 experiments; 50,000 page loads/s of 1 unit x 20)
  units: 100_000_000,
  experimentsPerUnit: 50,
  pageLoadsPerSecond: 50_000,
  experimentsPerPageLoad: 20,

  // ---- measured here (docs/capacity.md "Measurements")
  /** PostgreSQL heap bytes per stored assignment (pg_relation_size over the partitions / rows). */
  heapBytesPerRow: 101.2,
  /** Primary-key bytes per stored assignment (random insert order, 70% leaf density). */
  indexBytesPerRow: 88.0,
  /** pg_total_relation_size / rows (heap + index + free-space and visibility maps). */
  totalBytesPerRow: 189.8,
  /** Redis used_memory per cached assignment (INFO memory delta over 1,000,000 keys, with TTL). */
  redisBytesPerEntry: 176.9,
  /** Redis GETs per second, one Redis process (one core), pipelined (redis-benchmark). */
  redisCommandsPerSecond: 130_890,
  /** Stored and cached cells a server process answers per second, warm (AssignUnit 1x10 at 64 in
   * flight: 9,994 calls/s = 99,936 cells/s; BENCHMARKS.md throughput). One process is one core. */
  serverWarmCellsPerCore: 99_936,
  /** Rows per second the page-load INSERT path stored with both cores of this machine shared by two
   * server processes, PostgreSQL and the load generator (BENCHMARKS.md: AssignUnit 1x10 cold,
   * WORKERS=2, 64 in flight: 18,759 cells/s). */
  primaryInsertRowsPer2Cores: 18_759,
  /** Page-load reads (1 unit x 20 experiments) per second that reached PostgreSQL, store level, 8 in
   * flight, on this machine's 2 shared cores (BENCHMARKS.md, partitioned, median). */
  postgresPageReadsPer2Cores: 979,

  // ---- assumptions about the traffic (not measurable here; change them)
  /** Units that load a page on a given day (the cache's TTL is one day). */
  dailyActiveUnits: 10_000_000,
  /** Share of page-load cells answered by the in-process cache (a server's 2,000,000 entries). */
  memoryHitRatio: 0.5,
  /** Share of page loads with a cell in neither cache (first visit of the day, expired entry). */
  postgresReadShare: 0.05,
  /** Load at which a component counts as full (headroom for peaks and failover). */
  targetUtilization: 0.6,
  /** Partitions of assignments (ASSIGNMENT_PARTITIONS). */
  partitions: 64,
  /** Read replicas (each a full copy). */
  replicas: 2,
};

export function plan(i) {
  const rows = i.units * i.experimentsPerUnit;
  const cellsPerSecond = i.pageLoadsPerSecond * i.experimentsPerPageLoad;
  const tableBytes = rows * i.totalBytesPerRow;
  const cachedCells = i.dailyActiveUnits * i.experimentsPerPageLoad;
  const redisBytes = cachedCells * i.redisBytesPerEntry;
  // One MGET per experiment a page load's cells miss in memory (keys grouped by experiment).
  const redisCommands = cellsPerSecond * (1 - i.memoryHitRatio);
  const redisProcesses = Math.ceil(redisCommands / (i.redisCommandsPerSecond * i.targetUtilization));
  const serverCores = Math.ceil(cellsPerSecond / (i.serverWarmCellsPerCore * i.targetUtilization));
  const postgresReads = i.pageLoadsPerSecond * i.postgresReadShare;
  const postgresReadCores = Math.ceil(postgresReads / ((i.postgresPageReadsPer2Cores / 2) * i.targetUtilization));
  // Launch of a new experiment on every page: every unit is new to it, so each page load stores one row.
  const launchRows = i.pageLoadsPerSecond;
  const primaryWriteCores = Math.ceil(launchRows / ((i.primaryInsertRowsPer2Cores / 2) * i.targetUtilization));
  return {
    rows,
    cellsPerSecond,
    tableBytes,
    withReplicasBytes: tableBytes * (1 + i.replicas),
    partitionRows: rows / i.partitions,
    partitionBytes: tableBytes / i.partitions,
    cachedCells,
    redisBytes,
    redisCommands,
    redisProcesses,
    serverCores,
    postgresReads,
    postgresReadCores,
    launchRows,
    primaryWriteCores,
  };
}

const GB = 1e9;
const fmt = (n, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });

export function markdown(i, p) {
  return [
    "| quantity | value | arithmetic |",
    "|---|---:|---|",
    `| stored assignments | ${fmt(p.rows)} | ${fmt(i.units)} units × ${i.experimentsPerUnit} experiments |`,
    `| cells answered per second | ${fmt(p.cellsPerSecond)} | ${fmt(i.pageLoadsPerSecond)} page loads/s × ${i.experimentsPerPageLoad} |`,
    `| PostgreSQL table + index | ${fmt(p.tableBytes / GB)} GB | rows × ${i.totalBytesPerRow} B (heap ${i.heapBytesPerRow} + index ${i.indexBytesPerRow} + maps) |`,
    `| with ${i.replicas} replicas | ${fmt(p.withReplicasBytes / GB)} GB | × ${1 + i.replicas} copies |`,
    `| one of ${i.partitions} partitions | ${fmt(p.partitionRows)} rows, ${fmt(p.partitionBytes / GB, 1)} GB | ÷ ${i.partitions} |`,
    `| cached assignments (Redis) | ${fmt(p.cachedCells)} | ${fmt(i.dailyActiveUnits)} daily active units × ${i.experimentsPerPageLoad} cells asked |`,
    `| Redis memory | ${fmt(p.redisBytes / GB, 1)} GB | × ${i.redisBytesPerEntry} B per entry |`,
    `| Redis commands per second | ${fmt(p.redisCommands)} | cells/s × (1 − ${i.memoryHitRatio} in-process hits), one MGET per experiment |`,
    `| Redis processes (cluster primaries) | ${p.redisProcesses} | ÷ (${fmt(i.redisCommandsPerSecond)}/s × ${i.targetUtilization}) |`,
    `| server processes (cores) | ${p.serverCores} | cells/s ÷ (${fmt(i.serverWarmCellsPerCore)} cells/s per core × ${i.targetUtilization}) |`,
    `| page loads reaching PostgreSQL | ${fmt(p.postgresReads)}/s | × ${i.postgresReadShare} |`,
    `| PostgreSQL cores for those reads (replicas) | ${p.postgresReadCores} | ÷ (${fmt(i.postgresPageReadsPer2Cores / 2)}/s per core × ${i.targetUtilization}) |`,
    `| rows written at a launch (new experiment on every page) | ${fmt(p.launchRows)}/s | every page load stores its unit's row |`,
    `| primary cores for that | ${p.primaryWriteCores} | ÷ (${fmt(i.primaryInsertRowsPer2Cores / 2)} rows/s per core × ${i.targetUtilization}) |`,
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const inputs = { ...INPUTS };
  for (const arg of process.argv.slice(2)) {
    const m = /^--(\w+)=(.+)$/.exec(arg);
    if (!m || !(m[1] in inputs) || !Number.isFinite(Number(m[2]))) {
      console.error(`unknown or bad argument ${arg}; inputs: ${Object.keys(inputs).join(", ")}`);
      process.exit(2);
    }
    inputs[m[1]] = Number(m[2]);
  }
  console.log(markdown(inputs, plan(inputs)));
}
