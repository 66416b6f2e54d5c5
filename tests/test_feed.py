"""afterd.feed against a real CouchDB-API server: selection, checkpoints, outages, stop."""

import random
import threading
import time

import pytest

from afterd.couch import Couch, Unavailable
from afterd.feed import Feed, backoff_s, batch_docs
from helpers import wait_for


class Recorder:
    """What a worker loop would see: the batches, and the feed's state reports."""

    def __init__(self):
        self.lock = threading.Lock()
        self.docs: list[dict] = []
        self.states: list[tuple[str, str]] = []

    def on_batch(self, docs):
        with self.lock:
            self.docs.extend(docs)

    def on_state(self, state, detail):
        with self.lock:
            self.states.append((state, detail))

    def ids(self):
        with self.lock:
            return [d["_id"] for d in self.docs]

    def latest(self, doc_id):
        """The last version of a document the loop was handed, or None."""
        with self.lock:
            mine = [d for d in self.docs if d["_id"] == doc_id]
        return mine[-1] if mine else None

    def saw(self, state):
        with self.lock:
            return any(s == state for s, _ in self.states)


@pytest.fixture
def feeds():
    """Feeds started by a test; all stopped at its end."""
    started = []

    def start(couch, recorder, worker="manobi", checkpoint="feed-manobi", on_batch=None, **options):
        feed = Feed(couch, worker, checkpoint, on_batch or recorder.on_batch, recorder.on_state, **options)
        feed.start()
        started.append(feed)
        return feed

    yield start
    for feed in started:
        feed.stop()


def test_a_feed_receives_its_workers_tasks_and_deletions_only(couch, feeds):
    couch.bulk([{"_id": "before", "worker": "manobi"}, {"_id": "other-before", "worker": "other"}])
    rec = Recorder()
    feeds(couch, rec)

    wait_for(lambda: "before" in rec.ids(), 20, "the task written before the feed started")
    rev = couch.get("before")["_rev"]
    couch.post({"worker": "other"})
    couch.put({"_id": "after", "worker": "manobi"})
    couch.delete("before", rev)

    wait_for(lambda: rec.ids().count("before") == 2 and "after" in rec.ids(), 20, "the new task and the deletion")
    assert sorted(set(rec.ids())) == ["after", "before"]
    deletion = rec.docs[rec.ids().index("before", 1)]
    assert deletion["_deleted"] is True and deletion["_rev"].startswith("2-")
    assert rec.saw("connected")


def test_the_checkpoint_is_saved_only_after_the_batch_is_handled(couch, feeds):
    couch.bulk([{"_id": f"t{i}", "worker": "manobi"} for i in range(3)])
    handling = threading.Event()
    release = threading.Event()

    def slow_loop(docs):
        handling.set()
        release.wait(30)

    rec = Recorder()
    first = feeds(couch, rec, on_batch=slow_loop)
    try:
        wait_for(handling.is_set, 20, "the batch to reach the loop")
        assert couch.get_local("feed-manobi") is None  # held by the loop: not checkpointed
        first.stop(wait_s=0.5)
    finally:
        release.set()

    # The first feed was stopped while handling; whatever it saved, a new feed
    # resumes exactly after what was handled and receives the rest.
    rec2 = Recorder()
    feeds(couch, rec2)
    wait_for(lambda: rec2.saw("connected"), 20, "the second feed to connect")
    couch.put({"_id": "t3", "worker": "manobi"})
    wait_for(lambda: "t3" in rec2.ids(), 20, "the new task on the resumed feed")
    # Compared as sorted lists (each document once, none twice), not in write order:
    # CouchDB with several shards interleaves them (t0, t2, t1, t3 was seen).
    assert sorted(rec2.ids()) in (["t3"], ["t0", "t1", "t2", "t3"])


