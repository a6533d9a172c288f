-- Bytes per stored assignment and per primary-key entry (docs/capacity.md "Measurements").
-- Run against an empty database the server has migrated (assignments partitioned, 16 partitions):
--   psql "$DATABASE_URL" -f scripts/capacity-measure.sql
-- 20 experiments x 50,000 units = 1,000,000 rows, unit ids UUID text (36 characters), inserted in
-- random order (as page loads store them, so the index's leaves split as they do in production).
INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
SELECT e, u, (random() * 2)::int, 1, 1
  FROM generate_series(1, 20) e, (SELECT gen_random_uuid()::text AS u FROM generate_series(1, 50000)) units
 ORDER BY random();
VACUUM ANALYZE assignments;
CREATE EXTENSION IF NOT EXISTS pgstattuple;
SELECT (SELECT count(*) FROM assignments) AS rows,
       sum(pg_relation_size(h.inhrelid)) AS heap_bytes,
       sum(pg_relation_size(i.indexrelid)) AS pkey_bytes,
       sum(pg_total_relation_size(h.inhrelid)) AS total_bytes
  FROM pg_inherits h JOIN pg_index i ON i.indrelid = h.inhrelid
 WHERE h.inhparent = 'assignments'::regclass;
SELECT sum(tuple_len) AS tuple_bytes, sum(tuple_count) AS tuples,
       round(avg(tuple_percent)::numeric, 1) AS tuple_pct, round(avg(free_percent)::numeric, 1) AS free_pct
  FROM pg_inherits h, LATERAL pgstattuple(h.inhrelid) WHERE h.inhparent = 'assignments'::regclass;
SELECT round(avg(avg_leaf_density)::numeric, 1) AS leaf_density_pct
  FROM pg_inherits h JOIN pg_index i ON i.indrelid = h.inhrelid, LATERAL pgstatindex(i.indexrelid)
 WHERE h.inhparent = 'assignments'::regclass;
