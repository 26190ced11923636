"""End-to-end tests across modules: HTTP or events in, real relays and Celery workers, what users see out.

They sit above every module (like config), so they may use any of them; nothing imports them.
"""
