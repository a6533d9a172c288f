-- Up Migration

-- Salts are unique across experiments AND namespaces (SPEC.md): one table holds them all.
CREATE TABLE salts (
  salt  text PRIMARY KEY,
  owner text NOT NULL -- 'experiment:<key>' or 'namespace:<key>'
);

CREATE TABLE namespaces (
  id         serial PRIMARY KEY,
  key        text NOT NULL UNIQUE,
  salt       text NOT NULL UNIQUE REFERENCES salts (salt),
  unit_type  text NOT NULL,
  segments   integer NOT NULL CHECK (segments BETWEEN 1 AND 100000),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE experiments (
  id              serial PRIMARY KEY,
  key             text NOT NULL UNIQUE,
  salt            text NOT NULL UNIQUE REFERENCES salts (salt),
  unit_type       text NOT NULL,
  hash_version    smallint NOT NULL,
  -- [{"id": 0, "key": "control", "weight": 5000, "params": {...}}, ...] in evaluation order;
  -- "id" is what assignments.variant records, never reused.
  variants        jsonb NOT NULL,
  rollout         integer NOT NULL CHECK (rollout BETWEEN 0 AND 10000),
  status          smallint NOT NULL, -- assignment.v1.ExperimentStatus
  default_variant text,
  winner          text,
  tags            text[] NOT NULL DEFAULT '{}',
  description     text NOT NULL DEFAULT '',
  namespace_id    integer REFERENCES namespaces (id),
  override_count  integer NOT NULL DEFAULT 0,
  -- Bumped when stored assignments change under the caches (overrides, overwriting imports):
  -- cache keys carry it, so every cached value of an older generation stops being read.
  cache_generation integer NOT NULL DEFAULT 0,
  version         bigint NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Only allocated segments have a row; a free segment has none.
CREATE TABLE namespace_segments (
  namespace_id  integer NOT NULL REFERENCES namespaces (id),
  segment       integer NOT NULL,
  experiment_id integer NOT NULL REFERENCES experiments (id),
  PRIMARY KEY (namespace_id, segment)
);
CREATE INDEX namespace_segments_experiment ON namespace_segments (experiment_id);

-- One row per (experiment, unit). No foreign key: experiments are never deleted, and a
-- per-row check would cost the bulk inserts a third of their speed.
CREATE TABLE assignments (
  experiment_id integer NOT NULL,
  unit_id       text NOT NULL,
  variant       smallint NOT NULL, -- the variant's id inside experiments.variants
  version       bigint NOT NULL,   -- the experiment's version when assigned
  source        smallint NOT NULL, -- assignment.v1.Source: 1 hash, 2 import, 3 override
  assigned_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (experiment_id, unit_id)
);

-- Bumped by every configuration change; servers compare it to notice changes they missed.
CREATE TABLE config_epoch (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  epoch     bigint NOT NULL
);
INSERT INTO config_epoch VALUES (true, 0);

-- Identifies this database in cache keys, so a cache that outlives a database (restored,
-- recreated) never answers for the new one.
CREATE TABLE installation (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  id        text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', '')
);
INSERT INTO installation DEFAULT VALUES;

-- Down Migration
DROP TABLE installation;
DROP TABLE config_epoch;
DROP TABLE assignments;
DROP TABLE namespace_segments;
DROP TABLE experiments;
DROP TABLE namespaces;
DROP TABLE salts;
