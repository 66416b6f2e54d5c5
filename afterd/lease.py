"""The heartbeat thread: renews this process's lease and looks for peers whose lease ended.

Renewal: one small write every `lease_s / 4`, whatever the number of tasks
(tasks point at the heartbeat through their owner field). The loop is told,
after each attempt, until when (by the monotonic clock) it may start runs.

Peers: every `lease_s / 2`, or at once when the feed shows a peer's heartbeat
saying it stopped, the heartbeats of this worker name are read. For each
peer whose lease ended (or, on this host, whose slot nobody holds any more),
its active tasks are read and handed to the loop, which decides per task
(claims.takeover) with conditional updates.
"""

import logging
import threading

from afterd import clock, journal
from afterd.claims import (HEARTBEAT_PREFIX, Identity, heartbeat_doc, heartbeat_prefix, heartbeats_of,
                           alive, lease_expired, live_view)
from afterd.couch import Conflict, CouchError, NotFound

log = logging.getLogger("after.lease")

# Statuses a worker acts on (`paused` is held by nobody's timer: a `resume` comes by the feed).
ACTIVE = ["waiting", "scheduled", "running", "reschedule", "cancel", "pause", "resume", "run"]
# stop() waits for the thread at most one request timeout of its store (Couch's
# timeout_s; this when the store has none) plus a margin.
STOP_WAIT_DEFAULT_S = 10.0
STOP_WAIT_MARGIN_S = 1.0


def as_a_quorum_has_them(couch, beats: list[dict], me_id: str, now,
                         skew_margin_s: float) -> list[tuple[str, dict, dict | None]]:
    """(process, heartbeat as one copy showed it, heartbeat as a quorum has it) for each
    heartbeat read; None: gone there.

    `_all_docs`, `_changes` and views are answered from one copy of each shard on a
    cluster, which can be behind: a lease that looks ended there may have been renewed.
    A single-document GET is answered by a read quorum (r = a majority of n), and a
    renewal counts only when a write quorum took it (Heartbeat.renew), so the two meet:
    each heartbeat that looks ended is read again. Who is alive decides a takeover and
    whether a run's fence holder is gone (Worker._recheck_fence): a stale copy must
    decide neither.
    """
    out = []
    for seen in beats:
        beat = seen
        if seen["_id"] != me_id and lease_expired(seen, now, skew_margin_s):
            try:
                beat = couch.get(seen["_id"])
            except NotFound:
                beat = None
        out.append((seen["_id"][len(HEARTBEAT_PREFIX):], seen, beat))
    return out


