"""One contract for the store, run against both: MemoryStore and Couch on the test server.

The CouchDB side runs on pouchdb-server, or on a real CouchDB with
AFTER_TEST_COUCHDB_URL. A case here states what after relies on; where the two
servers differ (tests/../shared notes: seq types, delete without rev) the case
asserts only what both promise: seq is opaque, deletions always carry a rev.
"""

import threading

import pytest
import requests

from afterd.couch import DESIGN_ID, Conflict, Forbidden, NotFound
from afterd.store import MemoryStore, Store, forbidden
from helpers import wait_for

VALIDATE_JS = """function (newDoc, oldDoc, userCtx) {
  if (newDoc.forbid) { throw({forbidden: "forbid: " + newDoc.forbid}); }
  if (newDoc._deleted && oldDoc && oldDoc.keep) { throw({forbidden: "keep: " + newDoc._id}); }
}"""


def validate(new, old):
    """VALIDATE_JS, for the MemoryStore."""
    if new.get("forbid"):
        raise forbidden(f"forbid: {new['forbid']}")
    if new.get("_deleted") and old and old.get("keep"):
        raise forbidden(f"keep: {new['_id']}")


@pytest.fixture(params=["memory", "couchdb"])
def store(request):
    if request.param == "memory":
        return MemoryStore("contract")
    return request.getfixturevalue("couch")


@pytest.fixture(params=["memory", "couchdb"])
def validated_store(request):
    if request.param == "memory":
        return MemoryStore("contract", validate=validate)
    couch = request.getfixturevalue("couch")
    couch.put({"_id": "_design/contract", "validate_doc_update": VALIDATE_JS})
    return couch


def generation(rev: str) -> int:
    return int(rev.split("-", 1)[0])


def feed_ids(results) -> list[str]:
    return [r["id"] for r in results if not r["id"].startswith("_design/")]


# ---- documents and revisions ----------------------------------------------------------------

def test_both_stores_have_the_protocol(store):
    assert isinstance(store, Store)
    assert isinstance(store.clone(), Store)


def test_put_then_get_and_each_write_adds_a_generation(store):
    rev1 = store.put({"_id": "a", "n": 1})
    assert generation(rev1) == 1
    assert store.get("a") == {"_id": "a", "_rev": rev1, "n": 1}
    rev2 = store.put({"_id": "a", "_rev": rev1, "n": 2})
    assert generation(rev2) == 2 and rev2 != rev1
    assert store.get("a")["n"] == 2


def test_a_stale_or_missing_rev_is_a_conflict(store):
    rev1 = store.put({"_id": "a", "n": 1})
    store.put({"_id": "a", "_rev": rev1, "n": 2})
    with pytest.raises(Conflict) as stale:
        store.put({"_id": "a", "_rev": rev1, "n": 3})
    assert stale.value.status == 409
    with pytest.raises(Conflict):
        store.put({"_id": "a", "n": 4})
    assert store.get("a")["n"] == 2


def test_post_chooses_the_id(store):
    doc_id, rev = store.post({"n": 1})
    assert doc_id and generation(rev) == 1
    assert store.get(doc_id)["n"] == 1


def test_get_of_a_missing_document_is_not_found(store):
    with pytest.raises(NotFound) as e:
        store.get("nobody")
    assert e.value.status == 404


def test_delete_leaves_a_tombstone_and_the_id_can_be_used_again(store):
    rev1 = store.put({"_id": "a", "n": 1})
    rev2 = store.put({"_id": "a", "_rev": rev1, "n": 2})
    with pytest.raises(ValueError):
        store.delete("a", "")                 # always with a rev (pouchdb-server would not ask)
    with pytest.raises(Conflict):
        store.delete("a", rev1)               # no longer the current rev
    tombstone = store.delete("a", rev2)
    assert generation(tombstone) == 3
    with pytest.raises(NotFound):
        store.get("a")
    assert store.find({"n": 2}) == []
    again = store.put({"_id": "a", "n": 3})   # over the tombstone: no _rev needed
    assert generation(again) == 4
    assert store.get("a")["n"] == 3


