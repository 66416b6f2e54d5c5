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
from concurrent.futures import ThreadPoolExecutor
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
# Claims answered 202 are settled (a quorum read, perhaps a withdrawal) beside the
# writer, a few at a time: outcomes must not wait behind them, and a withdrawal must
# land before peers give up waiting for it (feed.CLAIM_RACE_GRACE_S).
SETTLERS = 4

WRITTEN, CONFLICT, REFUSED, ACCEPTED = "written", "conflict", "refused", "accepted"
# What a write decides (Write.decides): a claim of the task, or the confirmation that
# we still own it just before a run starts (after a lapse, a takeover, or a 202).
CLAIM, CONFIRM = "claim", "confirm"


@dataclass
class Write:
    doc: dict        # the full document to store, with the _rev it replaces
    tag: object      # the loop's note on why it wrote this; handed back untouched
    decides: str | None = None   # CLAIM or CONFIRM: won only when a write quorum took it


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
        self._settling = 0
        self._last_send_mono = float("-inf")
        self._settlers = None            # a thread pool, made on the first 202
        self._settler_couch = threading.local()
        self._failure: Exception | None = None
        self._urgent = 0                 # queued writes that decide ownership (claims, confirmations)
        self.settle_inline = False       # a stepped test settles 202s in its own thread

    def submit(self, write: Write):
        with self._cond:
            self._queue.append(write)
            self._urgent += write.decides is not None
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._inflight + self._settling

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far is written (or refused); False on timeout."""
        deadline = clock.monotonic_s() + timeout_s
        with self._cond:
            while self._queue or self._inflight or self._settling:
                left = deadline - clock.monotonic_s()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._settlers is not None:
            self._settlers.shutdown(wait=False, cancel_futures=True)

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
                self._urgent += sum(1 for w in batch if w.decides is not None)
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
        self._urgent -= sum(1 for w in batch if w.decides is not None)
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
            if "rev" in res and "error" not in res and write.decides and (
                    res.get("accepted") or write.decides == CONFIRM):
                # Not won, or not yet known to be (docs/guarantees.md, "With a CouchDB cluster").
                self._settle_soon(write, res["rev"], bool(res.get("accepted")))
            elif "rev" in res and "error" not in res:
                # An outcome, a cancel, a refusal answered 202 is durable all the same: if it
                # conflicts later, the resolution keeps it (afterd/conflicts.py, rules 1-3).
                # A run's output went inline: the loop keeps (and sends again) its stub.
                outputs.settle(write.doc, res["rev"])
                self.on_result(WRITTEN, write, res["rev"])
            elif res.get("error") == "conflict":
                self.on_result(CONFLICT, write, current.get(write.doc["_id"]))
            else:
                reason = res.get("reason") or res.get("error") or "no answer for this document"
                self.on_result(REFUSED, write, str(reason))

    def _settle_soon(self, write, rev, accepted: bool):
        if self.settle_inline:
            with self._cond:
                self._settling += 1
            self._settle_and_report(write, rev, accepted)
            return
        with self._cond:
            self._settling += 1
            if self._settlers is None:
                self._settlers = ThreadPoolExecutor(SETTLERS, thread_name_prefix="after-settle")
        self._settlers.submit(self._settle_and_report, write, rev, accepted)

    def _settle_and_report(self, write, rev, accepted: bool):
        try:
            couch = getattr(self._settler_couch, "couch", None)
            if couch is None:
                couch = self._settler_couch.couch = self.couch.clone()
            if accepted:
                self.on_result(ACCEPTED, write, (rev, *self._settle(couch, write, rev)))
            elif self._contested(couch, write, rev):
                # A quorum took our confirmation, but a rival claim stands beside it (its
                # claimant has not withdrawn it yet): not now; the loop confirms again.
                current = self._retrying(lambda: couch.get_conflicted(write.doc["_id"]))
                self.on_result(ACCEPTED, write, (rev, current and without_conflicts(current), False))
            else:
                self.on_result(WRITTEN, write, rev)
        except Exception:   # a bug here must not leave the loop waiting on this task forever
            log.exception("settling the write of task %s failed", write.doc.get("_id"))
            self.on_result(ACCEPTED, write, (rev, None, False))
        finally:
            with self._cond:
                self._settling -= 1
                self._cond.notify_all()

    def _contested(self, couch, write, rev) -> bool:
        """A confirmation that a quorum took may still stand beside a rival leaf that spread
        since our claim (two claims each answered 202, then synced): read it back from a
        quorum before the run starts. Only confirmations pay this read; they are rare."""
        current = self._retrying(lambda: couch.get_conflicted(write.doc["_id"]))
        return current is None or current.get("_rev") != rev or bool(current.get("_conflicts"))

    def _settle(self, couch, write, rev) -> tuple[dict | None, bool]:
        """After a claim or confirmation answered 202: the task as a quorum sees it, and
        whether our own leaf was withdrawn (it is when another live leaf stands beside it,
        so that ours cannot become the winner once the copies sync). None: it is gone."""
        doc_id = write.doc["_id"]
        current = self._retrying(lambda: couch.get_conflicted(doc_id))
        if current is None:
            return None, False
        leaves = [current["_rev"], *current.get("_conflicts", [])]
        if leaves == [rev]:
            return current, False   # ours alone so far: the loop confirms again before a run
        try:
            couch.delete(doc_id, rev)
            log.info("task %s: our write %s reached fewer copies than the write quorum beside %s: "
                     "withdrawn", doc_id, rev, ", ".join(r for r in leaves if r != rev))
        except CouchError as e:
            log.info("task %s: withdrawing our write %s: %s", doc_id, rev, e)
        after = self._retrying(lambda: couch.get_conflicted(doc_id))
        if after is None:
            # Every claim was answered 202 and every claimant withdrew: the task would be
            # lost. Put it back as its user left it, for whoever claims it next.
            back = {k: v for k, v in write.doc.items()
                    if k not in ("_rev", "owner", "running", "_conflicts")}
            back["status"] = "waiting"
            log.warning("task %s: every rival claim was withdrawn; putting it back as waiting", doc_id)
            try:
                couch.put(back)
            except CouchError as e:
                log.warning("task %s: could not put it back: %s", doc_id, e)
            after = self._retrying(lambda: couch.get_conflicted(doc_id))
        return (after and without_conflicts(after)), True

    def _retrying(self, read):
        while True:
            try:
                return read()
            except (CouchError, LookupError, TypeError) as e:
                self.on_state(False, f"CouchDB unreachable, retrying in 1s: {e}")
                with self._cond:
                    if self._stopping:
                        return None   # shutting down: the next start reads it again
                    self._cond.wait(1.0)

    def _current(self, doc_ids) -> dict:
        """The documents as they are now (one request), for the loop to decide again.

        A deleted document is simply absent: the loop reads that as gone.
        """
        while True:
            try:
                return {d["_id"]: d for d in self.couch.find({"_id": {"$in": doc_ids}})}
            except (CouchError, LookupError, TypeError) as e:   # wrong shapes too: retry
                self.on_state(False, f"CouchDB unreachable, retrying in 1s: {e}")
                with self._cond:
                    if self._stopping:
                        return {}
                    self._cond.wait(1.0)
