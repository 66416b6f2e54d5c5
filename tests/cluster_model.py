"""A CouchDB cluster in memory, behind the Store protocol (afterd/store.py).

`Cluster` holds `n` copies of every document (one per node; a single shard range,
q=1), each copy with its own revision tree, and answers requests as CouchDB 3.4.3's
fabric layer does. `Node(cluster, i)` is the Store a process talks to: node `i` is the
coordinator of its requests. Every rule below names the file and function of CouchDB
it comes from (src/ of apache/couchdb at tag 3.4.3); docs/cluster-model.md sums up what
is modelled and what is not.

Everything random comes from `cluster.rng` (a random.Random the caller seeds): which
copies answer in time, which copy serves a one-copy read, in which order replies come.
Nothing reads a clock and nothing runs in a thread, so a schedule replays exactly.

Faults, set by the caller (tests/cluster_schedules.py):
- `down`: a node that answers nothing; its copy keeps what it had. A request to it as
  coordinator fails like a refused connection (Unavailable), before touching anything.
- `slow`: a node whose copy does not answer a coordinator in time: its share of a
  write is not counted in the answer, and is applied later (`late`), checked against
  that copy's leaves *then*; it does not count towards a read quorum either.
- `lose_answer`: the probability that a write's answer is lost on the way back (the
  client sees a timeout, Unavailable), after the copies applied it.
Internal replication (mem3_rep) is `replicate_one()` / `drain()`: it copies revision
paths from one copy to another, in any order, as new_edits=false merges.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import json
import random
import uuid

from afterd import mango
from afterd.couch import DESIGN_ID, Conflict, CouchError, Forbidden, NotFound, Unavailable, should_replace
from afterd.store import _attachments

N, W, R = 3, 2, 2


class Rev:
    """One revision of a document: the same object on every copy that has it (a revision
    id names its content, couch_db:new_revid)."""
    __slots__ = ("rev", "parent", "text", "deleted", "data", "gen", "path")

    def __init__(self, rev: str, parent: "Rev | None", body: dict, deleted: bool, data: dict):
        self.rev, self.parent, self.deleted, self.data = rev, parent, deleted, data
        self.text = json.dumps(body)   # immutable: each read parses its own copy
        self.gen = int(rev.split("-", 1)[0])
        self.path = frozenset([rev]) | (parent.path if parent else frozenset())   # rev and ancestors

    @property
    def body(self) -> dict:
        return json.loads(self.text)

    def key(self):
        # couch_doc:to_doc_info / couch_key_tree: the winner sorts highest on
        # {not deleted, position (generation), revision id}.
        return (not self.deleted, self.gen, self.rev.split("-", 1)[1])

    def doc(self, doc_id: str) -> dict:
        if self.deleted:
            return {"_id": doc_id, "_rev": self.rev, "_deleted": True}
        return {"_id": doc_id, "_rev": self.rev, **json.loads(self.text)}


class Copy:
    """One node's copy of the database: revision trees, a sequence, _local documents."""

    def __init__(self, index: int):
        self.index = index
        self.trees: dict[str, dict[str, Rev]] = {}   # doc id -> every revision this copy has
        self.seq = 0
        self.changed: dict[str, int] = {}            # doc id -> seq of its latest change here
        self.local: dict[str, dict] = {}
        self.dirty: set[str] = set()                 # shared with the cluster: documents that may differ

    def leaves(self, doc_id: str) -> list[Rev]:
        # couch_key_tree:get_all_leafs: revisions nobody here extends.
        tree = self.trees.get(doc_id)
        if not tree:
            return []
        parents = {r.parent.rev for r in tree.values() if r.parent is not None}
        return [r for rev, r in tree.items() if rev not in parents]

    def winner(self, doc_id: str) -> Rev | None:
        leaves = self.leaves(doc_id)
        return max(leaves, key=Rev.key) if leaves else None

    def reply(self, doc_id: str, conflicts: bool) -> dict | None:
        """What this copy answers a single-document read (fabric_rpc:open_doc): its winner,
        with `_conflicts` from its own tree (couch_doc:to_json_obj, the conflicts option)."""
        win = self.winner(doc_id)
        if win is None:
            return None
        doc = win.doc(doc_id)
        if conflicts and not win.deleted:
            others = sorted((r for r in self.leaves(doc_id) if r is not win and not r.deleted),
                            key=Rev.key, reverse=True)
            if others:
                doc["_conflicts"] = [r.rev for r in others]
        return doc

    def merge_path(self, doc_id: str, leaf: Rev) -> bool:
        """new_edits=false: merge a revision and its ancestors (couch_db_updater:merge_rev_tree,
        the replicated-changes clause; couch_key_tree:merge). True if anything was new."""
        tree = self.trees.setdefault(doc_id, {})
        added = False
        r = leaf
        while r is not None and r.rev not in tree:
            tree[r.rev] = r
            added = True
            r = r.parent
        if added:
            self.bump(doc_id)
            self.dirty.add(doc_id)
        return added

    def bump(self, doc_id: str):
        self.seq += 1
        self.changed[doc_id] = self.seq