def test_bulk_answers_per_document(store):
    rev_a = store.put({"_id": "a", "n": 1})
    store.put({"_id": "b", "n": 1})
    stale = store.put({"_id": "d", "n": 1})
    store.put({"_id": "d", "_rev": stale, "n": 2})
    answers = store.bulk([{"_id": "a", "_rev": rev_a, "n": 2},        # fine
                          {"_id": "b", "n": 2},                       # no _rev: conflict
                          {"_id": "c", "n": 1},                       # new
                          {"_id": "d", "_rev": stale, "_deleted": True}])  # stale: conflict
    # One answer per document, matched by id: pouchdb-server does not keep the order.
    by_id = {a["id"]: a for a in answers}
    assert len(answers) == 4 and sorted(by_id) == ["a", "b", "c", "d"]
    assert generation(by_id["a"]["rev"]) == 2
    assert by_id["b"]["error"] == "conflict"
    assert generation(by_id["c"]["rev"]) == 1
    assert by_id["d"]["error"] == "conflict"
    assert [store.get(i)["n"] for i in "abcd"] == [2, 1, 1, 2]
    assert store.bulk([]) == []


def test_bulk_deletes(store):
    rev = store.put({"_id": "a", "n": 1})
    [answer] = store.bulk([{"_id": "a", "_rev": rev, "_deleted": True}])
    assert generation(answer["rev"]) == 2
    with pytest.raises(NotFound):
        store.get("a")


def test_local_documents_are_kept_but_never_in_the_feed(store):
    assert store.get_local("checkpoint") is None
    store.put_local("checkpoint", {"seq": "x"})
    store.put_local("checkpoint", {"seq": "y"})       # replaces, whatever its rev
    assert store.get_local("checkpoint")["seq"] == "y"
    results, _ = store.changes("0", deadline_s=0.5)
    assert feed_ids(results) == []


# ---- validation -------------------------------------------------------------------------------

def test_validation_refuses_with_its_reason(validated_store):
    with pytest.raises(Forbidden) as e:
        validated_store.put({"_id": "a", "forbid": "no"})
    assert e.value.reason == "forbid: no" and e.value.status == 403
    with pytest.raises(NotFound):
        validated_store.get("a")
    rev = validated_store.put({"_id": "kept", "keep": True})
    with pytest.raises(Forbidden) as e:
        validated_store.delete("kept", rev)
    assert e.value.reason == "keep: kept"


def test_validation_inside_bulk_is_per_document(validated_store):
    answers = validated_store.bulk([{"_id": "a", "n": 1}, {"_id": "b", "forbid": "x"}])
    by_id = {a["id"]: a for a in answers}    # pouchdb-server puts refused ones first
    assert "rev" in by_id["a"]
    assert by_id["b"]["error"] == "forbidden" and by_id["b"]["reason"] == "forbid: x"


# ---- queries ----------------------------------------------------------------------------------

def seed(store):
    docs = [{"_id": "t1", "worker": "w", "status": "waiting", "owner": {"process": "w:h:0"}, "n": 3},
            {"_id": "t2", "worker": "w", "status": "done", "n": 1},
            {"_id": "t3", "worker": "w", "status": "running", "owner": {"process": "w:h:1"}, "n": 2},
            {"_id": "t4", "worker": "v", "status": "waiting", "n": 4}]
    revs = {a["id"]: a["rev"] for a in store.bulk(docs)}
    return revs


def test_find_with_the_selectors_after_uses(store):
    seed(store)
    ids = lambda found: sorted(d["_id"] for d in found)   # noqa: E731
    assert ids(store.find({"worker": "w"})) == ["t1", "t2", "t3"]
    assert ids(store.find({"worker": "w", "status": {"$in": ["waiting", "running"]}})) == ["t1", "t3"]
    assert ids(store.find({"owner.process": "w:h:1"})) == ["t3"]
    assert ids(store.find({"_id": {"$in": ["t2", "t4", "nobody"]}})) == ["t2", "t4"]
    assert ids(store.find({"worker": "w", "$or": [{"status": "done"}, {"owner.process": "w:h:0"}]})) == ["t1", "t2"]
    # Sorting needs the sort field in the selector on CouchDB (an index must cover it).
    assert [d["_id"] for d in store.find({"worker": "w", "n": {"$gt": 0}}, sort=[{"n": "asc"}])] == ["t2", "t3", "t1"]
    assert len(store.find({"worker": "w"}, limit=2)) == 2
    assert store.find({"_id": "t2"}, fields=["status"]) == [{"status": "done", "_id": "t2"}]


def test_find_leaves_out_deleted_documents(store):
    revs = seed(store)
    store.delete("t1", revs["t1"])
    assert sorted(d["_id"] for d in store.find({"worker": "w"})) == ["t2", "t3"]


