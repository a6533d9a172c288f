-- Up Migration

-- The partitioned assignments table compares unit ids by their bytes (COLLATE "C"): for a new
-- installation, the table is made again, still empty, with that collation (README "Partitioned
-- assignments", BENCHMARKS.md "Partitioned vs unpartitioned assignments").
--
-- Why: an export reads one experiment ordered by unit id. Its rows are in every partition, so the
-- database merges one index scan per partition (Merge Append), comparing unit ids at every row; in
-- a collation other than C (C.UTF-8, en_US.UTF-8…) each comparison goes through strcoll, and the
-- export cost the database about 2.4 times the CPU of the unpartitioned table's single index scan.
-- With byte order the server knows the order itself: it reads each partition's index in order in
-- one statement (no merge in the database) and merges the partitions' rows (src/store/copy-export.ts).
--
-- Equality is unchanged (every collation PostgreSQL makes by default is deterministic: equal means
-- the same bytes), and so is the partition of every unit (hashing a deterministic collation hashes
-- the bytes). Only the order of unit ids changes, where the database's collation did not already
-- sort by bytes (or code points, which is the same for UTF-8): exports, job chunks and copies are
-- ordered by the bytes of the unit ids.
--
-- A table holding rows, or one being filled by the in-place upgrade (migration 7's
-- assignments_partitioned), is left as it is: changing the collation of the partition key means
-- rewriting the table, and a migrate job planned before could straddle the change of order. Such an
-- installation exports through the database's merge, correct and slower.
DO $$
DECLARE
  n integer;
  triggers text[];
  def text;
BEGIN
  IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('assignments')) IS DISTINCT FROM 'p'
     OR (SELECT c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
          WHERE a.attrelid = 'assignments'::regclass AND a.attname = 'unit_id') = 'C'
     OR EXISTS (SELECT 1 FROM assignments) THEN
    RETURN;
  END IF;
  SELECT count(*) INTO n FROM pg_inherits WHERE inhparent = 'assignments'::regclass;
  -- Its triggers (the event log's outbox, migration 8), made again on the new table.
  SELECT array_agg(pg_get_triggerdef(oid) ORDER BY tgname) INTO triggers
    FROM pg_trigger WHERE tgrelid = 'assignments'::regclass AND NOT tgisinternal;
  DROP TABLE assignments;
  CREATE TABLE assignments (
    experiment_id integer NOT NULL,
    unit_id       text COLLATE "C" NOT NULL,
    variant       smallint NOT NULL,
    version       bigint NOT NULL,
    source        smallint NOT NULL,
    assigned_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT assignments_pkey PRIMARY KEY (experiment_id, unit_id)
  ) PARTITION BY HASH (unit_id);
  FOR i IN 0 .. n - 1 LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF assignments FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                   'assignments_p' || i, n, i);
  END LOOP;
  FOREACH def IN ARRAY coalesce(triggers, '{}') LOOP
    EXECUTE def;
  END LOOP;
END $$;

-- Down Migration
-- Nothing: the table keeps its collation (migration 7's down migration makes the table again).
SELECT 1;
