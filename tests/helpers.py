"""Small test helpers shared by every suite."""

import os
import time

import pytest

# A real Apache CouchDB to run the suite against instead of the pinned pouchdb-server.
EXTERNAL_URL = os.environ.get("AFTER_TEST_COUCHDB_URL")


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


def require_tool(ok: bool, what: str):
    """Skip locally when a tool is missing; in CI a missing tool is a failure, not a skip."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not available here")