class Cluster:
    """n copies of one database, and the pending work between them."""

    def __init__(self, rng: random.Random, *, n: int = N, w: int = W, r: int = R, validate=None,
                 database: str = "tasks"):
        self.rng, self.n, self.w, self.r = rng, n, w, r
        self.database = database
        self.validate = validate
        self.copies = [Copy(i) for i in range(n)]
        self.dirty: set[str] = set()   # documents some copy changed since they were last equal
        for c in self.copies:
            c.dirty = self.dirty
        self.down: set[int] = set()
        self.slow: set[int] = set()
        self.lose_answer = 0.0
        self.late: list[tuple[int, str, dict]] = []   # (copy, doc id, edit): a slow copy's share of a write
        self.requests = 0

    def node(self, i: int) -> "Node":
        return Node(self, i)

    def live(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.down]

    def answering(self) -> list[int]:
        """Copies that answer a coordinator in time, in the order their replies arrive."""
        copies = [i for i in self.live() if i not in self.slow]
        self.rng.shuffle(copies)
        return copies

    # -- one copy's update (couch_db.erl, couch_db_updater.erl) -----------------------------

    def edit_on(self, c: Copy, doc_id: str, edit: dict) -> tuple:
        """An interactive edit (new_edits=true) on one copy: ("ok", rev) | ("conflict",) |
        ("forbidden", reason) | ("error", status, message)."""
        rev = edit.get("_rev")
        deleted = bool(edit.get("_deleted"))
        tree = c.trees.get(doc_id, {})
        leaves = c.leaves(doc_id)
        if rev is not None:
            # couch_db:prep_and_validate_update: the _rev must be a leaf of this copy's
            # tree (deleted leaves too), else conflict.
            parent = next((r for r in leaves if r.rev == rev), None)
            if parent is None:
                return ("conflict",)
        else:
            # The same function, `[]` branch: no _rev is a conflict when the document
            # exists here undeleted; on a deleted one, couch_db_updater:merge_rev_tree
            # (first clause) makes the new revision a child of the deleted winner.
            win = max(leaves, key=Rev.key) if leaves else None
            if win is not None and (not win.deleted or deleted):
                return ("conflict",)
            parent = win
        body = {k: _copy.deepcopy(v) for k, v in edit.items() if k not in ("_id", "_rev", "_deleted")}
        if deleted:
            body = {}
        generation = (parent.gen if parent else 0) + 1
        data = {}
        what = f"document '{doc_id}'"
        if "_attachments" in body:
            current = parent if parent is not None and not parent.deleted else None
            try:
                body["_attachments"], data = _attachments(body["_attachments"], current, generation, what)
            except CouchError as e:
                return ("error", e.status, str(e))
            if not body["_attachments"]:
                del body["_attachments"]
        if self.validate is not None and not doc_id.startswith("_design/"):
            # couch_db:validate_doc_update: design documents are not validated.
            old = parent.doc(doc_id) if parent is not None and not parent.deleted else None
            new = {"_id": doc_id, **({"_rev": rev} if rev is not None else {})}
            new.update({"_deleted": True} if deleted else body)
            try:
                self.validate(new, old)
            except Forbidden as e:
                return ("forbidden", e.reason)
        # couch_db:new_revid: a hash of the previous revision and the new content, so
        # every copy that takes the same edit makes the same revision.
        digest = hashlib.md5(json.dumps([parent.rev if parent else None, deleted, body], sort_keys=True,
                                        default=str).encode()).hexdigest()
        new_rev = f"{generation}-{digest}"
        node = tree.get(new_rev) or Rev(new_rev, parent, body, deleted, data)
        c.merge_path(doc_id, node)
        return ("ok", new_rev)

    # -- a write through a coordinator (fabric_doc_update.erl) ------------------------------

    def update(self, docs: list[dict]) -> list[tuple]:
        """Each document to every copy; per document ("201"|"202", rev) or an error reply.

        fabric_doc_update:go sends every document to its n copies; handle_message
        counts replies; update_quorum_met: `w` identical {ok, Rev} replies are a win
        (201); force_reply, once every copy answered or the request timed out: some ok
        below w is {accepted, Rev} (202); no ok at all: the replies' error if they agree
        (or the first one's: mismatched errors); no reply at all: internal_server_error.
        A copy that does not answer in time still applies the write later (`late`)."""
        self.requests += 1
        answering = self.answering()
        slow = [i for i in self.live() if i in self.slow]
        answers = []
        for doc in docs:
            doc_id = doc["_id"]
            replies = [self.edit_on(self.copies[i], doc_id, doc) for i in answering]
            for i in slow:
                self.late.append((i, doc_id, _copy.deepcopy(doc)))
            answers.append(quorum_answer(replies, self.w))
        return answers

    def apply_late(self, k: int):
        i, doc_id, edit = self.late.pop(k)
        if i in self.down:
            self.late.append((i, doc_id, edit))   # it lands once the node is back
        elif doc_id.startswith("_local/"):
            self.copies[i].local[doc_id[len("_local/"):]] = edit
        else:
            self.edit_on(self.copies[i], doc_id, edit)

    # -- a single-document read (fabric_doc_open.erl) ---------------------------------------

    def open(self, doc_id: str, conflicts: bool) -> dict | None:
        """The document as fabric_doc_open answers it; None for not_found (missing or deleted).

        handle_message / is_r_met: replies come in (random) order until `r` identical
        ones; handle_response: if every reply received is identical, that one; if the
        others are ancestors of it (fabric_util:remove_ancestors, where not_found is an
        ancestor of any document), that one and an asynchronous read repair; else a
        read repair first (read_repair: every reply's revisions are written to the
        copies, new_edits=false) and choose_reply: the highest {not deleted, rev} among
        the replies, with the `_conflicts` of the copy that sent it. Without r replies
        (copies down or slow): read_repair on what came (no_more_workers)."""
        self.requests += 1
        replies: list[dict | None] = []
        counts: dict[str, int] = {}
        met = False
        for i in self.answering():
            reply = self.copies[i].reply(doc_id, conflicts)
            replies.append(reply)
            k = _reply_key(reply)
            counts[k] = counts.get(k, 0) + 1
            if counts[k] >= self.r:
                met, quorum = True, reply
                break
        if not replies:
            raise Unavailable(f"document '{doc_id}': no copy answered (500 read_failure)", 500)
        docs = [d for d in replies if d is not None]
        if met and len(counts) == 1:
            return _found(quorum)   # complete agreement
        if met and quorum is not None and all(
                d is None or _reply_key(d) == _reply_key(quorum) or self._is_ancestor(doc_id, d["_rev"], quorum["_rev"])
                for d in replies):
            self.read_repair(doc_id, docs)   # asynchronous in CouchDB; at once here
            return _found(quorum)
        if not docs:
            return None
        self.read_repair(doc_id, docs)
        chosen = max(docs, key=lambda d: (not d.get("_deleted"), *_rev_order(d["_rev"])))
        return _found(chosen)

    def _is_ancestor(self, doc_id: str, rev: str, of: str) -> bool:
        node = self._find_rev(doc_id, of)
        return node is not None and rev in node.path and rev != of

    def _find_rev(self, doc_id: str, rev: str) -> Rev | None:
        for c in self.copies:
            r = c.trees.get(doc_id, {}).get(rev)
            if r is not None:
                return r
        return None

    def read_repair(self, doc_id: str, docs: list[dict]):
        """fabric_doc_open:read_repair: fabric:update_docs(..., ?REPLICATED_CHANGES) of every
        reply's revision, to every live copy."""
        for d in docs:
            node = self._find_rev(doc_id, d["_rev"])
            for i in self.live():
                self.copies[i].merge_path(doc_id, node)

    # -- internal replication (mem3_rep.erl) --------------------------------------------------

    def divergent(self) -> list[tuple[int, int, str]]:
        """(from, to, doc id) where copy `to` lacks a revision copy `from` has (both up)."""
        out = []
        live = self.live()
        empty: dict = {}
        for doc_id in sorted(self.dirty):
            trees = [self.copies[i].trees.get(doc_id, empty) for i in range(self.n)]
            found = False
            for a in live:
                for b in live:
                    if a != b and not trees[a].keys() <= trees[b].keys():
                        out.append((a, b, doc_id))
                        found = True
            if not found and all(t.keys() == trees[0].keys() for t in trees):
                self.dirty.discard(doc_id)   # equal on every copy, down ones included
        return out

    def replicate(self, a: int, b: int, doc_id: str):
        """mem3_rep: push every leaf's path of one document from copy a to copy b
        (new_edits=false: merged, never refused)."""
        for leaf in self.copies[a].leaves(doc_id):
            self.copies[b].merge_path(doc_id, leaf)

    def replicate_one(self) -> bool:
        pending = self.divergent()
        if not pending:
            return False
        self.replicate(*self.rng.choice(pending))
        return True

    def drain(self):
        """Everything up, every late write applied, every copy equal (for a quiet end)."""
        while self.late:
            self.apply_late(0)
        for _ in range(1000):
            pending = self.divergent()
            if not pending:
                return
            for p in pending:
                self.replicate(*p)
        raise AssertionError("replication did not converge")

    # -- what the harness checks ----------------------------------------------------------------

    def conflicted(self) -> dict[str, list[str]]:
        """Documents with more than one live leaf on some copy: id -> live leaves."""
        out = {}
        for c in self.copies:
            for doc_id in c.trees:
                live = [r.rev for r in c.leaves(doc_id) if not r.deleted]
                if len(live) > 1:
                    out[doc_id] = sorted(live)
        return out