def test_docs_with_prefix(store):
    store.bulk([{"_id": "process:w:h:0"}, {"_id": "process:w:h:1"}, {"_id": "process:v:h:0"}, {"_id": "q"}])
    rev = store.get("process:w:h:1")["_rev"]
    store.delete("process:w:h:1", rev)
    assert [d["_id"] for d in store.docs_with_prefix("process:w:")] == ["process:w:h:0"]


def test_scan_reads_every_matching_document_in_pages(store):
    store.bulk([{"_id": f"t{i:02}", "worker": "w" if i % 3 else "v"} for i in range(20)])
    pages = list(store.scan({"worker": "w"}, page_size=4))
    found = sorted(d["_id"] for page in pages for d in page)
    assert found == [f"t{i:02}" for i in range(20) if i % 3]
    assert len(pages) >= 3


# ---- the change feed ----------------------------------------------------------------------------

def test_the_feed_lists_each_document_once_at_its_latest_revision(store):
    rev_a = store.put({"_id": "a", "n": 1})
    store.put({"_id": "b", "n": 1})
    rev_a2 = store.put({"_id": "a", "_rev": rev_a, "n": 2})
    results, last_seq = store.changes("0", deadline_s=2)
    by_id = {r["id"]: r for r in results}
    assert sorted(feed_ids(results)) == ["a", "b"]           # a set: CouchDB promises no order
    assert by_id["a"]["doc"]["n"] == 2 and by_id["a"]["changes"] == [{"rev": rev_a2}]
    assert last_seq is not None


def test_since_gives_only_later_changes(store):
    store.put({"_id": "a"})
    _, seq = store.changes("0", deadline_s=2)
    store.put({"_id": "b"})
    results, seq2 = store.changes(seq, deadline_s=2)
    assert feed_ids(results) == ["b"]
    # Nothing newer: ([], the same since) at the deadline.
    assert store.changes(seq2, deadline_s=0.2) == ([], seq2)


def test_update_seq_is_where_a_new_feed_starts(store):
    store.put({"_id": "old"})
    since = store.update_seq()
    store.put({"_id": "new"})
    results, _ = store.changes(since, deadline_s=2)
    assert feed_ids(results) == ["new"]


def test_a_deletion_comes_as_a_tombstone(store):
    rev = store.put({"_id": "a", "worker": "w"})
    _, seq = store.changes("0", deadline_s=2)
    rev2 = store.delete("a", rev)
    [row], _ = store.changes(seq, deadline_s=2)
    assert row["id"] == "a" and row["deleted"] is True
    assert row["doc"]["_deleted"] is True and row["doc"]["_rev"] == rev2


def test_the_feed_selector_and_limit(store):
    store.bulk([{"_id": f"t{i}", "worker": "w" if i % 2 else "v"} for i in range(6)])
    gone = store.put({"_id": "gone", "worker": "v"})
    store.delete("gone", gone)
    selector = {"$or": [{"worker": "w"}, {"_deleted": True}]}
    results, _ = store.changes("0", selector=selector, deadline_s=2)
    assert sorted(feed_ids(results)) == ["gone", "t1", "t3", "t5"]
    first, seq = store.changes("0", selector=selector, limit=2, deadline_s=2)
    assert len(first) == 2
    rest, _ = store.changes(seq, selector=selector, deadline_s=2)
    assert sorted(feed_ids(first + rest)) == ["gone", "t1", "t3", "t5"]


def test_a_longpoll_wakes_for_a_write_made_while_it_waits(store):
    _, seq = store.changes("0", deadline_s=0.2)
    opened = threading.Event()
    got = {}
    poller = threading.Thread(target=lambda: got.update(
        answer=store.clone().changes(seq, deadline_s=20, on_open=opened.set)))
    poller.start()
    assert opened.wait(10)
    store.put({"_id": "late"})
    poller.join(20)
    assert not poller.is_alive()
    assert feed_ids(got["answer"][0]) == ["late"]


def test_a_longpoll_ends_when_canceled(store):
    _, seq = store.changes("0", deadline_s=0.2)
    cancel = threading.Event()
    got = {}
    poller = threading.Thread(target=lambda: got.update(
        answer=store.clone().changes(seq, deadline_s=30, cancel=cancel, on_open=lambda: cancel.set())))
    poller.start()
    wait_for(lambda: "answer" in got, 10, "the canceled longpoll to return")
    assert got["answer"] == ([], seq)