class Heartbeat(threading.Thread):
    def __init__(self, couch, me: Identity, *, lease_s: float, skew_margin_s: float, state_dir,
                 on_lease, on_peer, counters=None, clock=clock):
        super().__init__(name="after-heartbeat", daemon=True)
        self.clock = clock            # afterd.clock, or a test's stepped one
        self.couch = couch
        self.me = me
        self.lease_s = lease_s
        self.skew_margin_s = skew_margin_s
        self.state_dir = state_dir
        self.on_lease = on_lease      # (until_monotonic_s or None, detail) -> None
        self.on_peer = on_peer        # (heartbeat doc or None, process id, tasks, journal runs or None) -> None
        self.counters = counters      # () -> dict of this process's counters (metrics.py), or None
        self._rev = None
        self._wake = threading.Event()
        self._stopping = False
        self._next_scan_s = 0.0
        self._since = None            # our first beat: peers count us in their shares after a while
        self.on_view = None           # (live processes: tuple, alive: frozenset) -> None, after each scan
        self.on_own = None            # (our active tasks: list) -> None, on the sweeps below
        # Scans left that also read the tasks owned by us: a start-up reads one copy, which
        # may miss a claim we made in a life before (the feed that saw it checkpointed it),
        # and a lapse may hide one too. Each sweep hands them to the loop, which decides
        # those it does not hold (decide.py ignores what it holds already).
        self.sweeps = 3
        self._suspect = False         # a renewal failed: its write may have landed as a branch

    # -- called from other threads ---------------------------------------------------

    def scan_soon(self):
        """A peer said it stopped: look at its tasks now rather than at the next scan."""
        self._next_scan_s = 0.0
        self._wake.set()

    def stop(self, wait_s: float | None = None) -> bool:
        """Stop the thread and wait until it has ended (at most wait_s); True if it has.

        The caller's final renew(stopped=True) must not race a renew still in flight in
        this thread: both use `_rev`, and the thread's write, retried after the 409 the
        final one causes, would put back a live lease over "stopped" (peers would then
        wait for the lease to end instead of taking our tasks at once). A request in
        flight ends within the store's timeout, hence the default bound.
        """
        self._stopping = True
        self._wake.set()
        if wait_s is None:
            wait_s = getattr(self.couch, "timeout_s", STOP_WAIT_DEFAULT_S) + STOP_WAIT_MARGIN_S
        if self.is_alive() and threading.current_thread() is not self:
            self.join(wait_s)
        if self.is_alive():
            log.warning("the heartbeat thread is still writing after %gs; going on without it", wait_s)
            return False
        return True

    # -- the thread ------------------------------------------------------------------

    def renew(self, stopped=False) -> float | None:
        """Write the heartbeat; the monotonic time until which our lease holds, or None."""
        sent_s = self.clock.monotonic_s()
        counters = self.counters() if self.counters else None
        now = self.clock.now()
        self._since = self._since or now
        body = {"_id": self.me.heartbeat_id,
                **heartbeat_doc(self.me, now, self.lease_s, stopped, counters, since=self._since)}
        for _ in range(3):
            body.pop("_rev", None)
            if self._rev:
                body["_rev"] = self._rev
            try:
                self._rev, quorum = self.couch.put_quorum(body)
            except Conflict:
                # Our previous incarnation in this slot left it, or a write timed out after
                # landing; on a cluster a renewal answered 202 may stand beside another as a
                # conflicting leaf: only we write our heartbeat, so drop the others.
                current = self._drop_rival_leaves()
                self._rev = current["_rev"] if current is not None else None
                continue
            if not quorum:
                # 202: fewer copies than the write quorum took it. A peer reading from the
                # others may see the old lease: this is not a renewal (docs/guarantees.md).
                raise CouchError("the lease renewal reached fewer copies than CouchDB's write quorum (202)")
            return sent_s + self.lease_s - self.skew_margin_s
        raise CouchError("heartbeat kept conflicting")

    def run(self):
        while not self._stopping:
            self._wake.wait(self.beat())
            self._wake.clear()

    def beat(self) -> float:
        """Renew the lease (and, every lease_s / 2, look for peers whose lease ended); the
        seconds until the next beat. The thread calls it; a test steps it (tests/stepped.py)."""
        interval_s = self.lease_s / 4
        try:
            until = self.renew()
            self.on_lease(until, "")
        except (CouchError, LookupError, TypeError, ValueError) as e:   # wrong shapes too
            # The thread must outlive any answer: a dead heartbeat is a lapsed lease.
            self.on_lease(None, str(e))
            self._suspect = True
            self.sweeps = 3
            return min(interval_s, 2.0)
        if self._suspect or self.clock.monotonic_s() >= self._next_scan_s:
            try:
                self._drop_rival_leaves()
            except (CouchError, LookupError, TypeError, ValueError):
                pass   # the next beat tries again

        if self.clock.monotonic_s() >= self._next_scan_s:
            self._next_scan_s = self.clock.monotonic_s() + self.lease_s / 2
            try:
                self.scan_peers()
            except (CouchError, LookupError, TypeError, ValueError) as e:
                log.warning("could not look for peers whose lease ended: %s", e)
        return interval_s

    def _drop_rival_leaves(self) -> dict | None:
        """A renewal whose answer was lost or 202 may stand as a leaf beside a later one (on
        a cluster). Only we write our heartbeat: keep the winner, delete the others. Our
        heartbeat as a quorum has it now (None: gone)."""
        current = self.couch.get_conflicted(self.me.heartbeat_id)
        for rev in (current or {}).get("_conflicts", []):
            try:
                self.couch.delete(self.me.heartbeat_id, rev)
            except CouchError:
                pass   # gone already, or another of our renewals took it
        self._suspect = False
        return current

    def _active_of(self, process: str) -> dict:
        """The selector of a process's active tasks: read by scan (_changes), never _find
        (scan_peers says why)."""
        return {"worker": self.me.worker, "owner.process": process, "status": {"$in": ACTIVE}}

    def scan_peers(self):
        now = self.clock.now()
        worker = self.me.worker
        if self.sweeps > 0 and self.on_own is not None:
            # A _changes scan, not _find: no index to build and keep up to date in this
            # thread between two renewals (pouchdb-server builds one at ~2 ms a document:
            # with 20,000 tasks claimed, a sweep by _find kept the renewals back past the
            # lease, and every run then waited to confirm its ownership).
            for page in self.couch.scan(self._active_of(self.me.process)):
                self.on_own(page)
            self.sweeps -= 1
        read = as_a_quorum_has_them(self.couch, heartbeats_of(worker, self.couch.docs_with_prefix(
            heartbeat_prefix(worker))), self.me.heartbeat_id, now, self.skew_margin_s)
        if self.on_view is not None:
            beats = [b for _, _, b in read if b is not None]
            self.on_view(live_view(self.me.process, beats, now, self.skew_margin_s, self.lease_s),
                         alive(beats, now, self.skew_margin_s) | {self.me.life})
        for process, seen, beat in read:
            if process == self.me.process:
                continue
            runs = None
            if seen.get("host") == self.me.host and isinstance(seen.get("slot"), int):
                runs = journal.read_if_dead(self.state_dir, seen["slot"])
            if runs is None and not lease_expired(beat, now, self.skew_margin_s):
                continue  # alive, or may be (each beat that looked ended was read again)
            tasks = [doc for page in self.couch.scan(self._active_of(process)) for doc in page]
            if tasks:
                self.on_peer(beat, process, tasks, runs)
            elif beat is not None and lease_expired(beat, now, self.skew_margin_s):
                # Nothing of its is left: forget it, so it is not read again every scan.
                try:
                    self.couch.delete(beat["_id"], beat["_rev"])
                except CouchError:
                    pass  # it renewed meanwhile, or someone else deleted it
