-- Up Migration

-- A namespace's default params (SPEC.md "Namespaces"): what ResolveParams answers before a
-- variant's params are laid over them. NULL: none.
ALTER TABLE namespaces ADD COLUMN default_params jsonb;

-- Holdouts (SPEC.md "Holdouts"). Their salts are claimed in `salts` like every other, so a salt
-- is unique across experiments, namespaces and holdouts.
CREATE TABLE holdouts (
  id           serial PRIMARY KEY,
  key          text NOT NULL UNIQUE,
  salt         text NOT NULL UNIQUE REFERENCES salts (salt),
  unit_type    text NOT NULL,
  hash_version smallint NOT NULL,
  share        integer NOT NULL CHECK (share BETWEEN 0 AND 10000),
  tags         text[] NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Units answered HOLDOUT, per holdout and experiment (GetHoldoutStats counts them). They are not
-- stored assignments: a held-out unit released by a lower share is enrolled anew. Erasing a unit
-- removes its rows here too.
CREATE TABLE holdout_units (
  holdout_id    integer NOT NULL,
  experiment_id integer NOT NULL,
  unit_id       text NOT NULL,
  PRIMARY KEY (holdout_id, experiment_id, unit_id)
);
CREATE INDEX holdout_units_unit ON holdout_units (unit_id);

-- Down Migration
DROP TABLE holdout_units;
DROP TABLE holdouts;
ALTER TABLE namespaces DROP COLUMN default_params;
