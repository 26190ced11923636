from django.db import migrations

# A sequencer run for relays: like domain_events_sequence (migration 0007), but a relay that finds
# another run under way goes on with its pass instead of queueing behind it (returns -1). The run
# under way numbers whatever had committed when it started; anything later wakes the relays again.
# Publishers keep the waiting run: their own events must be numbered before they run them.
POSTGRES_FORWARD = """
CREATE FUNCTION domain_events_sequence_unless_busy(_batch integer, _channel text, _payload text) RETURNS integer
    LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    _numbered integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7246183015249174627) THEN
        RETURN -1;
    END IF;
    WITH todo AS MATERIALIZED (
        SELECT id FROM domain_events_storedevent WHERE position IS NULL ORDER BY id LIMIT _batch
    ), numbered AS MATERIALIZED (
        SELECT id, nextval('domain_events_position_seq') AS position FROM todo ORDER BY id
    )
    UPDATE domain_events_storedevent e SET position = numbered.position FROM numbered WHERE e.id = numbered.id;
    GET DIAGNOSTICS _numbered = ROW_COUNT;
    IF _numbered > 0 THEN
        PERFORM pg_notify(_channel, _payload);
    END IF;
    RETURN _numbered;
END
$$;
"""

POSTGRES_BACKWARD = "DROP FUNCTION IF EXISTS domain_events_sequence_unless_busy(integer, text, text);"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("domain_events", "0008_admin_lists_indexes"),
    ]

    operations = [migrations.RunPython(forward, backward)]
