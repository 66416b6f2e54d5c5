"""The loop's decision on a version of a task it holds: an echo, or news.

Pure logic: a Worker that is never started (no CouchDB, no threads, no runner),
handed documents as its feed would hand them, as bench/memstate.py does.
"""

from pathlib import Path

from afterd.claims import Identity
from afterd.config import Settings
from afterd.worker import Worker

ME = Identity("manobi", "host-a", 0, 1)


def held_task(rev="3-aaa", **fields):
    return {"_id": "t1", "_rev": rev, "worker": "manobi", "date": "2999-01-01T00:00:00Z",
            "status": "scheduled", "job": {"name": "hello", "arguments": []},
            "owner": ME.owner_field(), "anchor": "2999-01-01T00:00:00Z", "occurrence": 0, **fields}


def worker_holding(doc):
    w = Worker("manobi", Settings(state_dir=Path("/nonexistent"), host=ME.host))
    w.me = ME
    w._decide(doc)
    assert "t1" in w.timers
    return w


def test_an_echo_of_the_version_held_changes_nothing():
    w = worker_holding(held_task())
    w._decide(held_task())
    assert "t1" in w.timers and w.entries["t1"].doc["_rev"] == "3-aaa"


def test_an_older_version_changes_nothing():
    w = worker_holding(held_task())
    w._decide(held_task(rev="2-zzz", owner={"process": "manobi:host-b:0", "host": "host-b", "pid": 2}))
    assert "t1" in w.timers


def test_another_branch_at_the_same_generation_is_news():
    """After a cluster resolved a conflict by deleting our leaf, the winner has the
    generation of the version we hold: if it names another owner, we must let go."""
    w = worker_holding(held_task())
    other = {"process": "manobi:host-b:0", "host": "host-b", "pid": 2}
    w._decide(held_task(rev="3-fff", owner=other))
    assert "t1" not in w.timers and "t1" not in w.entries
