-- Up Migration

-- Per-unit attributes of a cohort's units (UploadCohortRequest.unit_attributes), for the
-- targeting conditions of its ASSIGN and WARM jobs; NULL for a unit uploaded without any.
ALTER TABLE cohorts ADD COLUMN has_attributes boolean NOT NULL DEFAULT false;
ALTER TABLE cohort_members ADD COLUMN attributes jsonb;
ALTER TABLE cohort_uploads ADD COLUMN attributes jsonb;

-- Down Migration
ALTER TABLE cohort_uploads DROP COLUMN attributes;
ALTER TABLE cohort_members DROP COLUMN attributes;
ALTER TABLE cohorts DROP COLUMN has_attributes;
