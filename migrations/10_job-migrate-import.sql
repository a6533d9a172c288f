-- Up Migration

-- Cohorts uploaded with a variant column (UploadCohortSetup.with_variants): tables of (unit,
-- variant) rows, which IMPORT jobs import. `variants` lists their distinct variant keys (NULL: a
-- plain cohort of ids), so that a job is checked against its experiment without reading the rows.
ALTER TABLE cohorts ADD COLUMN variants text[];
ALTER TABLE cohort_members ADD COLUMN variant text;
ALTER TABLE cohort_uploads ADD COLUMN variant text;

-- Down Migration
ALTER TABLE cohort_uploads DROP COLUMN variant;
ALTER TABLE cohort_members DROP COLUMN variant;
ALTER TABLE cohorts DROP COLUMN variants;
