"""PostgreSQL for the test suite (`config/settings_test.py`): Django's backend, except for how the
tables are emptied after each transactional test.

Django empties them with one `TRUNCATE` of every table, which gives each of the ~45 tables and
their indexes new files: about a second of the server's time after every test that commits. A test
leaves rows in a few tables; deleting every table's rows costs milliseconds. `DELETE` checks foreign
keys and fires the audit log's append-only trigger, which `TRUNCATE` does not: with
`session_replication_role = replica` for the flush's transaction, neither happens. That setting
needs a superuser (the tests connect as `postgres`); as any other role the flush truncates, as
Django does. Either way every table is empty afterwards, but for two.

Those two are the content types and permissions. After every flush Django's `post_migrate` makes
them again, the same rows from the same models, one `INSERT` at a time; kept, it finds them all in
place. (No test makes content types or permissions of its own.)
"""

from __future__ import annotations

from django.db.backends.postgresql import base, operations

KEPT = frozenset({"django_content_type", "auth_permission"})


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if not tables or reset_sequences or allow_cascade:
            return super().sql_flush(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        names = [self.quote_name(table) for table in tables if table not in KEPT]
        deletes = " ".join(f"DELETE FROM {name};" for name in names)  # noqa: S608 (quoted table names)
        return [
            "DO $flush$ BEGIN"  # noqa: S608 (quoted table names)
            " IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN"
            f" SET LOCAL session_replication_role = replica; {deletes}"
            f" ELSE TRUNCATE {', '.join(names)};"
            " END IF; END $flush$;"
        ]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
