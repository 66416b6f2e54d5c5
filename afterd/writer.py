"""The thread that writes task updates to CouchDB in batches and never gives up on one.

The worker loop hands it whole documents (each carrying the `_rev` it was
derived from) and gets back, per document, `written` (the new rev),
`conflict` (someone else changed it: here is the current version, or None if
it is gone) or `refused` (validate_doc_update said no: the reason). While
CouchDB is unreachable the pending documents stay queued, in memory (and
their outcomes in the journal), and the thread retries with capped, jittered
backoff: nothing is dropped.

Batching: everything queued when a request goes out travels in one
`_bulk_docs` (up to BATCH_MAX documents), so under load one HTTP round trip
carries hundreds of outcomes. Requests start at most once per BATCH_INTERVAL_S
while a claim or a confirmation is queued (what a user waits for: POST -> scheduled,
a run's start), else at most once per LAZY_BATCH_INTERVAL_S (outcomes are journaled
before they are queued, and nobody waits on their write): a write after a quiet spell
goes out at once, but under load the documents of that interval share one request (a
request costs pouchdb-server about as much CPU as ten documents in it).
"""

import logging
import random
import threading
from collections import deque
from dataclasses import dataclass

from afterd import clock, outputs
from afterd.couch import CouchError, Unavailable, Unauthorized
from afterd.feed import without_conflicts

log = logging.getLogger("after.writer")

BATCH_MAX = 1000
BATCH_INTERVAL_S = 0.02
LAZY_BATCH_INTERVAL_S = 0.1
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 8.0

WRITTEN, CONFLICT, REFUSED = "written", "conflict", "refused"


@dataclass
class Write:
    doc: dict        # the full document to store, with the _rev it replaces
    tag: object      # the loop's note on why it wrote this; handed back untouched
    urgent: bool = False   # a claim or a confirmation: someone waits on it (BATCH_INTERVAL_S)


class Writer(threading.Thread):
    def __init__(self, couch, on_result, on_state):
        super().__init__(name="after-writer", daemon=True)
        self.couch = couch
        self.on_result = on_result      # (kind, write, info) -> None
        self.on_state = on_state        # (ok: bool, detail: str) -> None
        self._queue: deque[Write] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._inflight = 0
        self._last_send_mono = float("-inf")
        self._failure: Exception | None = None
        self._urgent = 0                 # queued urgent writes (claims, confirmations)

    def submit(self, write: Write):
        with self._cond:
            self._queue.append(write)
            self._urgent += write.urgent
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._inflight

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far is written (or refused); False on timeout."""
        deadline = clock.monotonic_s() + timeout_s
        with self._cond:
            while self._queue or self._inflight:
                left = deadline - clock.monotonic_s()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def run(self):
        backoff_s = 0.0
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                # Gather what comes within the interval (unless a batch is full or we stop).
                while not self._stopping and len(self._queue) < BATCH_MAX:
                    interval_s = BATCH_INTERVAL_S if self._urgent else LAZY_BATCH_INTERVAL_S
                    wait_s = self._last_send_mono + interval_s - clock.monotonic_s()
                    if wait_s <= 0:
                        break
                    self._cond.wait(wait_s)
                batch = self._take_locked()
                self._last_send_mono = clock.monotonic_s()
            if self.send(batch):
                if backoff_s:
                    backoff_s = 0.0
                    self.on_state(True, "")
                continue
            backoff_s = min(BACKOFF_CAP_S, max(BACKOFF_FIRST_S, backoff_s * 2))
            wait_s = random.uniform(backoff_s / 2, backoff_s)
            self.on_state(False, f"CouchDB unreachable, retrying writes in {wait_s:.0f}s: {self._failure}")
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(wait_s)

    def send(self, batch: list[Write]) -> bool:
        """Write one batch and report each document's result; False if CouchDB did not
        answer (the batch is back at the head of the queue, in order). The thread calls
        it; a test steps it (tests/stepped.py)."""
        try:
            results = self.couch.bulk([w.doc for w in batch])
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise Unavailable(f"CouchDB answered a bulk write with something unusable: {results!r:.80}")
        except (Unavailable, Unauthorized, CouchError) as e:
            self._failure = e
            with self._cond:
                self._queue.extendleft(reversed(batch))
                self._urgent += sum(1 for w in batch if w.urgent)
                self._inflight = 0
                self._cond.notify_all()
            return False
        self._deliver(batch, results)
        with self._cond:
            self._inflight = 0
            self._cond.notify_all()
        return True

    def take(self) -> list[Write]:
        """What is queued now (for a test stepping the writer instead of its thread)."""
        with self._cond:
            return self._take_locked()

    def _take_locked(self) -> list[Write]:
        batch = [self._queue.popleft() for _ in range(min(BATCH_MAX, len(self._queue)))]
        self._inflight = len(batch)
        self._urgent -= sum(1 for w in batch if w.urgent)
        return batch

    def _deliver(self, batch, results):
        # Match answers by id: pouchdb-server does not keep _bulk_docs answers in the
        # order the documents were sent (CouchDB does). The loop keeps at most one
        # write per document in flight, so ids are unique within a batch.
        by_id = {res.get("id"): res for res in results}
        conflicts = [w for w in batch if by_id.get(w.doc["_id"], {}).get("error") == "conflict"]
        current = self._current([w.doc["_id"] for w in conflicts]) if conflicts else {}
        for write in batch:
            res = by_id.get(write.doc["_id"], {})
            if "rev" in res and "error" not in res:
                # A write answered 202 on a cluster ("accepted": fewer copies than the write
                # quorum took it) is written all the same: it spreads to the other copies, and
                # if it conflicts there the feed's resolution merges it (afterd/conflicts.py).
                # Nothing here decides who runs what: a run starts only behind its fence
                # (afterd/fences.py). A run's output went inline: the loop keeps its stub.
                outputs.settle(write.doc, res["rev"])
                self.on_result(WRITTEN, write, res["rev"])
            elif res.get("error") == "conflict":
                self.on_result(CONFLICT, write, current.get(write.doc["_id"]))
            else:
                reason = res.get("reason") or res.get("error") or "no answer for this document"
                self.on_result(REFUSED, write, str(reason))

    def _current(self, doc_ids) -> dict:
        """The documents as they are now (one request), for the loop to decide again.

        A deleted document is absent: the loop reads that as gone. `_find` reads one copy
        of each shard, which on a cluster can be one that came back and lacks the
        document: an absence is asked again of a read quorum (a single-document GET)
        before the loop is told the task is gone (it dropped a run's outcome that way).
        """
        while True:
            try:
                found = {d["_id"]: d for d in self.couch.find({"_id": {"$in": doc_ids}})}
                for doc_id in doc_ids:
                    if doc_id not in found:
                        doc = self.couch.get_conflicted(doc_id)
                        if doc is not None:
                            found[doc_id] = without_conflicts(doc)
                return found
            except (CouchError, LookupError, TypeError) as e:   # wrong shapes too: retry
                self.on_state(False, f"CouchDB unreachable, retrying in 1s: {e}")
                with self._cond:
                    if self._stopping:
                        return {}
                    self._cond.wait(1.0)
