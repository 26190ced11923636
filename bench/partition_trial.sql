-- A trial of the conversion monthly partitioning needs (docs/capacity.md, "monthly partitions"):
-- not a migration, not run by anything. On a scratch database migrated by `manage.py migrate`,
-- first fill it (1,000,000 events over six months, two succeeded deliveries each):
--
--   psql -d sw_bench_partition -f bench/partition_trial.sql -v fill=1
--
-- then time the conversion in one transaction:
--
--   psql -d sw_bench_partition -v ON_ERROR_STOP=1 -f bench/partition_trial.sql
--
-- Stored events go into monthly partitions of `recorded_at`, deliveries into those of their
-- event's month (a copied `event_recorded_at`), each with a DEFAULT partition; ids and positions are
-- kept and their sequences go on above them.
\if :{?fill}
INSERT INTO domain_events_storedevent (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id, actor, payload, revision)
SELECT gen_random_uuid(), 'order.placed', 1, '00000000-0000-0000-0000-000000000001', gen_random_uuid(),
       ts, ts, 'c', gen_random_uuid(), 'system',
       jsonb_build_object('order_id', gen_random_uuid(), 'lines', jsonb_build_array(jsonb_build_object('sku','BOOK-1','title','A book','quantity',1,'unit_price','12.50')), 'total_amount','12.50','currency','USD'),
       1
  FROM (SELECT timestamptz '2026-01-01' + (n * interval '15 seconds') AS ts FROM generate_series(1, 1000000) n) s;
INSERT INTO domain_events_delivery (stored_event_id, revision, handler, event_type, tenant_id, aggregate_id, status, attempts, next_attempt_at, last_error, resolution, created_at, updated_at, completed_at)
SELECT id, 1, h, type, tenant_id, aggregate_id, 'succeeded', 1, recorded_at, '', '', recorded_at, recorded_at, recorded_at
  FROM domain_events_storedevent, unnest(ARRAY['inventory.reserve_stock_for_order','payments.capture_payment_for_order']) h;
VACUUM ANALYZE;
SELECT count(*), min(recorded_at), max(recorded_at), pg_size_pretty(pg_total_relation_size('domain_events_storedevent')) FROM domain_events_storedevent;
\else
\timing on
BEGIN;
ALTER TABLE domain_events_storedevent RENAME TO domain_events_storedevent_flat;
CREATE TABLE domain_events_storedevent (LIKE domain_events_storedevent_flat INCLUDING DEFAULTS INCLUDING IDENTITY) PARTITION BY RANGE (recorded_at);
DO $$
DECLARE m date := date '2026-01-01';
BEGIN
  WHILE m < date '2026-08-01' LOOP
    EXECUTE format('CREATE TABLE domain_events_storedevent_%s PARTITION OF domain_events_storedevent FOR VALUES FROM (%L) TO (%L)',
                   to_char(m, 'YYYY_MM'), m, m + interval '1 month');
    m := m + interval '1 month';
  END LOOP;
END $$;
CREATE TABLE domain_events_storedevent_default PARTITION OF domain_events_storedevent DEFAULT;
INSERT INTO domain_events_storedevent OVERRIDING SYSTEM VALUE SELECT * FROM domain_events_storedevent_flat;
ALTER TABLE domain_events_storedevent ADD PRIMARY KEY (id, recorded_at);
ALTER TABLE domain_events_storedevent ADD UNIQUE (event_id, recorded_at);
ALTER TABLE domain_events_storedevent ADD UNIQUE (position, recorded_at);
CREATE INDEX ON domain_events_storedevent (tenant_id, position);
CREATE INDEX ON domain_events_storedevent (type, position);
CREATE INDEX ON domain_events_storedevent (aggregate_id, position);
SELECT setval(pg_get_serial_sequence('domain_events_storedevent', 'id'), (SELECT max(id) FROM domain_events_storedevent));
DROP TABLE domain_events_storedevent_flat;
-- deliveries, by their event's month
ALTER TABLE domain_events_delivery RENAME TO domain_events_delivery_flat;
CREATE TABLE domain_events_delivery (LIKE domain_events_delivery_flat INCLUDING DEFAULTS INCLUDING IDENTITY, event_recorded_at timestamptz NOT NULL) PARTITION BY RANGE (event_recorded_at);
DO $$
DECLARE m date := date '2026-01-01';
BEGIN
  WHILE m < date '2026-08-01' LOOP
    EXECUTE format('CREATE TABLE domain_events_delivery_%s PARTITION OF domain_events_delivery FOR VALUES FROM (%L) TO (%L)',
                   to_char(m, 'YYYY_MM'), m, m + interval '1 month');
    m := m + interval '1 month';
  END LOOP;
END $$;
CREATE TABLE domain_events_delivery_default PARTITION OF domain_events_delivery DEFAULT;
INSERT INTO domain_events_delivery OVERRIDING SYSTEM VALUE
SELECT d.*, e.recorded_at FROM domain_events_delivery_flat d JOIN domain_events_storedevent e ON e.id = d.stored_event_id;
ALTER TABLE domain_events_delivery ADD PRIMARY KEY (id, event_recorded_at);
ALTER TABLE domain_events_delivery ADD UNIQUE (stored_event_id, handler, event_recorded_at);
CREATE INDEX ON domain_events_delivery (handler, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX ON domain_events_delivery (aggregate_id, handler, revision) WHERE status IN ('pending', 'failed', 'dead');
CREATE INDEX ON domain_events_delivery (completed_at) WHERE status = 'succeeded';
CREATE INDEX ON domain_events_delivery (held_by) WHERE held_by IS NOT NULL;
CREATE INDEX ON domain_events_delivery (handler, id) WHERE status = 'dead';
CREATE INDEX ON domain_events_delivery (tenant_id, id);
CREATE INDEX ON domain_events_delivery (handler, id);
CREATE INDEX ON domain_events_delivery (event_type, id);
CREATE INDEX ON domain_events_delivery (status, id) WHERE status IN ('failed', 'dead', 'skipped');
SELECT setval(pg_get_serial_sequence('domain_events_delivery', 'id'), (SELECT max(id) FROM domain_events_delivery));
DROP TABLE domain_events_delivery_flat;
COMMIT;
\timing off
SELECT count(*) FROM domain_events_delivery;
-- an insert after the migration draws the next position and id, and lands in its month
INSERT INTO domain_events_storedevent (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id, actor, payload, revision)
VALUES (gen_random_uuid(), 'order.placed', 1, gen_random_uuid(), gen_random_uuid(), now(), '2027-03-01', 'c', gen_random_uuid(), 'system', '{}', 1)
RETURNING id, position, tableoid::regclass;
SELECT count(*), max(position), (SELECT last_value FROM domain_events_position_seq) FROM domain_events_storedevent;
\endif
