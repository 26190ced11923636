from django.db import migrations

# The readers' fence looks for the transactions that hold the events table's write lock (ROW
# EXCLUSIVE, which every INSERT takes before it runs, so before its rows' positions are drawn,
# and keeps until it ends), instead of every transaction that has an id. So the position can be
# the sequence's next value alone, with no function call and no transaction id taken first, and a
# transaction that writes no event no longer holds the readers back (domain_events/head.py).
POSTGRES_FORWARD = """
DROP FUNCTION IF EXISTS domain_events_fence();
CREATE FUNCTION domain_events_fence(
    OUT drawn bigint, OUT holders text[], OUT pids integer[], OUT apps text[], OUT starts timestamptz[]
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- First the last position drawn, then who may still commit one: a position is drawn only under
    -- the table's lock, so whoever drew one at or below `drawn` and has not ended still holds it.
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO drawn FROM domain_events_position_seq;
    -- Inside a transaction, pg_stat_activity is read once and kept: look again.
    PERFORM pg_stat_clear_snapshot();
    SELECT COALESCE(array_agg(l.virtualtransaction ORDER BY a.xact_start NULLS LAST, l.virtualtransaction), '{}'),
           COALESCE(array_agg(l.pid ORDER BY a.xact_start NULLS LAST, l.virtualtransaction), '{}'),
           COALESCE(array_agg(a.application_name ORDER BY a.xact_start NULLS LAST, l.virtualtransaction), '{}'),
           COALESCE(array_agg(a.xact_start ORDER BY a.xact_start NULLS LAST, l.virtualtransaction), '{}')
      INTO holders, pids, apps, starts
      FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = 'domain_events_storedevent'::regclass
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.mode = 'RowExclusiveLock' AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid();
END
$$;
ALTER TABLE domain_events_storedevent ALTER COLUMN position SET DEFAULT nextval('domain_events_position_seq');
DROP FUNCTION IF EXISTS domain_events_next_position();
"""

POSTGRES_BACKWARD = """
CREATE FUNCTION domain_events_next_position() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN nextval('domain_events_position_seq');
END
$$;
ALTER TABLE domain_events_storedevent ALTER COLUMN position SET DEFAULT domain_events_next_position();
DROP FUNCTION IF EXISTS domain_events_fence();
CREATE FUNCTION domain_events_fence(
    OUT drawn bigint, OUT xids text[], OUT pids integer[], OUT apps text[], OUT starts timestamptz[]
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO drawn FROM domain_events_position_seq;
    PERFORM pg_stat_clear_snapshot();
    SELECT COALESCE(array_agg(backend_xid::text ORDER BY xact_start NULLS LAST), '{}'),
           COALESCE(array_agg(pid ORDER BY xact_start NULLS LAST), '{}'),
           COALESCE(array_agg(application_name ORDER BY xact_start NULLS LAST), '{}'),
           COALESCE(array_agg(xact_start ORDER BY xact_start NULLS LAST), '{}')
      INTO xids, pids, apps, starts
      FROM pg_stat_activity
     WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid();
END
$$;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0013_stream_rows_updated_in_place")]

    operations = [migrations.RunPython(forward, backward)]
