"""`rotate_field_encryption`: every value of every encrypted field, written again under the first
key of `FIELD_ENCRYPTION_KEYS`."""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from core.fields import REENCRYPTORS, TOKEN_PREFIX, EncryptedTextField, encrypt, reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS, so that the older"
        " keys (and the SECRET_KEY-derived one) can then be dropped. Safe to run again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options) -> None:
        """Go through each encrypted column in primary-key batches, one transaction per batch, so
        that a stop halfway leaves every value readable and a second run finishes the job."""
        total = 0
        for model in apps.get_models():
            for field in model._meta.concrete_fields:
                if isinstance(field, EncryptedTextField):
                    try:
                        count = self._rotate_column(model, field, batch_size)
                    except ImproperlyConfigured as exc:
                        raise CommandError(f"{model._meta.label}.{field.name}: {exc}") from exc
                    self.stdout.write(f"{model._meta.label}.{field.name}: {count} re-encrypted")
                    total += count
        for name, reencrypt_all in REENCRYPTORS.items():
            try:
                count = reencrypt_all()
            except ImproperlyConfigured as exc:
                raise CommandError(f"{name}: {exc}") from exc
            self.stdout.write(f"{name}: {count} re-encrypted")
            total += count
        self.stdout.write(self.style.SUCCESS(f"{total} values re-encrypted under the first key."))

    def _rotate_column(self, model, field, batch_size: int) -> int:
        q = connection.ops.quote_name
        table, pk, column = q(model._meta.db_table), q(model._meta.pk.column), q(field.column)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        count, last = 0, None
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                after = "" if last is None else f"WHERE {pk} > %s"
                # Names from the model; the bounds are parameters.
                cursor.execute(
                    f"SELECT {pk}, {column} FROM {table} {after} ORDER BY {pk} LIMIT %s{lock}",  # noqa: S608
                    [last, batch_size] if last is not None else [batch_size],
                )
                rows = cursor.fetchall()
                for key, value in rows:
                    if value is None:
                        continue
                    # A value still in clear (written before its field was encrypted) is encrypted now.
                    new = reencrypt(value) if value.startswith(TOKEN_PREFIX) else encrypt(value)
                    cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [new, key])  # noqa: S608
                    count += 1
            if len(rows) < batch_size:
                return count
            last = rows[-1][0]
