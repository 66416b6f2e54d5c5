"""The _changes follower: one thread per worker that hands batches of its tasks to the loop.

Longpoll requests with a client-side deadline (pouchdb-server ignores `timeout=`),
reconnection with capped exponential backoff and full jitter, `seq` treated as opaque
(stored and sent back, never compared or computed), and a checkpoint in a `_local`
document saved only after the worker loop has handled the batch it covers. A crash
between handling and saving re-delivers that batch once (at least once); a server
outage loses and duplicates nothing.
"""

import logging
import random
import threading

from afterd.couch import FINAL_STATUSES, CouchError

log = logging.getLogger(__name__)

REQUEST_DEADLINE_S = 10.0  # each longpoll ends by then and starts again from the last seq
BATCH_LIMIT = 500
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
STOP_WAIT_S = 2.0


def backoff_s(failures: int, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S, rng=random) -> float:
    """Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in [0, min(cap, base*2^(n-1))]."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** max(0, failures - 1)))


def worker_selector(worker: str, owner_process: str | None = None) -> dict:
    # A deleted task's tombstone no longer says whose it was, so every worker is told
    # of every deletion and ignores the ids it does not hold. Likewise a task moved to
    # another worker no longer names us: its owner field still does, until released.
    either = [{"worker": worker}, {"_deleted": True}]
    if owner_process:
        either.append({"owner.process": owner_process})
    return {"$or": either}


def batch_docs(results: list[dict]) -> list[dict]:
    """The documents of one _changes answer; deletions as {"_id", "_rev", "_deleted": True}."""
    docs = []
    for change in results:
        if change["id"].startswith("_design/"):
            continue
        if change.get("deleted") or not change.get("doc"):
            docs.append({"_id": change["id"], "_rev": change["changes"][0]["rev"], "_deleted": True})
        else:
            docs.append(change["doc"])
    return docs


def describe(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


class Feed(threading.Thread):
    """Follows _changes for one worker. on_batch(docs) blocks until the loop handled them."""

    def __init__(self, couch, worker: str, checkpoint: str, on_batch, on_state, *,
                 request_deadline_s: float = REQUEST_DEADLINE_S, batch_limit: int = BATCH_LIMIT,
                 backoff_base_s: float = BACKOFF_BASE_S, backoff_cap_s: float = BACKOFF_CAP_S,
                 owner_process: str | None = None):
        super().__init__(name=f"feed-{worker}", daemon=True)
        self.couch = couch.clone()  # a Session of its own: requests.Session is not shared across threads
        self.worker = worker
        self.checkpoint = checkpoint
        self.owner_process = owner_process
        self.on_batch = on_batch
        self.on_state = on_state
        self.request_deadline_s = request_deadline_s
        self.batch_limit = batch_limit
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._stopping = threading.Event()
        self._failures = 0  # consecutive failed attempts, for the backoff
        self._state = None

    def stop(self, wait_s: float = STOP_WAIT_S) -> bool:
        """Ask the feed to end; True once the thread has ended (a quiet longpoll notices within ~1 s)."""
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(wait_s)
        return not self.is_alive()

    def run(self):
        try:
            self._follow()
        except Exception as e:  # a bug here must be visible, not a silently dead thread
            log.exception("the change feed of worker %s failed", self.worker)
            self.on_state("fatal", f"the change feed stopped: {type(e).__name__}: {e}")

    def _follow(self):
        since = None
        loaded = False
        unsaved = False  # a handled batch whose checkpoint is not written yet
        self._failures = 0
        while not self._stopping.is_set():
            try:
                if not loaded:
                    saved = self.couch.get_local(self.checkpoint)
                    since, loaded = (saved or {}).get("seq", 0), True
                if unsaved:
                    self._save(since)
                    unsaved = False
                results, last_seq = self.couch.changes(
                    since, selector=worker_selector(self.worker, self.owner_process), limit=self.batch_limit,
                    deadline_s=self.request_deadline_s, cancel=self._stopping, on_open=self._opened)
                docs = batch_docs(results)
            except CouchError as e:
                if e.status in FINAL_STATUSES:
                    self.on_state("fatal", str(e))
                    return
                self._pause(str(e))
                continue
            except (LookupError, TypeError, ValueError) as e:
                # An answer of the wrong shape (a broken proxy, a server in trouble):
                # transient like a refused connection; retry from the same seq.
                self._pause(f"CouchDB gave an unusable answer: {type(e).__name__}: {e}")
                continue
            if self._stopping.is_set():
                break  # drop what a request answered after stop(): nobody is listening
            if docs:
                try:
                    self.on_batch(docs)
                except Exception as e:
                    if self._stopping.is_set():
                        break  # the loop refused it because it is stopping: not handled, not saved
                    # Not handled, so not checkpointed: ask again from the same seq.
                    log.exception("handling a batch of %d changes failed", len(docs))
                    self._pause(f"handling {len(docs)} changes failed: {type(e).__name__}: {e}")
                    continue
                unsaved = True
            since = last_seq  # handled: never asked for again, even if the save below fails
            if unsaved:
                try:
                    self._save(since)
                    unsaved = False
                except CouchError as e:
                    log.warning("checkpoint not saved yet (will retry): %s", e)
        if unsaved:
            try:
                self._save(since)
            except CouchError:
                pass  # the next start re-delivers that batch once

    def _save(self, seq):
        self.couch.put_local(self.checkpoint, {"seq": seq, "worker": self.worker})

    def _opened(self):
        """The server accepted a longpoll: the backoff starts over, the loop hears once that we are back."""
        if self._failures or self._state != "connected":
            self._failures = 0
            self._state = "connected"
            self.on_state("connected", f"following changes of worker '{self.worker}' in "
                                       f"{self.couch.safe_url}/{self.couch.database}")

    def _pause(self, reason: str):
        self._failures += 1
        self._state = "retrying"
        delay_s = backoff_s(self._failures, self.backoff_base_s, self.backoff_cap_s)
        self.on_state("retrying", f"retrying in {describe(delay_s)}: {reason}")
        self._stopping.wait(delay_s)
