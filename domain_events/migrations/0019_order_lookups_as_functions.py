"""What holds a delivery back, as two PL/pgSQL functions the executor's statements call
(`domain_events.sql`): its blocker, the first unfinished or dead delivery of the same handler and
aggregate earlier in the stream; and the first earlier event of the aggregate left without a
delivery for the handler. As sub-queries of every lock statement they were planned again on each
run, over every partition of both tables: about 0.4 ms of PostgreSQL a statement. A function's
statements keep their plan for the session; these name no partition key, so a plan made once
serves every call. A plan made while the tables were empty would scan them whole and keep doing
so as they grow: the functions run with sequential scans ruled out, so their plans probe the
indexes whatever the tables held when they were made. PostgreSQL only.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION domain_events_blocker(
    p_aggregate uuid, p_handler text, p_revision bigint, p_mine bigint[], p_tokens uuid[], p_open boolean
) RETURNS TABLE (id bigint, status varchar, next_attempt_at timestamptz)
LANGUAGE plpgsql STABLE SET enable_seqscan = off AS $$
BEGIN
    -- Left out: the statement's own rows, `p_mine`, under one of `p_tokens` (when named) and
    -- still open (when `p_open`).
    RETURN QUERY
    SELECT o.id, o.status, o.next_attempt_at
      FROM domain_events_delivery o
     WHERE o.aggregate_id = p_aggregate AND o.handler = p_handler AND o.status IN ('pending', 'failed', 'dead')
       AND o.revision < p_revision
       AND NOT (o.id = ANY(p_mine) AND (p_tokens IS NULL OR o.lease_token = ANY(p_tokens))
                AND (NOT p_open OR o.status IN ('pending', 'failed')))
     ORDER BY o.revision
     LIMIT 1;
END
$$;

CREATE OR REPLACE FUNCTION domain_events_uncovered(
    p_handler text, p_aggregate uuid, p_position bigint, p_revision bigint
) RETURNS bigint LANGUAGE plpgsql STABLE SET enable_seqscan = off AS $$
DECLARE
    found bigint;
BEGIN
    SELECT pe.id INTO found
      FROM domain_events_subscriber s JOIN domain_events_storedevent pe ON pe.aggregate_id = p_aggregate
     WHERE s.name = p_handler AND pe.position > s.covered_position AND pe.position < p_position
       AND pe.revision < p_revision AND s.event_types ? pe.type
       -- The handlers the event has deliveries for, read on the one index that leads with the
       -- event: asked with the handler too, a plan made on small tables may take the handler's
       -- index instead and read every delivery of the handler.
       AND NOT (p_handler = ANY (ARRAY(SELECT x.handler FROM domain_events_delivery x
                                        WHERE x.stored_event_id = pe.id AND x.event_recorded_at = pe.recorded_at)))
     ORDER BY pe.position
     LIMIT 1;
    RETURN found;
END
$$;
"""

BACKWARD = """
DROP FUNCTION IF EXISTS domain_events_blocker(uuid, text, bigint, bigint[], uuid[], boolean);
DROP FUNCTION IF EXISTS domain_events_uncovered(text, uuid, bigint, bigint);
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0018_next_month_made_a_week_ahead")]

    operations = [migrations.RunPython(forward, backward)]
