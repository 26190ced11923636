"""Support for the tests of every module: subprocesses, a TCP proxy, the outbox by hand.

No runtime module imports it (an import-linter contract).
"""
