-- Up Migration

-- Targeting conditions (SPEC.md rule 8): a CEL expression over the call's attributes, checked by
-- the server when saved; '' when the experiment targets every unit. Older rows target everyone.
ALTER TABLE experiments ADD COLUMN condition text NOT NULL DEFAULT ''
  CONSTRAINT experiments_condition_length CHECK (octet_length(condition) <= 4096);

-- Down Migration
ALTER TABLE experiments DROP COLUMN condition;
