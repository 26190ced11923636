"""`gunicorn -c config/gunicorn.conf.py config.wsgi`: gunicorn's own lines in the format of every
other line (`LOG_FORMAT`); each request is logged once, by Django, with its correlation id."""

from config.logs import logging_config

logconfig_dict = logging_config()
