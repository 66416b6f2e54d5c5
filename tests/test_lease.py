"""Heartbeat.stop() waits for its thread, so the final renew at shutdown cannot race it;
a peer's lease ends only as a quorum has it."""

import threading
from datetime import timedelta

from afterd import clock
from afterd.claims import Identity, heartbeat_doc
from afterd.couch import NotFound
from afterd.lease import Heartbeat
from helpers import wait_for


class BlockingStore:
    """A store whose put() holds until the test releases it, as a slow CouchDB would."""

    timeout_s = 10.0

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.puts = 0
        self.sent_revs = []

    def put_quorum(self, doc):
        self.puts += 1
        self.sent_revs.append(doc.get("_rev"))
        self.entered.set()
        self.release.wait(30)
        return f"{self.puts}-x", True

    def docs_with_prefix(self, prefix):
        return []

    def get_conflicted(self, doc_id):
        return None   # our heartbeat has no rival leaves here

    def find(self, selector, **kwargs):
        return []


def heartbeat(store, tmp_path):
    me = Identity(worker="w", host="h", slot=0, pid=1)
    return Heartbeat(store, me, lease_s=60.0, skew_margin_s=5.0, state_dir=tmp_path,
                     on_lease=lambda until, detail: None, on_peer=lambda *args: None)


def test_stop_returns_only_after_the_renew_in_flight_ended(tmp_path):
    store = BlockingStore()
    beat = heartbeat(store, tmp_path)
    beat.start()
    assert store.entered.wait(10), "the heartbeat never renewed"
    stopped = threading.Event()
    stopper = threading.Thread(target=lambda: beat.stop(wait_s=30) and stopped.set())
    stopper.start()
    # While the renew is in flight, stop() keeps waiting for it.
    assert not stopped.wait(0.3)
    store.release.set()
    assert stopped.wait(10), "stop() did not return once the renew ended"
    assert not beat.is_alive()
    stopper.join(10)
    # The final renew starts from the revision the thread's renew got back: nothing left to race.
    beat.renew(stopped=True)
    assert store.sent_revs == [None, "1-x"]


def test_stop_is_bounded_when_the_thread_cannot_end(tmp_path):
    store = BlockingStore()
    beat = heartbeat(store, tmp_path)
    beat.start()
    assert store.entered.wait(10)
    try:
        assert beat.stop(wait_s=0.1) is False
        assert beat.is_alive()
    finally:
        store.release.set()
        wait_for(lambda: not beat.is_alive(), message="the heartbeat thread to end")


def test_stop_of_a_heartbeat_never_started(tmp_path):
    assert heartbeat(BlockingStore(), tmp_path).stop(wait_s=0.1) is True


class StaleCopyStore:
    """A cluster as one process saw it: `_all_docs` (docs_with_prefix) served by a copy
    that missed the peer's renewals, single-document reads by a quorum that has them."""

    def __init__(self, stale: list[dict], quorum: dict):
        self.stale, self.quorum, self.gets = stale, quorum, []

    def docs_with_prefix(self, prefix):
        return [b for b in self.stale if b["_id"].startswith(prefix)]

    def get(self, doc_id):
        self.gets.append(doc_id)
        if doc_id not in self.quorum:
            raise NotFound(doc_id)
        return self.quorum[doc_id]

    def scan(self, selector, **kwargs):
        yield [{"_id": "t1", "worker": "w", "status": "scheduled", "owner": {"process": selector["owner.process"]}}]

    def delete(self, doc_id, rev):
        raise AssertionError(f"deleted {doc_id}: a live peer's heartbeat")


def test_a_peer_whose_lease_looks_ended_on_one_copy_is_alive_while_a_quorum_says_so(tmp_path):
    now = clock.now()
    peer = Identity(worker="w", host="h2", slot=0, pid=7, started="2026-12-06T10:00:00Z")
    gone = Identity(worker="w", host="h3", slot=0, pid=8, started="2026-12-06T10:00:00Z")
    long_ago = now - timedelta(hours=1)
    stale = [{"_id": i.heartbeat_id, "_rev": "1-a", **heartbeat_doc(i, long_ago, 60.0, since=long_ago)}
             for i in (peer, gone)]
    quorum = {peer.heartbeat_id: {"_id": peer.heartbeat_id, "_rev": "9-b",
                                  **heartbeat_doc(peer, now, 60.0, since=long_ago)}}
    store = StaleCopyStore(stale, quorum)
    me = Identity(worker="w", host="h1", slot=0, pid=1)
    views, taken = [], []
    beat = Heartbeat(store, me, lease_s=60.0, skew_margin_s=5.0, state_dir=tmp_path,
                     on_lease=lambda until, detail: None,
                     on_peer=lambda beat, process, tasks, runs: taken.append((process, beat)))
    beat.on_view = lambda view, alive: views.append((view, alive))
    beat.scan_peers()
    # Then the peer counts as alive (its fence holds, its share is its own) and keeps its
    # tasks; the one whose heartbeat a quorum no longer has is gone, and its tasks taken
    [(view, alive)] = views
    assert peer.life in alive and gone.life not in alive
    assert peer.process in view
    assert taken == [(gone.process, None)]
    assert sorted(store.gets) == sorted([peer.heartbeat_id, gone.heartbeat_id])
