"""Wake relays only for events that nobody else is dispatching.

A publisher that dispatches after commit leases its deliveries (they carry its lease token), so
there is nothing for a relay to do until that lease runs out; waking every relay on every commit
would only make them scan. Deliveries without a lease (dispatch after commit turned off) are the
relays' work, and then the commit notifies them, still once per transaction.
"""

from django.db import migrations

POSTGRES_FORWARD = """
CREATE OR REPLACE FUNCTION domain_events_assign_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7246183015249174627);
    UPDATE domain_events_storedevent
       SET position = nextval('domain_events_position_seq')
     WHERE id = NEW.id;
    IF EXISTS (SELECT 1 FROM domain_events_delivery
                WHERE stored_event_id = NEW.id AND lease_token IS NULL) THEN
        PERFORM pg_notify('shelfwise_outbox', '');
    END IF;
    RETURN NULL;
END
$$;
"""

POSTGRES_BACKWARD = """
CREATE OR REPLACE FUNCTION domain_events_assign_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7246183015249174627);
    UPDATE domain_events_storedevent
       SET position = nextval('domain_events_position_seq')
     WHERE id = NEW.id;
    PERFORM pg_notify('shelfwise_outbox', '');
    RETURN NULL;
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
    dependencies = [("domain_events", "0002_commit_order_position")]

    operations = [migrations.RunPython(forward, backward)]
