from django.db import migrations

# One sequencer run as one statement (domain_events/sequencer.py, sql.SEQUENCE_RUN), so that a run
# costs one round trip and its lock is never held while the client is away. The lock comes first;
# the numbering statement then takes its snapshot (a volatile function's statements each get a new
# one under READ COMMITTED), so it sees everything the previous run committed. The numbering
# statement is sql.SEQUENCE as of this migration, with the limit as a parameter; it looks rows up
# by key only, so index access is forced whatever the statistics say.
POSTGRES_FORWARD = """
CREATE FUNCTION domain_events_sequence(_batch integer, _channel text, _payload text) RETURNS integer
    LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    _numbered integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7246183015249174627);
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

POSTGRES_BACKWARD = "DROP FUNCTION IF EXISTS domain_events_sequence(integer, text, text);"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("domain_events", "0006_sequencer_holds_subscribers_checkpoints"),
    ]

    operations = [migrations.RunPython(forward, backward)]
