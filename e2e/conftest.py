"""Fixtures of the end-to-end tests: a real browser for the admin's (see `e2e.browser`)."""

from e2e.browser import admin_browser, browser, screenshots  # noqa: F401
