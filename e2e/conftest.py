"""Fixtures of the end-to-end tests: a real browser for the admin's (see `e2e.browser`), and the
zero-setup default of `make run` in a test's own folder (see `e2e.sqlite`)."""

from e2e.browser import admin_browser, browser, screenshots  # noqa: F401
from e2e.sqlite import sqlite_env  # noqa: F401
