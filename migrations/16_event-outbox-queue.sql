-- Up Migration

-- The outbox tables are queues: every sequencer step deletes all the rows it moves, so after a
-- large write (an import, a million-row StreamAssign) they are mostly dead pages until VACUUM.
-- The live-counts query (ExperimentStore.countAssignments, GetExperimentStats) and the
-- sequencer's "anything waiting?" check read them whole: measured on an empty outbox bloated to
-- 28 MB by 310,000 changes, the planner chose parallel sequential scans, and starting their
-- workers on a busy machine cost 100 to 300 ms a call (the scans themselves: 4 ms).
-- So: no parallel workers for these tables, and autovacuum as soon as 10,000 rows are dead
-- (instead of 20 % of the table), without cost-based pauses, so the dead pages are removed (and
-- the empty table truncated) within seconds of a large write.
ALTER TABLE assignment_outbox SET (
  parallel_workers = 0,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 10000,
  autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE assignment_outbox_tx SET (
  parallel_workers = 0,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_cost_delay = 0
);

-- Down Migration
ALTER TABLE assignment_outbox RESET (parallel_workers, autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay);
ALTER TABLE assignment_outbox_tx RESET (parallel_workers, autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay);
