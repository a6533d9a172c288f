-- Up Migration

-- How far each event sink (src/sinks/event-publisher.ts) has published: the last position the
-- engine acknowledged. Written by the lease holder only, never backwards; pruning keeps every
-- event after the lowest of them (a sink that stopped for good is removed with DELETE).
CREATE TABLE assignment_event_sinks (
  name       text PRIMARY KEY,
  position   bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE assignment_event_sinks;
