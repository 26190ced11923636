"""`gunicorn -c config/gunicorn.conf.py config.wsgi`: gunicorn's own lines in the format of every
other line (`LOG_FORMAT`); each request is logged once, by Django, with its correlation id.

The web process, like every process, hands its events on after commit (Celery messages, a NOTIFY
to the relays) and leaves its in-process handlers to the relays (`OUTBOX_RUN_ON_COMMIT`, off by
default)."""

from config.logs import logging_config

logconfig_dict = logging_config()