# ---- the design document -------------------------------------------------------------------------

def test_ensure_design_installs_once(store):
    assert store.ensure_design({"version": 1, "views": {}}) is True
    assert store.ensure_design({"version": 1, "views": {}}) is False
    assert store.ensure_design({"version": 2, "views": {}}) is True
    assert store.ensure_design({"version": 1, "views": {}}) is False   # never downgrades
    assert store.get(DESIGN_ID)["version"] == 2


def test_put_security_sets_who_may_use_the_database(store, request):
    """`after init` restricts the database through this (never through Couch's own requests)."""
    security = {"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": ["after", "after_reader"]}}
    store.put_security(security)
    if isinstance(store, MemoryStore):
        assert store._security == security   # the twin keeps it; nothing in after reads it back
    else:
        url = request.getfixturevalue("couch_url")
        assert requests.get(f"{url}/{store.database}/_security", timeout=10).json() == security


def test_conflict_calls_on_a_document_without_conflicts(store):
    rev = store.put({"_id": "a", "n": 1})
    assert store.get_conflicted("a")["_rev"] == rev
    assert "_conflicts" not in store.get_conflicted("a")
    assert [d["_rev"] for d in store.open_revs("a", [rev])] == [rev]
    assert store.get_conflicted("nobody") is None


def test_put_quorum_says_a_write_quorum_took_it_and_conflicts_as_put(store):
    rev, quorum = store.put_quorum({"_id": "q1", "n": 1})
    assert quorum is True and generation(rev) == 1   # one node (or a cluster answering 201)
    rev2, _ = store.put_quorum({"_id": "q1", "_rev": rev, "n": 2})
    assert generation(rev2) == 2
    with pytest.raises(Conflict):
        store.put_quorum({"_id": "q1", "_rev": rev, "n": 3})


def test_quorum_is_what_the_database_states(store):
    stated = store.quorum()
    assert set(stated) <= {"q", "n", "w", "r"} and all(isinstance(v, int) for v in stated.values())


# ---- attachments: a run's output (afterd/outputs.py) ----------------------------------------

def test_inline_attachments_come_back_as_stubs_that_a_later_write_keeps(store):
    import base64

    from afterd.outputs import settle, stub

    data = "line 1\nlast line é\n".encode()
    doc = {"_id": "att", "n": 1, "_attachments": {
        "output/1": {"content_type": "text/plain", "data": base64.b64encode(data).decode()}}}
    rev = store.bulk([dict(doc)])[0]["rev"]
    got = store.get("att")
    att = got["_attachments"]["output/1"]
    assert att["stub"] is True and att["length"] == len(data) and att["content_type"].startswith("text/plain")
    assert att["digest"] == stub(data, generation(rev))["digest"]   # both servers: md5, base64
    assert store.get_attachment("att", "output/1") == data
    # A write that carries the stubs it read keeps the attachment; so does one carrying
    # the stub the writer made itself from what it sent (outputs.settle).
    rev = store.put({**got, "n": 2})
    assert store.get_attachment("att", "output/1") == data
    mine = settle({**doc, "_rev": rev}, rev)
    mine["_rev"] = rev
    rev = store.put({**mine, "n": 3})
    assert store.get_attachment("att", "output/1") == data
    changes, _ = store.changes("0", selector={"n": 3}, deadline_s=5)
    fed = next(r["doc"] for r in changes if r["id"] == "att")
    assert fed["_attachments"]["output/1"]["stub"] is True and "data" not in fed["_attachments"]["output/1"]
    # A write that leaves an attachment out drops it. (A stub of an attachment that is not
    # there: CouchDB answers 412, pouchdb-server finds the data by digest and keeps it; after
    # never sends one.)
    current = store.get("att")
    store.put({k: v for k, v in current.items() if k != "_attachments"})
    with pytest.raises(NotFound):
        store.get_attachment("att", "output/1")


def test_validation_sees_attachments_as_stubs(validated_store):
    import base64

    doc = {"_id": "att-v", "_attachments": {"a": {"content_type": "text/plain",
                                                   "data": base64.b64encode(b"x").decode()}}}
    assert "rev" in validated_store.bulk([doc])[0]
    with pytest.raises(Forbidden):
        validated_store.put({**validated_store.get("att-v"), "forbid": "no"})
    assert validated_store.get_attachment("att-v", "a") == b"x"
