"""Small test helpers shared by every suite."""

import time


def wait_for(predicate, timeout_s=10.0, message="condition", interval_s=0.02):
    """Poll `predicate` until it returns something truthy; return that value.

    Tests wait on conditions with a deadline, never on bare sleeps: the
    deadline is a safety bound for a loaded machine, not a speed assertion.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)