def test_a_batch_whose_handler_fails_is_delivered_again_and_not_checkpointed(couch, feeds):
    couch.bulk([{"_id": "t1", "worker": "manobi"}])
    rec = Recorder()
    calls = []

    def flaky_loop(docs):
        calls.append([d["_id"] for d in docs])
        if len(calls) == 1:
            assert couch.get_local("feed-manobi") is None
            raise RuntimeError("the loop was busy")
        rec.on_batch(docs)

    feeds(couch, rec, on_batch=flaky_loop, backoff_base_s=0.05)
    wait_for(lambda: rec.ids() == ["t1"], 20, "the batch to be delivered again")
    assert calls[:2] == [["t1"], ["t1"]]
    assert any(s == "retrying" and "the loop was busy" in d for s, d in rec.states)
    wait_for(lambda: couch.get_local("feed-manobi"), 20, "the checkpoint after the successful handling")

    # A new feed starts from that checkpoint: t1 is not delivered a third time.
    rec2 = Recorder()
    feeds(couch, rec2, worker="manobi")
    couch.put({"_id": "t2", "worker": "manobi"})
    wait_for(lambda: "t2" in rec2.ids(), 20, "the next task")
    assert rec2.ids() == ["t2"]


def test_a_feed_survives_a_server_restart_without_losing_or_duplicating_a_change(private_couch_server, tmp_path):
    couch = Couch(private_couch_server.url, "tasks")
    couch.ensure_database()
    couch.bulk([{"_id": f"before-{i}", "worker": "manobi"} for i in range(5)])
    rec = Recorder()
    feed = Feed(couch, "manobi", "feed-manobi", rec.on_batch, rec.on_state, backoff_cap_s=2.0)
    feed.start()
    try:
        wait_for(lambda: len(rec.ids()) == 5, 20, "the tasks written before")

        private_couch_server.stop()
        queued = [{"_id": f"during-{i}", "worker": "manobi"} for i in range(5)]
        with pytest.raises(Unavailable):
            couch.bulk(queued)  # refused while down: written after the restart
        wait_for(lambda: rec.saw("retrying"), 30, "the feed to notice the outage")
        private_couch_server.start()
        couch.bulk(queued)
        for i in range(5):
            couch.put({"_id": f"after-{i}", "worker": "manobi"})

        wait_for(lambda: len(rec.ids()) >= 15, 60, "every task after the restart")
        wait_for(lambda: (couch.get_local("feed-manobi") or {}).get("seq") is not None, 20, "a checkpoint")
    finally:
        feed.stop()

    expected = sorted(f"{when}-{i}" for when in ("before", "during", "after") for i in range(5))
    assert sorted(rec.ids()) == expected  # nothing lost, nothing twice
    retry = next(d for s, d in rec.states if s == "retrying")
    assert retry.startswith("retrying in ") and "unreachable" in retry
    assert [s for s, _ in rec.states].count("connected") == 2


def test_stop_returns_promptly_during_a_quiet_longpoll(couch, feeds):
    rec = Recorder()
    feed = feeds(couch, rec, request_deadline_s=60)
    wait_for(lambda: rec.saw("connected"), 20, "the feed to connect")
    time.sleep(0.3)  # let the next longpoll start waiting

    started = time.monotonic()
    assert feed.stop() is True
    assert time.monotonic() - started < 2.5


def test_a_missing_database_is_fatal_and_stops_the_feed(couch_url, db_name, feeds):
    rec = Recorder()
    feed = feeds(Couch(couch_url, db_name), rec)
    wait_for(lambda: rec.saw("fatal"), 20, "the fatal report")
    feed.join(5)
    assert not feed.is_alive()
    assert "not found" in rec.states[-1][1]


def test_backoff_doubles_from_one_second_to_a_thirty_second_cap_with_full_jitter():
    top = random.Random(1)
    top.uniform = lambda low, high: high  # the ceiling of each draw
    assert [backoff_s(n, rng=top) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    draws = [backoff_s(4) for _ in range(200)]
    assert all(0 <= d <= 8 for d in draws) and min(draws) < 4 < max(draws)


def test_batch_docs_turns_deletions_into_tombstones_and_skips_design_documents():
    results = [{"id": "a", "changes": [{"rev": "1-x"}], "doc": {"_id": "a", "_rev": "1-x", "worker": "w"}},
               {"id": "b", "changes": [{"rev": "2-y"}], "deleted": True},
               {"id": "_design/after", "changes": [{"rev": "1-z"}], "deleted": True}]
    assert batch_docs(results) == [{"_id": "a", "_rev": "1-x", "worker": "w"},
                                   {"_id": "b", "_rev": "2-y", "_deleted": True}]
