-- Up Migration

-- Archived experiments and namespaces (README "Archiving"): hidden from lists unless asked for,
-- and an archived experiment answers UNKNOWN_EXPERIMENT. Nothing is ever deleted: their keys and
-- salts stay taken forever, since reusing a salt would recreate old splits.
ALTER TABLE experiments ADD COLUMN archived_at timestamptz;
ALTER TABLE namespaces ADD COLUMN archived_at timestamptz;

-- Down Migration
ALTER TABLE namespaces DROP COLUMN archived_at;
ALTER TABLE experiments DROP COLUMN archived_at;
