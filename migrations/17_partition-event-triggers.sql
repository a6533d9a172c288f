-- Up Migration

-- The event log's triggers (migration 8) on every partition of assignments as well, so that a
-- statement naming a partition writes the outbox as one naming the partitioned table does.
--
-- Why: an import COPYs its rows straight into the partitions, each partition's rows in one COPY
-- (src/store/copy-import.ts, BENCHMARKS.md "Partitioned vs unpartitioned assignments"). A COPY into
-- the partitioned table itself stores rows one at a time: PostgreSQL (15) gives up its batched
-- insert into a partitioned table that has a trigger with a transition table (copyfrom.c), and
-- the outbox trigger has one; its database CPU per row was 1.1-1.2 times the unpartitioned
-- table's. A COPY into a partition batches again.
--
-- No row gets two events: a statement-level trigger fires only for the table the statement names,
-- so a statement on the partitioned table fires its triggers (whose transition tables hold the
-- rows of every partition) and none of the partitions', and one on a partition fires only that
-- partition's. The import names partitions only when every partition has the same INSERT triggers
-- as the partitioned table; otherwise it COPYs into the partitioned table, as before.
--
-- The partitions of an in-place upgrade not swapped yet (migration 7's assignments_partitioned)
-- get them too: they become assignments' partitions at the swap (src/store/partition-move.ts).
-- A table that is not partitioned (the old table during that upgrade) is left alone.
DO $$
DECLARE
  part regclass;
BEGIN
  FOR part IN
    SELECT i.inhrelid::regclass FROM pg_inherits i
     WHERE i.inhparent IN (SELECT oid FROM pg_class WHERE oid IN (to_regclass('assignments'), to_regclass('assignments_partitioned'))
                                                        AND relkind = 'p')
  LOOP
    EXECUTE format('CREATE TRIGGER assignment_events_inserted AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION assignment_events_inserted()', part);
    EXECUTE format('CREATE TRIGGER assignment_events_updated AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION assignment_events_updated()', part);
    EXECUTE format('CREATE TRIGGER assignment_events_deleted AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION assignment_events_deleted()', part);
  END LOOP;
END $$;

-- Down Migration
DO $$
DECLARE
  part regclass;
BEGIN
  FOR part IN
    SELECT i.inhrelid::regclass FROM pg_inherits i
     WHERE i.inhparent IN (SELECT oid FROM pg_class WHERE oid IN (to_regclass('assignments'), to_regclass('assignments_partitioned'))
                                                        AND relkind = 'p')
  LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS assignment_events_inserted ON %s', part);
    EXECUTE format('DROP TRIGGER IF EXISTS assignment_events_updated ON %s', part);
    EXECUTE format('DROP TRIGGER IF EXISTS assignment_events_deleted ON %s', part);
  END LOOP;
END $$;
