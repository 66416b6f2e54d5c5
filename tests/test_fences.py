"""A run's fence with rival creations (two processes' creations each reached one copy):
the process that never started the run withdraws its leaf, and the leaf left decides.
Pure logic over a cluster as one process sees it; the real thing is in
tests/faults/test_real_cluster.py and the cluster model's schedules."""

from afterd.claims import Identity, life_of
from afterd.couch import Conflict
from afterd.fences import LOST, RIVALS, Fences, fence_id

ME = Identity(worker="w", host="h1", slot=0, pid=1, started="2026-12-06T10:00:00Z")
RIVAL = Identity(worker="w", host="h2", slot=0, pid=2, started="2026-12-06T10:00:00Z")
RUN = "t1@2026-12-06T18:14:40.652Z#0"


class RivalCreations:
    """Our creation reaches one copy (202), the rival's another; from then on the fence
    has both leaves, until one is deleted."""

    def __init__(self):
        self.leaves = {}        # rev -> body
        self.deleted = []

    def put_quorum(self, doc):
        if self.leaves:
            raise Conflict(doc["_id"])
        self.leaves["1-ours"] = dict(doc)
        self.leaves["1-rival"] = {**doc, "process": RIVAL.process, "pid": RIVAL.pid, "nonce": "rival"}
        return "1-ours", False

    def whole(self):
        return True

    def get_conflicted(self, doc_id):
        revs = sorted(self.leaves, reverse=True)   # CouchDB's winner: the highest revision
        if not revs:
            return None
        doc = {**self.leaves[revs[0]], "_id": doc_id, "_rev": revs[0]}
        if revs[1:]:
            doc["_conflicts"] = revs[1:]
        return doc

    def delete(self, doc_id, rev):
        self.deleted.append(rev)
        del self.leaves[rev]


def test_a_fence_with_rival_creations_is_withdrawn_from_and_the_leaf_left_decides():
    couch, verdicts = RivalCreations(), []
    fences = Fences(couch, ME, on_verdict=lambda *v: verdicts.append(v), on_state=lambda ok, why: None)
    fences.request(RUN, "t1")
    for _ in range(4):   # 202; then 409 and rival leaves: withdraw; then 409 again, one leaf
        fences._queue[0].due_m = 0.0
        fences.step()
        if verdicts:
            break
    # Then only our leaf was deleted, the fence is the rival's, and we wait for its outcome
    # (never "several processes": that holder is nobody, and the run would end Interrupted)
    assert couch.deleted == ["1-ours"]
    assert verdicts == [(RUN, "t1", LOST, life_of(RIVAL.process, RIVAL.pid, RIVAL.started))]
    assert verdicts[0][3] != RIVALS
    assert fence_id(RUN) in {d["_id"] for d in couch.leaves.values()}
