"""Fences: on a CouchDB cluster, a run starts only once a write quorum created its fence.

A fence is a document of its own, `after:run:<run id>`, created (a write without
`_rev`) by the process about to start that run. Each copy of a document takes at most
one creation: a copy that already has the document refuses the next one (409 there).
So of all the processes that ever try to create one run's fence, at most one is
answered 201 (`w` copies took its creation, and `w` is a majority of `n`): that one
runs it. Fences are never updated, and deleted only by a holder that never started
its run (release), so no later write can extend a rival's branch into a second win.
This is what makes "at most once" hold on a cluster whatever the task documents'
conflicts, 202s and stale reads do (docs/guarantees.md, "With a CouchDB cluster").

An answer of 202 (fewer than `w` copies took it in time) decides nothing yet: the
same creation is sent again (the same body, so the same revision: copies that lack it
take it, copies that have it refuse it) until it is answered 201, or 409 from every
copy. Then two quorum reads of the fence (the first repairs disagreeing copies) say
whose it is: ours alone is a win; another process's, or several creations side by
side, is a loss, and the loop leaves that run to its holder (worker.py, _ev_fence).

One thread does the requests; the loop only hands it run ids and hears verdicts.
"""

import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field

from afterd import clock
from afterd.claims import life_of
from afterd.couch import Conflict, CouchError, NotFound
from afterd.task import format_date

log = logging.getLogger("after.fences")

FENCE_PREFIX = "after:run:"
WON, LOST = "won", "lost"
RETRY_FIRST_S = 0.2
RETRY_CAP_S = 2.0
# A fence still undecided this long after the first try (answered 202 then 409 while our
# node could not vouch for its reads: a partition, a node away, or a worker that is not a
# server admin and may not ask) is given up: the run does not start here, and since it may
# exist on a quorum nobody else can win it: the run ends Interrupted (runs.py).
UNDECIDED_AFTER_S = 60.0
UNDECIDED = "undecided (a fence reached too few copies to tell whose it is)"
RIVALS = "several processes (rival creations)"   # the holder of a fence with conflicting leaves


def fence_id(run_id: str) -> str:
    return FENCE_PREFIX + run_id


def is_fence(doc_id: str) -> bool:
    return str(doc_id).startswith(FENCE_PREFIX)


def fence_doc(run_id: str, task_id: str, me, nonce: str, now) -> dict:
    """The fence of one run. The nonce tells our creation from a predecessor's in the
    same slot (same process name), and makes rival creations distinct revisions."""
    return {"_id": fence_id(run_id), "type": "run", "run": run_id, "task": task_id,
            "process": me.process, "pid": me.pid, "started": me.started, "nonce": nonce,
            "at": format_date(now)}


def holder_of(reads: list[dict | None], nonce: str) -> tuple[str, str | None]:
    """(WON or LOST, the holder's process) from two quorum reads of a fence after a 409,
    or ("", None) when they say nothing yet (gone, or the two reads disagree)."""
    first, second = reads
    if first is None or second is None or first.get("_rev") != second.get("_rev"):
        return "", None
    if second.get("_conflicts"):
        return LOST, RIVALS
    # One life of a process (claims.Identity.life): a process started again in the same
    # slot is not the holder of its predecessor's fences.
    holder = life_of(second.get("process"), second.get("pid"), second.get("started"))
    return (WON if second.get("nonce") == nonce else LOST), holder


@dataclass
class Request:
    run_id: str
    task_id: str
    doc: dict
    due_m: float = 0.0
    first_m: float | None = None
    delay_s: float = RETRY_FIRST_S
    tries: int = 0
    release: bool = False
    rev: str | None = field(default=None)


