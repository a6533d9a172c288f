-- Up Migration

-- Stored assignments are hash-partitioned by unit id (docs/capacity.md, README "Partitioned
-- assignments"): a unit's cells in every experiment live in one partition, so a page load (one unit,
-- many experiments) and an erasure (a unit everywhere) touch one partition of N; an export by
-- experiment reads every partition through its primary key, as it read one table before.
-- The number of partitions is fixed here, at install (or at this upgrade): the server passes
-- ASSIGNMENT_PARTITIONS as the setting assignment.partitions (src/store/migrations.ts); default 16.
-- Changing it later means rewriting the table.
--
-- The logical shape does not change: the same columns, the same primary key (experiment_id,
-- unit_id), the same name once the upgrade is done.
--
-- An empty table (a new installation) is replaced at once. A table holding rows is not rewritten
-- here, in the migration's one transaction (that would lock it for as long as the copy takes): the
-- new table is made beside it as assignments_partitioned, a trigger copies every change of the old
-- table into it from now on, and the servers copy the old rows over in batches of their own
-- transactions, then swap the tables in one brief transaction (src/store/partition-move.ts).
-- Until the swap the old table is the one read and written: its answers stay right throughout.
DO $$
DECLARE
  setting text := current_setting('assignment.partitions', true);
  n integer := coalesce(nullif(setting, '')::integer, 16);
  target text := 'assignments';
BEGIN
  IF n < 1 OR n > 1024 THEN
    RAISE EXCEPTION 'ASSIGNMENT_PARTITIONS must be 1..1024 (got %)', n;
  END IF;
  IF EXISTS (SELECT 1 FROM assignments) THEN
    target := 'assignments_partitioned';
  ELSE
    DROP TABLE assignments;
  END IF;
  EXECUTE format($f$
    CREATE TABLE %I (
      experiment_id integer NOT NULL,
      unit_id       text NOT NULL,
      variant       smallint NOT NULL,
      version       bigint NOT NULL,
      source        smallint NOT NULL,
      assigned_at   timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT %I PRIMARY KEY (experiment_id, unit_id)
    ) PARTITION BY HASH (unit_id)$f$, target, target || '_pkey');
  FOR i IN 0 .. n - 1 LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                   'assignments_p' || i, target, n, i);
  END LOOP;
  IF target = 'assignments' THEN
    RETURN;
  END IF;

  -- Where the batched copy has got to (keyset order of the old table's primary key); one row.
  CREATE TABLE assignments_partitioning (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    after_experiment   integer,
    after_unit         text,
    rows_copied        bigint NOT NULL DEFAULT 0,
    started_at         timestamptz NOT NULL DEFAULT now()
  );
  INSERT INTO assignments_partitioning DEFAULT VALUES;

  -- Every change of the old table, made again in the new one (same transaction, so both commit
  -- or neither). An insert or update writes the row's current values, whatever the copy did.
  CREATE FUNCTION assignments_mirror() RETURNS trigger LANGUAGE plpgsql AS $body$
  BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
      DELETE FROM assignments_partitioned WHERE experiment_id = OLD.experiment_id AND unit_id = OLD.unit_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
      INSERT INTO assignments_partitioned (experiment_id, unit_id, variant, version, source, assigned_at)
      VALUES (NEW.experiment_id, NEW.unit_id, NEW.variant, NEW.version, NEW.source, NEW.assigned_at)
      ON CONFLICT (experiment_id, unit_id) DO UPDATE
        SET variant = excluded.variant, version = excluded.version, source = excluded.source,
            assigned_at = excluded.assigned_at;
    END IF;
    RETURN NULL;
  END $body$;
  CREATE TRIGGER assignments_mirror AFTER INSERT OR UPDATE OR DELETE ON assignments
    FOR EACH ROW EXECUTE FUNCTION assignments_mirror();
  CREATE FUNCTION assignments_mirror_truncate() RETURNS trigger LANGUAGE plpgsql AS $body$
  BEGIN
    TRUNCATE assignments_partitioned;
    RETURN NULL;
  END $body$;
  CREATE TRIGGER assignments_mirror_truncate AFTER TRUNCATE ON assignments
    FOR EACH STATEMENT EXECUTE FUNCTION assignments_mirror_truncate();
END $$;

-- Down Migration
-- Back to one table (in one transaction: it locks the table while it copies).
DROP TABLE IF EXISTS assignments_partitioned;
DROP TABLE IF EXISTS assignments_partitioning;
DROP FUNCTION IF EXISTS assignments_mirror_truncate() CASCADE;
DROP FUNCTION IF EXISTS assignments_mirror() CASCADE;
ALTER TABLE assignments RENAME TO assignments_partitioned_down;
ALTER TABLE assignments_partitioned_down RENAME CONSTRAINT assignments_pkey TO assignments_partitioned_down_pkey;
CREATE TABLE assignments (
  experiment_id integer NOT NULL,
  unit_id       text NOT NULL,
  variant       smallint NOT NULL,
  version       bigint NOT NULL,
  source        smallint NOT NULL,
  assigned_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (experiment_id, unit_id)
);
INSERT INTO assignments SELECT experiment_id, unit_id, variant, version, source, assigned_at FROM assignments_partitioned_down;
DROP TABLE assignments_partitioned_down;
