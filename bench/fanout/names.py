"""Names shared by the handlers and by the processes that measure them without Django."""

FANOUT_TYPE = "bench.fanout_happened"
CELERY_FANOUT_TYPE = "bench.celery_fanout_happened"
HANDLERS_PER_EVENT = 5
ON_COMMIT_HANDLERS = tuple(f"bench.count_{i}" for i in range(1, HANDLERS_PER_EVENT + 1))
CELERY_HANDLERS = tuple(f"bench.celery_count_{i}" for i in range(1, HANDLERS_PER_EVENT + 1))
# Pads each stored payload to the size of a typical order event (~600 bytes of JSON).
NOTE = "n" * 480
# What each bench handler does, in the platform and in the raw-SQL ceilings alike.
BUMP_COUNTER = "UPDATE fanout_counter SET value = value + 1 WHERE handler = %s AND account = %s"
