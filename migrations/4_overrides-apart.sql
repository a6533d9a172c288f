-- Up Migration

-- Overrides are kept apart from stored assignments (SPEC.md "Stored assignments"): setting one
-- never changes or removes the unit's stored assignment, and clearing it makes the unit answer
-- that stored assignment again (STICKY), or be evaluated anew when it had none.
CREATE TABLE overrides (
  experiment_id integer NOT NULL REFERENCES experiments (id),
  unit_id       text NOT NULL,
  variant       smallint NOT NULL, -- the variant's id inside experiments.variants
  version       bigint NOT NULL,   -- the experiment's version the override was set at
  set_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (experiment_id, unit_id)
);

-- Until now an override replaced the unit's row in assignments (source 3, OVERRIDE) and kept no
-- record of what it replaced: the variant the unit had before is lost. Those rows become
-- overrides, and the unit has no stored assignment. While the override stands the unit answers
-- it (OVERRIDE), exactly as before; once it is cleared the unit is evaluated anew (rules 4-11 under
-- the configuration of that moment, so NEW and stored if enrolled), as clearing did before.
INSERT INTO overrides (experiment_id, unit_id, variant, version, set_at)
  SELECT experiment_id, unit_id, variant, version, assigned_at FROM assignments WHERE source = 3;
DELETE FROM assignments WHERE source = 3;
UPDATE experiments e SET override_count = (SELECT count(*) FROM overrides o WHERE o.experiment_id = e.id)
 WHERE override_count <> (SELECT count(*) FROM overrides o WHERE o.experiment_id = e.id);

-- Down Migration
-- An override replaces the stored row again (the stored variant it hid is lost, as before).
INSERT INTO assignments (experiment_id, unit_id, variant, version, source, assigned_at)
  SELECT experiment_id, unit_id, variant, version, 3, set_at FROM overrides
  ON CONFLICT (experiment_id, unit_id) DO UPDATE
    SET variant = excluded.variant, version = excluded.version, source = 3, assigned_at = excluded.assigned_at;
DROP TABLE overrides;
