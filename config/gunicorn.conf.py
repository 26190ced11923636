"""`gunicorn -c config/gunicorn.conf.py config.wsgi`: gunicorn's own lines in the format of every
other line (`LOG_FORMAT`); each request is logged once, by Django, with its correlation id.

The web process, as the Procfile and the systemd unit start it, hands its events on after commit
(Celery messages, a NOTIFY to the relays) and leaves its in-process handlers to the relays:
`OUTBOX_RUN_ON_COMMIT` is false unless the environment says otherwise."""

import os

from config.logs import logging_config

logconfig_dict = logging_config()
raw_env = [f"OUTBOX_RUN_ON_COMMIT={os.environ.get('OUTBOX_RUN_ON_COMMIT', 'false')}"]
