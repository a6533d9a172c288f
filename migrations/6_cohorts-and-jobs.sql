-- Up Migration

-- Named lists of unit ids (CohortService), which jobs run over.
CREATE TABLE cohorts (
  id          serial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  unit_type   text NOT NULL,
  size        bigint NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL
);

-- A cohort's ids, each once, numbered 0..size-1 in upload order: a job's chunk is a range of
-- positions, found without a scan. No foreign key: deleting a cohort deletes its members itself.
CREATE TABLE cohort_members (
  cohort_id  integer NOT NULL,
  position   bigint NOT NULL,
  unit_id    text NOT NULL,
  PRIMARY KEY (cohort_id, position)
);

-- Ids of uploads in progress (not in any transaction, so that an upload holds no connection
-- between its messages); moved into cohort_members in one transaction when the upload ends.
CREATE UNLOGGED TABLE cohort_uploads (
  upload_id   uuid NOT NULL,
  position    bigint NOT NULL,
  unit_id     text NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cohort_uploads_upload ON cohort_uploads (upload_id);

-- Jobs (JobService). pg-boss (its own schema, pgboss) queues and runs their chunks; this table
-- is what a job is and how far it got.
CREATE TABLE jobs (
  id               uuid PRIMARY KEY,
  kind             text NOT NULL,
  spec             jsonb NOT NULL,
  state            text NOT NULL, -- queued, running, done, failed, cancelled
  cohort_id        integer,
  total_units      bigint NOT NULL,
  processed_units  bigint NOT NULL DEFAULT 0,
  enrolled         bigint NOT NULL DEFAULT 0,
  chunks           integer NOT NULL,
  chunks_done      integer NOT NULL DEFAULT 0,
  error            text,
  created_by       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz
);
CREATE INDEX jobs_created ON jobs (created_at DESC);

-- The checkpoint: a chunk finished once (a chunk run again after a crash adds nothing to the
-- counts, and assignment is sticky, so it stores nothing new either).
CREATE TABLE job_chunks (
  job_id       uuid NOT NULL,
  chunk        integer NOT NULL,
  units        integer NOT NULL,
  enrolled     integer NOT NULL,
  finished_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, chunk)
);

-- Down Migration
DROP TABLE job_chunks;
DROP TABLE jobs;
DROP TABLE cohort_uploads;
DROP TABLE cohort_members;
DROP TABLE cohorts;
