"""Prometheus metrics of the notifications module (see `domain_events.metrics` for multiprocess)."""

from prometheus_client import Counter

EMAILS = Counter("shelfwise_emails", "E-mails to customers handed to the mail server, by outcome.", ["outcome"])
