"""The _changes follower: one thread per worker that hands batches of its tasks to the loop.

Longpoll requests with a client-side deadline (pouchdb-server ignores `timeout=`),
reconnection with capped exponential backoff and full jitter, `seq` treated as opaque
(stored and sent back, never compared or computed), and a checkpoint in a `_local`
document saved only after the worker loop has handled the batch it covers (under
load at most once a second, see CHECKPOINT_EVERY_S). A crash between handling and
saving re-delivers those batches once (at least once); a server outage loses and
duplicates nothing.

On a CouchDB cluster a task can get conflicting revisions (two writes accepted on
two nodes). The feed asks for `_conflicts` and, before handing a conflicted task to
the loop, resolves it (afterd/conflicts.py: the same answer on every worker) in one
`_bulk_docs` and hands over the document as it is after that. A failure there is
transient like any other: retry from the same seq.
"""

import logging
import random
import threading

from afterd import claims, clock, conflicts
from afterd.couch import FINAL_STATUSES, CouchError, Unavailable
from afterd.logs import about, about_doc
from afterd.task import is_worker_record

log = logging.getLogger(__name__)

REQUEST_DEADLINE_S = 10.0  # each longpoll ends by then and starts again from the last seq
BATCH_LIMIT = 500
# A crash re-delivers what came after the last save, once: harmless (a decision on a
# task we already hold is a no-op), and far cheaper than a save per batch under load.
CHECKPOINT_EVERY_S = 1.0
# Under load (an answer of BUSY_CHANGES or more), the next request waits GATHER_S so it
# carries more: each request costs pouchdb-server about as much CPU as 20 changes in it,
# and at a few hundred runs a second the feed made one request per ~20 changes. A feed
# that brought a change or two (a POST, an echo, a cancel) asks again at once.
BUSY_CHANGES = 16
GATHER_S = 0.05
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
STOP_WAIT_S = 2.0
# Rounds of read, resolve, write for one conflicted task before giving up for now (each
# round lost to someone else's write); the feed then retries the batch after a pause.
RESOLVE_ROUNDS = 5
# Consecutive failed attempts at resolving a batch before it is handed over unresolved:
# one task the resolution cannot fix must not stop the feed of every other task.
RESOLVE_GIVE_UP_AFTER = 5


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
            # With style=all_docs `changes` lists every leaf; the document's own rev is the winner.
            rev = (change.get("doc") or {}).get("_rev") or change["changes"][0]["rev"]
            docs.append({"_id": change["id"], "_rev": rev, "_deleted": True})
        else:
            docs.append(change["doc"])
    return docs


def has_conflicts(doc: dict) -> bool:
    return bool(doc.get("_conflicts")) and not doc.get("_deleted")


def without_conflicts(doc: dict) -> dict:
    """The document the loop gets: never `_conflicts`, which it would copy into its writes."""
    return {k: v for k, v in doc.items() if k != "_conflicts"}


def tombstone(doc: dict) -> dict:
    return {"_id": doc["_id"], "_rev": doc.get("_rev"), "_deleted": True}


def put_back(couch, doc_id: str, merged: dict) -> dict | None:
    """A task whose every leaf was deleted while its conflict was being resolved (its
    kept leaf deleted as a loser by another feed's resolution at the same moment): write the merged
    task again, so a resolution never deletes a task a user did not delete."""
    log.warning("task %s: its last live revision went while its conflict was resolved; writing it again",
                doc_id, extra=about(doc_id, in_text=True))
    try:
        couch.put({**{k: v for k, v in merged.items() if k != "_rev"}, "_id": doc_id})
    except CouchError as e:
        log.warning("task %s: could not write it again: %s", doc_id, e)
    return couch.get_conflicted(doc_id)