def quorum_answer(replies: list[tuple], w: int) -> tuple:
    """fabric_doc_update:update_quorum_met and force_reply, for one document's replies."""
    counts: dict[tuple, int] = {}
    for rep in replies:
        counts[rep] = counts.get(rep, 0) + 1
    for rep, k in counts.items():
        if rep[0] == "ok" and k >= w:
            return ("201", rep[1])
    oks = [rep for rep in replies if rep[0] == "ok"]
    if oks:
        return ("202", oks[0][1])
    if not replies:
        return ("error", 500, "internal_server_error")
    # Identical errors: that error; mismatched ones: the first reply's (check_forbidden_msg
    # only matters with noreply answers, which new_edits=true never gives).
    return replies[0]


def _reply_key(doc: dict | None) -> str:
    return "not_found" if doc is None else json.dumps(doc, sort_keys=True)


def _rev_order(rev: str) -> tuple:
    gen, _, digest = rev.partition("-")
    return int(gen), digest


def _found(doc: dict | None) -> dict | None:
    # fabric_doc_open:format_reply: a deleted winner is not_found.
    return None if doc is None or doc.get("_deleted") else doc


def _seq_text(copy_index: int, n: int) -> str:
    return f"{n}-c{copy_index}"


def _seq_parts(since) -> tuple[int | None, int]:
    if since in (None, "", "0", 0):
        return None, 0
    try:
        n, _, c = str(since).partition("-c")
        return int(c), int(n)
    except ValueError:
        raise CouchError(f"_changes: CouchDB answered 400 bad_request: malformed since {since!r}", 400) from None


