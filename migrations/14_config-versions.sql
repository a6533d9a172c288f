-- Up Migration

-- Namespaces and holdouts get a version, as experiments have: 1 when created, one more with every
-- change of the record (namespaces: default params, archiving, segments allocated or released;
-- holdouts: share or tags). UpdateNamespace and UpdateHoldout may name the version they read and
-- are then refused (ABORTED) when another change came first; the audit log records the versions.
ALTER TABLE namespaces ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE holdouts ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- Down Migration
ALTER TABLE holdouts DROP COLUMN version;
ALTER TABLE namespaces DROP COLUMN version;
