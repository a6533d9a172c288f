-- Up Migration

-- A namespace records the hash version of its segments, as an experiment records that of its
-- buckets: a future version must never move the units of a namespace made under an older one.
ALTER TABLE namespaces ADD COLUMN hash_version smallint NOT NULL DEFAULT 1;

-- Down Migration
ALTER TABLE namespaces DROP COLUMN hash_version;