class Node:
    """The Store a process talks to: node `index` coordinates its requests (afterd/store.py's
    protocol, answering as afterd/couch.py maps CouchDB's answers)."""

    def __init__(self, cluster: Cluster, index: int):
        self.cluster, self.index = cluster, index
        self.database = cluster.database
        self.safe_url = f"model:node{index}"

    def clone(self) -> "Node":
        return self

    def __repr__(self):
        return f"Node({self.index})"

    def _up(self):
        if self.index in self.cluster.down:
            raise Unavailable(f"CouchDB at node{self.index} is unreachable: connection refused")

    def _one_copy(self, prefer: int | None = None) -> Copy:
        """The copy that serves a one-copy request (_changes, _all_docs, _find, views:
        fabric_view picks one live copy of each shard range); `prefer` is the copy a
        _changes `since` names (fabric_view_changes keeps it while it is up)."""
        live = self.cluster.live()
        if prefer is not None and prefer in live:
            return self.cluster.copies[prefer]
        return self.cluster.copies[self.cluster.rng.choice(live)]

    def _lost_answer(self):
        if self.cluster.lose_answer and self.cluster.rng.random() < self.cluster.lose_answer:
            raise Unavailable(f"CouchDB at node{self.index} did not answer within 10s")

    # -- server and database ---------------------------------------------------------------

    def info(self) -> dict:
        self._up()
        return {"couchdb": "Welcome", "version": "3.4.3-model"}

    def quorum(self) -> dict:
        self._up()
        return {"q": 1, "n": self.cluster.n, "w": self.cluster.w, "r": self.cluster.r}

    def whole(self) -> bool:
        """GET /_membership: all_nodes holds every cluster node (mem3:nodes vs nodes())."""
        self._up()
        return not self.cluster.down

    def ensure_database(self) -> bool:
        self._up()
        return False

    def ensure_design(self, doc: dict | None = None) -> bool:
        if doc is None:
            from afterd.design import design_doc
            doc = design_doc()
        want = {**doc, "_id": DESIGN_ID}
        want.pop("_rev", None)
        current = self.get_conflicted(DESIGN_ID)
        if current is not None and not should_replace(current.get("version"), want.get("version")):
            return False
        if current is not None:
            want["_rev"] = current["_rev"]
        self.put(want)
        return True

    def put_security(self, security: dict) -> None:
        self._up()

    def update_seq(self):
        self._up()
        c = self._one_copy()
        return _seq_text(c.index, c.seq)

    # -- documents --------------------------------------------------------------------------

    def get(self, doc_id: str) -> dict:
        self._up()
        if doc_id.startswith("_local/"):
            doc = self.get_local(doc_id[len("_local/"):])
            if doc is None:
                raise NotFound(f"document '{doc_id}': not found (missing)", 404)
            return doc
        doc = self.cluster.open(doc_id, conflicts=False)
        if doc is None:
            raise NotFound(f"document '{doc_id}': not found (missing)", 404)
        return doc

    def get_conflicted(self, doc_id: str) -> dict | None:
        self._up()
        return self.cluster.open(doc_id, conflicts=True)

    def _write_one(self, doc: dict, what: str) -> tuple[str, bool]:
        """(rev, quorum) of one document's PUT, or the error Couch._error raises."""
        self._up()
        if doc["_id"].startswith("_local/"):
            return self._put_local_doc(doc), True
        answer = self.cluster.update([doc])[0]
        self._lost_answer()
        if answer[0] == "201":
            return answer[1], True
        if answer[0] == "202":
            return answer[1], False
        raise _error(answer, what)

    def put(self, doc: dict) -> str:
        return self._write_one(doc, f"document '{doc['_id']}'")[0]

    def put_quorum(self, doc: dict) -> tuple[str, bool]:
        return self._write_one(doc, f"document '{doc['_id']}'")

    def post(self, doc: dict) -> tuple[str, str]:
        doc = {**doc, "_id": doc.get("_id") or uuid.UUID(int=self.cluster.rng.getrandbits(128)).hex}
        return doc["_id"], self._write_one(doc, "new document")[0]

    def delete(self, doc_id: str, rev: str) -> str:
        if not rev:
            raise ValueError(f"delete of '{doc_id}' needs the document's current _rev")
        return self._write_one({"_id": doc_id, "_rev": rev, "_deleted": True}, f"document '{doc_id}'")[0]

    def bulk(self, docs: list[dict]) -> list[dict]:
        """_bulk_docs: per document as chttpd_db:update_doc_result_to_json answers it
        (`"accepted": true` on a 202 document); a document no copy answered makes the
        whole request fail (fabric_doc_update:ensure_all_responses: 500)."""
        self._up()
        if not docs:
            return []
        docs = [{**d, "_id": d.get("_id") or uuid.UUID(int=self.cluster.rng.getrandbits(128)).hex}
                for d in docs]
        answers = self.cluster.update(docs)
        if any(a[0] == "error" and a[1] == 500 for a in answers):
            raise Unavailable(f"CouchDB at node{self.index} failed on bulk write: 500 internal_server_error", 500)
        self._lost_answer()
        out = []
        for doc, a in zip(docs, answers):
            if a[0] == "201":
                out.append({"id": doc["_id"], "rev": a[1]})
            elif a[0] == "202":
                out.append({"id": doc["_id"], "rev": a[1], "accepted": True})
            elif a[0] == "conflict":
                out.append({"id": doc["_id"], "error": "conflict", "reason": "Document update conflict."})
            elif a[0] == "forbidden":
                out.append({"id": doc["_id"], "error": "forbidden", "reason": a[1]})
            else:
                out.append({"id": doc["_id"], "error": "missing_stub" if a[1] == 412 else "bad_request",
                            "reason": a[2]})
        return out

    def get_attachment(self, doc_id: str, name: str) -> bytes:
        self._up()
        doc = self.cluster.open(doc_id, conflicts=False)
        node = self.cluster._find_rev(doc_id, doc["_rev"]) if doc else None
        if node is None or name not in node.data:
            raise NotFound(f"attachment '{name}' of document '{doc_id}': not found (missing)", 404)
        return node.data[name]

    def open_revs(self, doc_id: str, revs: list[str]) -> list[dict]:
        """fabric_doc_open_revs, simplified: the asked revisions that some replying copy
        (r of them) holds as a live leaf. (Its read repair is not modelled.)"""
        self._up()
        self.cluster.requests += 1
        answering = self.cluster.answering()[: self.cluster.r]
        if not answering:
            raise Unavailable(f"revisions of document '{doc_id}': no copy answered", 500)
        found = {}
        for i in answering:
            for leaf in self.cluster.copies[i].leaves(doc_id):
                if leaf.rev in revs and not leaf.deleted:
                    found[leaf.rev] = leaf.doc(doc_id)
        return [found[r] for r in revs if r in found]

    def write_resolution(self, doc: dict | None, doc_id: str, losers: list[str]) -> list[dict]:
        # Couch.write_resolution: the merge first, the deletions only once it is written.
        answers = self.bulk([doc]) if doc is not None else []
        if any(r.get("error") for r in answers):
            return answers
        return answers + self.bulk([{"_id": doc_id, "_rev": rev, "_deleted": True} for rev in losers])

    # -- _local documents (couch_db_updater:update_local_doc_revs) ------------------------------

    def _put_local_doc(self, doc: dict) -> str:
        """A _local write goes to every copy through fabric_doc_update like any other and is
        answered by the same quorum rule, but a copy never refuses it: its revision is the
        client's `_rev` plus one (increment_local_doc_revs; conflict checking disabled since
        CouchDB commit b679dca4a). Not replicated (mem3_rep skips _local documents)."""
        name = doc["_id"][len("_local/"):]
        cl = self.cluster
        cl.requests += 1
        try:
            prev = int(str(doc.get("_rev") or "0-0").split("-", 1)[1])
        except ValueError:
            raise CouchError(f"document '{doc['_id']}': CouchDB answered 400 bad_request: Invalid rev format", 400)
        rev = "0-0" if doc.get("_deleted") else f"0-{prev + 1}"
        body = {**_copy.deepcopy(doc), "_rev": rev}
        answering = cl.answering()
        for i in answering:
            if doc.get("_deleted"):
                cl.copies[i].local.pop(name, None)
            else:
                cl.copies[i].local[name] = body
        for i in cl.live():
            if i in cl.slow:
                cl.late.append((i, doc["_id"], body))
        if not answering:
            raise Unavailable(f"CouchDB at node{self.index} failed on document '{doc['_id']}': 500", 500)
        self._lost_answer()
        self._local_status = "201" if len(answering) >= cl.w else "202"
        return rev

    def get_local(self, name: str) -> dict | None:
        """fabric_doc_open on a _local id: r identical replies, else choose_reply over what
        came (read_repair skips _local documents): the highest revision."""
        self._up()
        cl = self.cluster
        cl.requests += 1
        replies, counts = [], {}
        for i in cl.answering():
            reply = cl.copies[i].local.get(name)
            replies.append(reply)
            k = _reply_key(reply)
            counts[k] = counts.get(k, 0) + 1
            if counts[k] >= cl.r:
                return _copy.deepcopy(reply)
        if not replies:
            raise Unavailable(f"document '_local/{name}': no copy answered (500 read_failure)", 500)
        docs = [d for d in replies if d is not None]
        if not docs:
            return None
        return _copy.deepcopy(max(docs, key=lambda d: int(d["_rev"].split("-")[1])))

    def put_local(self, name: str, body: dict) -> None:
        current = self.get_local(name)
        doc = {**body, "_id": "_local/" + name}
        if current:
            doc["_rev"] = current["_rev"]
        self._write_one(doc, f"_local/{name}")

    def create_local(self, name: str, body: dict) -> str:
        """A _local write without `_rev` ("create"): "won" on 201, "unsure" on 202. CouchDB
        never answers it 409 (see _put_local_doc), so it is never "lost"."""
        self._write_one({**body, "_id": "_local/" + name}, f"_local/{name}")
        return "won" if self._local_status == "201" else "unsure"

    # -- one-copy reads ------------------------------------------------------------------------

    def _live_docs(self, c: Copy) -> list[dict]:
        out = []
        for doc_id in sorted(c.trees):
            win = c.winner(doc_id)
            if win is not None and not win.deleted:
                out.append(win.doc(doc_id))
        return out

    def find(self, selector: dict, *, fields=None, limit=None, sort=None, page_size: int = 0) -> list[dict]:
        self._up()
        self.cluster.requests += 1
        c = self._one_copy()
        found = [d for d in self._live_docs(c) if not d["_id"].startswith("_design/") and mango.matches(d, selector)]
        for spec in reversed(sort or []):
            field, direction = next(iter(spec.items())) if isinstance(spec, dict) else (spec, "asc")
            found.sort(key=lambda d: mango.collate(mango.field(d, field)), reverse=direction == "desc")
        if limit is not None:
            found = found[:limit]
        if fields is not None:
            found = [mango.project(d, [*fields, "_id"]) for d in found]
        return found

    def docs_with_prefix(self, prefix: str) -> list[dict]:
        self._up()
        self.cluster.requests += 1
        return [d for d in self._live_docs(self._one_copy()) if d["_id"].startswith(prefix)]

    def scan(self, selector: dict, page_size: int = 2000, conflicts: bool = False):
        since = "0"
        while True:
            results, since = self.changes(since, selector=selector, limit=page_size, deadline_s=0,
                                          conflicts=conflicts)
            if not results:
                return
            yield [r["doc"] for r in results if not r.get("deleted")]

    def changes(self, since, *, selector: dict | None = None, limit: int | None = None,
                deadline_s: float = 10.0, cancel=None, on_open=None, conflicts: bool = False,
                style: str | None = None) -> tuple[list[dict], object]:
        """One _changes request, answered at once from ONE copy (fabric_view_changes: the
        copy `since` names while it is up; another one from its start otherwise: the
        model's stand-in for mem3_rep:find_source_seq). Each document once, at its
        latest change on that copy, with that copy's winner (and `_conflicts`)."""
        self._up()
        self.cluster.requests += 1
        prefer, after = _seq_parts(since)
        if since == "now":
            c = self._one_copy()
            return [], _seq_text(c.index, c.seq)
        c = self._one_copy(prefer)
        if prefer is not None and c.index != prefer:
            after = 0
        if on_open is not None:
            on_open()
        results = []
        for doc_id, seq in sorted(c.changed.items(), key=lambda kv: kv[1]):
            if seq <= after:
                continue
            win = c.winner(doc_id)
            doc = c.reply(doc_id, conflicts)
            leaves = c.leaves(doc_id)
            if selector is not None and not (mango.matches(doc, selector) or (style == "all_docs" and any(
                    mango.matches(r.doc(doc_id), selector) for r in leaves))):
                continue
            changes = [{"rev": win.rev}]
            if style == "all_docs":
                changes += [{"rev": r.rev} for r in sorted(leaves, key=Rev.key, reverse=True) if r is not win]
            row = {"seq": _seq_text(c.index, seq), "id": doc_id, "changes": changes, "doc": doc}
            if win.deleted:
                row["deleted"] = True
            results.append(row)
            if limit is not None and len(results) >= limit:
                break
        full = limit is not None and len(results) >= limit
        return results, results[-1]["seq"] if full else _seq_text(c.index, c.seq)


def _error(answer: tuple, what: str) -> CouchError:
    """The exception Couch._error makes of a status (afterd/couch.py)."""
    kind = answer[0]
    if kind == "conflict":
        return Conflict(f"{what}: conflict, the document changed since it was read", 409)
    if kind == "forbidden":
        return Forbidden(f"{what} refused: {answer[1]}", answer[1], 403)
    status, message = answer[1], answer[2]
    if status >= 500:
        return Unavailable(f"CouchDB failed on {what}: {status} {message}", status)
    return CouchError(message, status)