class Fences(threading.Thread):
    def __init__(self, couch, me, on_verdict, on_state, clock=clock):
        super().__init__(name="after-fences", daemon=True)
        self.couch = couch
        self.me = me
        self.clock = clock
        self.on_verdict = on_verdict    # (run_id, task_id, WON | LOST, holder process) -> None
        self.on_state = on_state        # (ok, why) -> None
        self._queue: deque[Request] = deque()
        self._won: dict[str, str] = {}  # run id -> our fence's rev (to release it)
        self._cond = threading.Condition()
        self._stopping = False

    # -- called by the loop ----------------------------------------------------------

    def request(self, run_id: str, task_id: str):
        doc = fence_doc(run_id, task_id, self.me, uuid.uuid4().hex, self.clock.now())
        self._put(Request(run_id, task_id, doc))

    def release(self, run_id: str):
        """We won this run's fence but will not start the run (shut down before its date,
        or the task left us meanwhile): delete the fence so that whoever holds the task
        can create it anew and run it. Safe: nobody else holds it, and it never ran."""
        rev = self._won.pop(run_id, None)
        if rev is not None:
            self._put(Request(run_id, "", {"_id": fence_id(run_id)}, release=True, rev=rev))

    def forget(self, run_id: str):
        """The run began (or was settled): its fence stays, and is no longer ours to release."""
        self._won.pop(run_id, None)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _put(self, req: Request):
        with self._cond:
            self._queue.append(req)
            self._cond.notify()

    # -- the thread --------------------------------------------------------------------

    def run(self):
        while True:
            with self._cond:
                while not self._stopping and not self._due():
                    wait_s = min((r.due_m for r in self._queue), default=None)
                    self._cond.wait(None if wait_s is None else max(0.01, wait_s - self.clock.monotonic_s()))
                if self._stopping:
                    return
            self.step()

    def _due(self) -> bool:
        now_m = self.clock.monotonic_s()
        return any(r.due_m <= now_m for r in self._queue)

    def step(self) -> bool:
        """One request for the first request that is due; False if none is. The thread
        calls it; a test steps it (tests/stepped.py)."""
        now_m = self.clock.monotonic_s()
        with self._cond:
            req = next((r for r in self._queue if r.due_m <= now_m), None)
            if req is None:
                return False
            self._queue.remove(req)
        if req.first_m is None:
            req.first_m = now_m
        try:
            done = self._release(req) if req.release else self._attempt(req)
            self.on_state(True, "")
        except (CouchError, LookupError, TypeError, ValueError) as e:   # wrong shapes too
            self.on_state(False, f"CouchDB unreachable, retrying run fences: {e}")
            done = False
        if not done and not req.release and self.clock.monotonic_s() - req.first_m > UNDECIDED_AFTER_S:
            log.warning("run %s: its fence is still undecided after %gs; not starting it", req.run_id,
                        UNDECIDED_AFTER_S)
            self.on_verdict(req.run_id, req.task_id, LOST, UNDECIDED)
            done = True
        if not done:
            req.tries += 1
            req.due_m = self.clock.monotonic_s() + req.delay_s
            req.delay_s = min(RETRY_CAP_S, req.delay_s * 2)
            self._put(req)
        return True

    def _attempt(self, req: Request) -> bool:
        """One try at a run's fence; True once its verdict is handed to the loop."""
        try:
            rev, quorum = self.couch.put_quorum(req.doc)
        except Conflict:
            # Every copy that answered has a fence of this run. Whose is it? Reads say so
            # only while our node reaches every node (a node cut off reads its own copy
            # alone: a real cluster ran a run twice that way), so ask before and after.
            if not self.couch.whole():
                return False
            reads = [self.couch.get_conflicted(req.doc["_id"]) for _ in range(2)]
            verdict, holder = holder_of(reads, req.doc["nonce"])
            if not verdict or not self.couch.whole():
                return False
            if holder == RIVALS:
                self._withdraw(req, reads[1])
                return False   # asked again: the leaves left say whose it is
            if verdict == WON:
                self._won[req.run_id] = reads[1]["_rev"]
            self.on_verdict(req.run_id, req.task_id, verdict, holder)
            return True
        if not quorum:
            req.rev = rev   # our creation, on fewer copies than w: ours to withdraw (_withdraw)
            if req.tries == 0:
                log.info("run %s: its fence reached fewer copies than the write quorum (202); "
                         "sending it again", req.run_id)
            return False
        self._won[req.run_id] = rev
        self.on_verdict(req.run_id, req.task_id, WON, self.me.life)
        return True

    def _withdraw(self, req: Request, fence: dict):
        """Rival creations of one fence, none answered 201 to us: we never started the
        run, so our leaf authorises nothing. Delete it, and the others' leaves decide
        (a creation answered 201 is the winner's and stays; if every rival withdrew, the
        next creation starts afresh). Left alone, no process could ever hold the fence,
        and the task's owner ended the run Interrupted though nobody ran it (real cluster,
        a node down, two claims racing)."""
        ours = fence["_rev"] if fence.get("nonce") == req.doc["nonce"] else req.rev
        if ours is None or (ours != fence["_rev"] and ours not in fence.get("_conflicts", [])):
            return   # no leaf of ours there (our creation reached no copy): the others withdraw
        log.info("run %s: its fence has rival creations; withdrawing ours (%s)", req.run_id, ours)
        try:
            self.couch.delete(req.doc["_id"], ours)
        except (Conflict, NotFound):
            pass
        req.rev = None

    def _release(self, req: Request) -> bool:
        try:
            self.couch.delete(req.doc["_id"], req.rev)
        except (Conflict, NotFound):
            pass   # nothing of ours to delete there any more
        return True
