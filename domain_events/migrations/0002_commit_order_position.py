"""Assign `position` at commit time, in commit order, and wake relays once per transaction.

PostgreSQL: a deferred constraint trigger runs just before commit; it takes a transaction-level
advisory lock (held until the commit is visible) and numbers the transaction's events from a
sequence. So a transaction that commits later always gets higher positions than one that committed
before it, and a reader tracking `position` can never skip an event that was still in flight. The
same trigger sends a NOTIFY, which PostgreSQL folds into one per transaction.

SQLite (the zero-setup `make run`) runs one writer at a time, so insertion order is commit order.
"""

from django.db import migrations

POSTGRES_FORWARD = """
CREATE SEQUENCE domain_events_position_seq AS bigint;
CREATE FUNCTION domain_events_assign_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7246183015249174627);
    UPDATE domain_events_storedevent
       SET position = nextval('domain_events_position_seq')
     WHERE id = NEW.id;
    PERFORM pg_notify('shelfwise_outbox', '');
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER domain_events_assign_position
    AFTER INSERT ON domain_events_storedevent
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION domain_events_assign_position();
"""

POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS domain_events_assign_position ON domain_events_storedevent;
DROP FUNCTION IF EXISTS domain_events_assign_position();
DROP SEQUENCE IF EXISTS domain_events_position_seq;
"""

SQLITE_FORWARD = """
CREATE TRIGGER domain_events_assign_position AFTER INSERT ON domain_events_storedevent
BEGIN
    UPDATE domain_events_storedevent SET position = NEW.id WHERE id = NEW.id;
END;
"""

SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS domain_events_assign_position;"


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)
    else:
        raise RuntimeError(f"no commit-order position for database vendor {vendor!r}")


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    schema_editor.execute(POSTGRES_BACKWARD if vendor == "postgresql" else SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
