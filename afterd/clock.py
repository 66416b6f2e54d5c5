"""The one module that reads the clock (design §10): everything else takes `now` as an argument."""

import time
from datetime import datetime, timezone


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def epoch_s() -> float:
    """The current wall-clock time in seconds since the epoch."""
    return time.time()


def monotonic_s() -> float:
    """A clock that never jumps: for deadlines and intervals inside one process."""
    return time.monotonic()
