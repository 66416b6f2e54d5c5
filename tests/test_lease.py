"""Heartbeat.stop() waits for its thread, so the final renew at shutdown cannot race it."""

import threading

from afterd.claims import Identity
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
