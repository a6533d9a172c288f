-- Up Migration

-- Assignment events (SPEC.md "Assignment events"), as a transactional outbox.
--
-- Every statement that changes assignments or overrides writes, through the statement-level
-- triggers below and in its own transaction, one row per changed row into assignment_outbox
-- (COPY, INSERT … ON CONFLICT, UPDATE and DELETE all fire them; so does a partitioned table).
-- A sequencer (src/store/event-log.ts; one at a time across servers, under a transaction-level
-- advisory lock) moves the committed outbox rows into assignment_events, numbering them with
-- gap-free positions, and applies their deltas to assignment_counts in the same transaction.
--
-- Kinds: 1 assigned (hashing), 2 imported, 3 overwritten (by an import), 4 copied, 5 override
-- set, 6 override cleared, 7 erased (one per unit: unit type and id, no experiment). Kind 0 is a
-- removal during an erasure: it moves the counts and is not an event (the unit's ERASED is).
CREATE TABLE assignment_outbox (
  id            bigserial PRIMARY KEY,
  -- The writing transaction (its row in assignment_outbox_tx orders it).
  xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
  kind          smallint NOT NULL,
  experiment_id integer,
  unit_type     text,
  unit_id       text NOT NULL,
  variant       smallint, -- after the change (null: removed)
  source        smallint,
  old_variant   smallint, -- before the change (null: there was none)
  old_source    smallint,
  version       bigint,
  at            timestamptz NOT NULL DEFAULT now()
);

-- One row per writing transaction, stamped at its commit (a deferred trigger, the last thing the
-- transaction does): the sequencer orders transactions by that stamp. Transactions that change the
-- same unit are stamped in their commit order (the second waited for the first to commit); others
-- in the order they reached their commit, which is commit order up to the instant between the
-- stamp and the commit record.
CREATE TABLE assignment_outbox_tx (
  xid        xid8 PRIMARY KEY,
  commit_seq bigint
);
CREATE SEQUENCE assignment_commit_order;

CREATE FUNCTION assignment_outbox_committing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE assignment_outbox_tx SET commit_seq = nextval('assignment_commit_order') WHERE xid = NEW.xid;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER assignment_outbox_committing AFTER INSERT ON assignment_outbox_tx
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION assignment_outbox_committing();

-- Every trigger below starts with this: the transaction's row in assignment_outbox_tx.
CREATE FUNCTION assignment_outbox_mark() RETURNS void LANGUAGE sql AS $$
  INSERT INTO assignment_outbox_tx (xid) VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING
$$;

CREATE TABLE assignment_events (
  position      bigint PRIMARY KEY,
  kind          smallint NOT NULL,
  experiment_id integer,
  unit_type     text,
  unit_id       text NOT NULL,
  variant       smallint,
  source        smallint,
  version       bigint,
  at            timestamptz NOT NULL,
  sequenced_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assignment_events_experiment ON assignment_events (experiment_id, position);

-- The last position given; positions continue from it even when every event was pruned.
CREATE TABLE assignment_event_sequence (
  singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_position bigint NOT NULL
);
INSERT INTO assignment_event_sequence VALUES (true, 0);

-- Live counts: units per experiment, source (1 hash, 2 import, 3 override) and variant, as of the
-- last sequenced event. Adding the deltas of the outbox rows not sequenced yet gives the exact
-- count as of any snapshot (ExperimentStore.countAssignments).
CREATE TABLE assignment_counts (
  experiment_id integer NOT NULL,
  source        smallint NOT NULL,
  variant       smallint NOT NULL,
  n             bigint NOT NULL,
  PRIMARY KEY (experiment_id, source, variant)
);
INSERT INTO assignment_counts (experiment_id, source, variant, n)
  SELECT experiment_id, source, variant, count(*) FROM assignments GROUP BY experiment_id, source, variant
  UNION ALL
  SELECT experiment_id, 3, variant, count(*) FROM overrides GROUP BY experiment_id, variant;

-- A transaction may name what its writes are (set_config('assignment.event_kind', …, true)):
-- 'copy' (CopyAssignments) or 'erase' (EraseUnits); otherwise the kind follows from the row.
CREATE FUNCTION assignment_events_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM assignment_outbox_mark();
  INSERT INTO assignment_outbox (kind, experiment_id, unit_id, variant, source, version)
  SELECT CASE WHEN current_setting('assignment.event_kind', true) = 'copy' THEN 4
              WHEN n.source = 2 THEN 2 ELSE 1 END,
         n.experiment_id, n.unit_id, n.variant, n.source, n.version
    FROM new_rows n;
  RETURN NULL;
END $$;

CREATE FUNCTION assignment_events_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM assignment_outbox_mark();
  INSERT INTO assignment_outbox (kind, experiment_id, unit_id, variant, source, old_variant, old_source, version)
  SELECT 3, n.experiment_id, n.unit_id, n.variant, n.source, o.variant, o.source, n.version
    FROM new_rows n JOIN old_rows o ON o.experiment_id = n.experiment_id AND o.unit_id = n.unit_id;
  RETURN NULL;
END $$;

CREATE FUNCTION assignment_events_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM assignment_outbox_mark();
  INSERT INTO assignment_outbox (kind, experiment_id, unit_id, old_variant, old_source, version)
  SELECT 0, o.experiment_id, o.unit_id, o.variant, o.source, o.version FROM old_rows o;
  RETURN NULL;
END $$;

CREATE TRIGGER assignment_events_inserted AFTER INSERT ON assignments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION assignment_events_inserted();
CREATE TRIGGER assignment_events_updated AFTER UPDATE ON assignments
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION assignment_events_updated();
CREATE TRIGGER assignment_events_deleted AFTER DELETE ON assignments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION assignment_events_deleted();

CREATE FUNCTION override_events_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM assignment_outbox_mark();
  IF TG_OP = 'UPDATE' THEN
    INSERT INTO assignment_outbox (kind, experiment_id, unit_id, variant, source, old_variant, old_source, version)
    SELECT 5, n.experiment_id, n.unit_id, n.variant, 3, o.variant, 3, n.version
      FROM new_rows n JOIN old_rows o ON o.experiment_id = n.experiment_id AND o.unit_id = n.unit_id;
  ELSE
    INSERT INTO assignment_outbox (kind, experiment_id, unit_id, variant, source, version)
    SELECT 5, n.experiment_id, n.unit_id, n.variant, 3, n.version FROM new_rows n;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION override_events_cleared() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM assignment_outbox_mark();
  INSERT INTO assignment_outbox (kind, experiment_id, unit_id, old_variant, old_source, version)
  SELECT CASE WHEN current_setting('assignment.event_kind', true) = 'erase' THEN 0 ELSE 6 END,
         o.experiment_id, o.unit_id, o.variant, 3, o.version
    FROM old_rows o;
  RETURN NULL;
END $$;

CREATE TRIGGER override_events_inserted AFTER INSERT ON overrides
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION override_events_set();
CREATE TRIGGER override_events_updated AFTER UPDATE ON overrides
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION override_events_set();
CREATE TRIGGER override_events_deleted AFTER DELETE ON overrides
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION override_events_cleared();

-- Down Migration
DROP TRIGGER assignment_outbox_committing ON assignment_outbox_tx;
DROP TRIGGER override_events_deleted ON overrides;
DROP TRIGGER override_events_updated ON overrides;
DROP TRIGGER override_events_inserted ON overrides;
DROP FUNCTION override_events_cleared();
DROP FUNCTION override_events_set();
DROP TRIGGER assignment_events_deleted ON assignments;
DROP TRIGGER assignment_events_updated ON assignments;
DROP TRIGGER assignment_events_inserted ON assignments;
DROP FUNCTION assignment_events_deleted();
DROP FUNCTION assignment_events_updated();
DROP FUNCTION assignment_events_inserted();
DROP TABLE assignment_counts;
DROP TABLE assignment_event_sequence;
DROP TABLE assignment_events;
DROP TABLE assignment_outbox;
DROP FUNCTION assignment_outbox_mark();
DROP FUNCTION assignment_outbox_committing();
DROP SEQUENCE assignment_commit_order;
DROP TABLE assignment_outbox_tx;
