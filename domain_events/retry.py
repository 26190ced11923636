"""The one retry policy: a schedule of delays, each spread by a jitter, and the error text kept.

Handler deliveries (`HANDLER_RETRY_SCHEDULE`, `HANDLER_RETRY_JITTER`, or a subscription's own
schedule), position readers (the same, repeating the last step: an ordered reader never gives up)
and webhook deliveries (`WEBHOOK_RETRY_SCHEDULE`, `WEBHOOK_RETRY_JITTER`) all retry by it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# The longest error text kept on a delivery, a checkpoint or a parked event.
MAX_ERROR_LENGTH = 4000


def kept_error(text: str) -> str:
    """An error text as stored: at most `MAX_ERROR_LENGTH` characters."""
    return text[:MAX_ERROR_LENGTH]


@dataclass(frozen=True)
class RetryPolicy:
    schedule: tuple[float, ...]
    jitter: float

    @classmethod
    def of(cls, schedule: Sequence[float], jitter: float) -> RetryPolicy:
        return cls(tuple(schedule), jitter)

    def delay(self, failures: int) -> float | None:
        """Seconds to wait after the `failures`-th failure in a row; None once the schedule is spent."""
        if failures < 1 or failures > len(self.schedule):
            return None
        return self._spread(self.schedule[failures - 1])

    def delay_for_ever(self, failures: int) -> float:
        """The same, for work that never gives up: past the schedule its last step repeats."""
        steps = self.schedule or (1.0,)
        return self._spread(steps[min(max(failures, 1), len(steps)) - 1])

    def _spread(self, seconds: float) -> float:
        return seconds * random.uniform(1 - self.jitter, 1 + self.jitter)