def resolve_conflict(couch, doc: dict, rounds: int = RESOLVE_ROUNDS) -> dict:
    """Resolve a task's conflicting revisions; the task as it is afterwards, for the loop.

    Each round: read the live leaves, compute the resolution (the same on every worker),
    write the merged winner and the leaves' deletions in one _bulk_docs, read the task
    again. A round lost to someone else's write (409, a leaf already gone) starts over
    from what is there now. Raises Unavailable when it keeps losing.
    """
    doc_id = doc["_id"]
    last = ""   # how the last round was lost, for the error message
    for _ in range(rounds):
        if not has_conflicts(doc):
            return without_conflicts(doc)
        revs = [doc["_rev"], *doc["_conflicts"]]
        leaves = couch.open_revs(doc_id, revs)
        resolution = None
        if len(leaves) != len(revs):
            last = f"of leaves {revs} only {[d['_rev'] for d in leaves]} were live"
            log.debug("task %s: %s", doc_id, last, extra=about_doc(doc, in_text=True))
        else:
            resolution = conflicts.resolve(leaves)
            results = couch.write_resolution(resolution.doc, doc_id, resolution.losers)
            refused = [r for r in results if r.get("error") and r.get("error") != "conflict"]
            if refused:
                # validate_doc_update said no to the merge: retrying cannot help. CouchDB's
                # winner stands, the conflict stays visible, and the loop goes on with it.
                log.error("task %s: conflicting revisions %s not resolved, CouchDB refused the "
                          "resolution: %s", doc_id, ", ".join(revs), refused[0].get("reason") or refused[0],
                          extra=about_doc(doc, in_text=True))
                current = couch.get_conflicted(doc_id)
                return without_conflicts(current) if current is not None else tombstone(doc)
            if any(r.get("error") for r in results):
                last = f"writing the resolution of {revs} got {results}"
                log.debug("task %s: %s", doc_id, last, extra=about_doc(doc, in_text=True))
            else:
                log.info("task %s: resolved conflicting revisions %s: %s is its owner, %d leaves deleted",
                         doc_id, ", ".join(revs), claims.owner_of(resolution.merged),
                         len(resolution.losers), extra=about_doc(doc))
        current = couch.get_conflicted(doc_id)
        if current is None and resolution is not None:
            current = put_back(couch, doc_id, resolution.merged)
        if current is None:
            return tombstone(doc)
        doc = current
    if not has_conflicts(doc):
        return without_conflicts(doc)
    raise Unavailable(f"task {doc_id}: its conflicting revisions kept changing while being resolved "
                      f"(last round: {last or 'the task changed meanwhile'})")


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
        self._resolve_failures = 0  # consecutive failed attempts at the conflicts of one batch

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
        saved_m = float("-inf")
        self._failures = 0
        while not self._stopping.is_set():
            try:
                if not loaded:
                    saved = self.couch.get_local(self.checkpoint)
                    since, loaded = (saved or {}).get("seq", 0), True
                if unsaved and clock.monotonic_s() - saved_m >= CHECKPOINT_EVERY_S:
                    self._save(since)
                    unsaved, saved_m = False, clock.monotonic_s()
                results, last_seq = self.couch.changes(
                    since, selector=worker_selector(self.worker, self.owner_process), limit=self.batch_limit,
                    deadline_s=self.request_deadline_s, cancel=self._stopping, on_open=self._opened,
                    conflicts=True, style="all_docs")
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
            try:
                docs = self._resolve_all(docs)
            except (CouchError, LookupError, TypeError, ValueError) as e:
                # Never fatal, whatever the status: not handled, so asked again from the same seq.
                self._resolve_failures += 1
                self._pause(f"resolving conflicting revisions failed: {type(e).__name__}: {e}")
                continue
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
            if len(results) >= BUSY_CHANGES and len(results) < self.batch_limit:
                self._stopping.wait(GATHER_S)
            # Under load, at most one save per CHECKPOINT_EVERY_S (each is a request the
            # server pays for); once the feed is quiet, at once.
            if unsaved and (not results or clock.monotonic_s() - saved_m >= CHECKPOINT_EVERY_S):
                try:
                    self._save(since)
                    unsaved, saved_m = False, clock.monotonic_s()
                except CouchError as e:
                    log.warning("checkpoint not saved yet (will retry): %s", e)
        if unsaved:
            try:
                self._save(since)
            except CouchError:
                pass  # the next start re-delivers that batch once

    def _resolve_all(self, docs: list[dict]) -> list[dict]:
        """The batch with each conflicted task resolved (see resolve_conflict)."""
        if self._resolve_failures >= RESOLVE_GIVE_UP_AFTER:
            self._resolve_failures = 0
            stuck = [d["_id"] for d in docs if has_conflicts(d)]
            log.error("conflicting revisions of %d tasks could not be resolved (%s): handing them over as "
                      "CouchDB chose; the next change of each tries again", len(stuck), ", ".join(stuck[:5]))
            return [without_conflicts(d) for d in docs]
        resolved = []
        for doc in docs:
            if has_conflicts(doc) and not is_worker_record(doc):
                doc = resolve_conflict(self.couch, doc)
            resolved.append(without_conflicts(doc))
        self._resolve_failures = 0
        return resolved

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
