"""`manage.py check`: warn about handlers that some deployment ran and this code no longer has."""

from __future__ import annotations

from django.core.checks import Warning as CheckWarning
from django.core.checks import register
from django.db import DatabaseError


@register()
def orphaned_handlers(app_configs=None, **kwargs) -> list[CheckWarning]:
    from domain_events.subscribers import orphans

    try:
        found = orphans()
    except DatabaseError:
        return []  # no database yet (before the first migrate): nothing can be orphaned
    return [
        CheckWarning(
            f"Handler {o.name!r} has {o.open_deliveries} open deliveries but is no longer subscribed.",
            hint=(
                "They are kept out of claims. Subscribe the handler again to run them; otherwise they are pruned "
                "once no process has run it for ORPHAN_RETENTION."
            ),
            id="domain_events.W001",
        )
        for o in found
        # A retired handler with nothing left to run needs nobody's attention.
        if o.open_deliveries
    ]
