-- Up Migration

-- The audit log: one row per successful administrative change, written by the change's own
-- transaction (src/store/audit-log.ts recordChange), so a change that fails leaves no row and a
-- row always stands for a committed change. Refused calls never reach it (the server log has them).
CREATE TABLE audit_log (
  id             bigserial PRIMARY KEY,
  -- The transaction's time on the database server (now()), not the caller's clock.
  at             timestamptz NOT NULL DEFAULT now(),
  token_name     text NOT NULL,
  token_role     text NOT NULL,
  rpc            text NOT NULL,  -- e.g. 'UpdateExperiment'
  object_kind    text NOT NULL,  -- 'experiment' or 'namespace'
  object_key     text NOT NULL,
  version_before bigint,         -- null: the object had no version before (created) or has none
  version_after  bigint,
  -- {"<field>": {"before": <json>, "after": <json>}, ...}: values in full (params included), or
  -- counts where the change is about units (overrides, imports, copies, erasures): never unit ids.
  changes        jsonb NOT NULL
);
CREATE INDEX audit_log_object ON audit_log (object_kind, object_key, id);
CREATE INDEX audit_log_token ON audit_log (token_name, id);
CREATE INDEX audit_log_at ON audit_log (at);

-- Every version an experiment ever had, as it was (GetExperiment with a version reads it): written
-- with the audit row of the change that made the version. An experiment's row keeps only its
-- current state.
CREATE TABLE experiment_versions (
  experiment_id integer NOT NULL,
  version       bigint NOT NULL,
  -- The experiment as GetExperiment answered it at that version (src/store/audit-log.ts).
  snapshot      jsonb NOT NULL,
  PRIMARY KEY (experiment_id, version)
);

-- Experiments made before this migration: their current version is known, the earlier ones are not.
INSERT INTO experiment_versions (experiment_id, version, snapshot)
SELECT e.id, e.version, jsonb_build_object(
    'key', e.key, 'salt', e.salt, 'unitType', e.unit_type, 'hashVersion', e.hash_version,
    'variants', e.variants, 'rollout', e.rollout, 'status', e.status,
    'defaultVariant', e.default_variant, 'winner', e.winner, 'tags', to_jsonb(e.tags),
    'description', e.description, 'namespaceKey', n.key,
    'segmentCount', (SELECT count(*) FROM namespace_segments s WHERE s.experiment_id = e.id),
    'version', e.version::text, 'createdAt', e.created_at, 'updatedAt', e.updated_at)
  FROM experiments e LEFT JOIN namespaces n ON n.id = e.namespace_id;

-- Down Migration
DROP TABLE experiment_versions;
DROP TABLE audit_log;
