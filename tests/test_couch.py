"""afterd.couch against a real CouchDB-API server (pouchdb-server, or AFTER_TEST_COUCHDB_URL)."""

import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from afterd import clock
from afterd.couch import Conflict, Couch, CouchError, Forbidden, NotFound, Unauthorized, Unavailable
from helpers import EXTERNAL_URL
from couchdb_server import PouchServer, free_port

SECRET = "hunter2-do-not-print"

# Refuses any document whose `job` is "forbidden", as after's validate_doc_update refuses bad tasks.
VALIDATING_DESIGN = {
    "version": 1,
    "validate_doc_update": """function (doc) {
        if (doc.job === 'forbidden') { throw({forbidden: 'job: forbidden is not a job name'}); }
    }""",
    "views": {"by_worker": {"map": "function (doc) { if (doc.worker) { emit(doc.worker, null); } }",
                            "reduce": "_count"}},
}


def with_password(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


# -- documents and typed errors ------------------------------------------------------------


def test_documents_round_trip_and_delete_needs_the_current_rev(couch):
    doc_id, rev1 = couch.post({"worker": "manobi", "status": "waiting"})
    assert couch.get(doc_id)["status"] == "waiting"

    rev2 = couch.put({"_id": doc_id, "_rev": rev1, "worker": "manobi", "status": "scheduled"})
    assert couch.get(doc_id)["status"] == "scheduled"

    with pytest.raises(Conflict) as stale:
        couch.put({"_id": doc_id, "_rev": rev1, "status": "done"})
    assert doc_id in str(stale.value) and stale.value.status == 409
    with pytest.raises(Conflict):
        couch.delete(doc_id, rev1)
    with pytest.raises(ValueError):
        couch.delete(doc_id, "")

    couch.delete(doc_id, rev2)
    with pytest.raises(NotFound) as gone:
        couch.get(doc_id)
    assert doc_id in str(gone.value) and "\n" not in str(gone.value)


def test_ids_with_slashes_and_spaces_are_quoted(couch):
    couch.put({"_id": "billing/2026 12", "worker": "manobi"})
    assert couch.get("billing/2026 12")["worker"] == "manobi"


def test_a_document_refused_by_validate_doc_update_raises_forbidden_with_its_reason(couch):
    couch.ensure_design(VALIDATING_DESIGN)
    with pytest.raises(Forbidden) as refused:
        couch.post({"worker": "manobi", "job": "forbidden"})
    assert refused.value.reason == "job: forbidden is not a job name"
    assert "job: forbidden is not a job name" in str(refused.value)
    assert couch.find({"job": "forbidden"}) == []  # nothing bad was stored


def test_bulk_reports_each_documents_outcome(couch):
    couch.ensure_design(VALIDATING_DESIGN)
    existing_id, _ = couch.post({"worker": "manobi"})

    results = couch.bulk([{"_id": "good", "worker": "manobi"},
                          {"_id": "bad", "worker": "manobi", "job": "forbidden"},
                          {"_id": existing_id, "worker": "manobi"}])  # no _rev: conflict

    by_id = {r["id"]: r for r in results}
    assert by_id["good"].get("rev") and "error" not in by_id["good"]
    assert by_id["bad"]["error"] == "forbidden" and "forbidden is not a job name" in by_id["bad"]["reason"]
    assert by_id[existing_id]["error"] == "conflict"
    assert couch.bulk([]) == []


def test_local_documents_are_read_back_and_replaced(couch):
    assert couch.get_local("feed-manobi") is None
    couch.put_local("feed-manobi", {"seq": 1})
    couch.put_local("feed-manobi", {"seq": "2-opaque"})
    assert couch.get_local("feed-manobi")["seq"] == "2-opaque"
    # A second client (another process) replaces it too, despite not knowing its rev.
    couch.clone().put_local("feed-manobi", {"seq": 3})   # clone(): the URL's credentials too
    couch.put_local("feed-manobi", {"seq": 4})
    assert couch.get_local("feed-manobi")["seq"] == 4


def test_ensure_database_creates_once(couch_url, db_name):
    db = Couch(couch_url, db_name)
    assert db.ensure_database() is True
    assert db.ensure_database() is False


def test_a_missing_database_is_not_found(couch_url, db_name):
    with pytest.raises(NotFound):
        Couch(couch_url, db_name).update_seq()


# -- credentials and reachability -----------------------------------------------------------


@pytest.fixture
def guarded_server_url(tmp_path):
    """A server whose only admin is admin:secret (admin party over)."""
    if EXTERNAL_URL:
        yield EXTERNAL_URL  # a real CouchDB 3 always requires credentials
        return
    server = PouchServer(tmp_path / "guarded", admins={"admin": "secret"})
    server.start()
    yield server.url
    server.remove()


def test_a_wrong_password_is_unauthorized_and_never_printed(guarded_server_url):
    db = Couch(with_password(guarded_server_url, "after", SECRET), "tasks")

    with pytest.raises(Unauthorized) as refused:
        db.get("anything")

    message = str(refused.value)
    assert "refused the credentials for user 'after'" in message
    assert SECRET not in message and SECRET not in repr(db) and SECRET not in db.safe_url
    assert "***" in db.safe_url


def test_the_right_password_is_sent_from_the_url(guarded_server_url):
    if EXTERNAL_URL:
        pytest.skip("the external URL's own credentials are exercised by every other test")
    db = Couch(with_password(guarded_server_url, "admin", "secret"), "tasks")
    assert db.ensure_database() is True
    db.put({"_id": "t", "worker": "manobi"})
    assert db.get("t")["worker"] == "manobi"


def test_an_unreachable_server_is_unavailable_with_a_one_line_message():
    url = f"http://127.0.0.1:{free_port()}"
    db = Couch(with_password(url, "after", SECRET), "tasks", timeout_s=2)

    with pytest.raises(Unavailable) as down:
        db.info()

    assert str(down.value) == f"CouchDB at {url} is unreachable: connection refused"
    with pytest.raises(Unavailable):
        db.changes(0, selector={"worker": "manobi"}, deadline_s=1)


def test_a_url_that_is_not_http_is_refused_plainly():
    with pytest.raises(CouchError) as bad:
        Couch(f"ftp://after:{SECRET}@example.invalid", "tasks")
    assert SECRET not in str(bad.value)


# -- find and views -----------------------------------------------------------------------------


def test_find_pages_through_every_match(couch):
    couch.bulk([{"_id": f"m{i:03}", "worker": "manobi", "n": i} for i in range(25)]
               + [{"_id": f"o{i:03}", "worker": "other", "n": i} for i in range(5)])

    docs = couch.find({"worker": "manobi"}, page_size=10)
    assert sorted(d["_id"] for d in docs) == [f"m{i:03}" for i in range(25)]

    assert len(couch.find({"worker": "manobi"}, limit=13, page_size=10)) == 13

    ordered = couch.find({"worker": "manobi", "n": {"$gte": 0}}, sort=[{"n": "asc"}], fields=["n"], page_size=7)
    assert [d["n"] for d in ordered] == list(range(25))


def test_view_counts_by_worker(couch):
    couch.ensure_design(VALIDATING_DESIGN)
    couch.bulk([{"worker": "manobi"}, {"worker": "manobi"}, {"worker": "other"}])
    rows = couch.view("by_worker", group=True)["rows"]
    assert {r["key"]: r["value"] for r in rows} == {"manobi": 2, "other": 1}
    assert couch.view("by_worker", key="manobi", reduce=False)["rows"][0]["key"] == "manobi"


# -- the design document ---------------------------------------------------------------------


def test_ensure_design_is_idempotent_and_upgrades_on_a_new_version(couch):
    assert couch.ensure_design(VALIDATING_DESIGN) is True
    installed = couch.get("_design/after")
    assert couch.ensure_design(VALIDATING_DESIGN) is False
    assert couch.get("_design/after")["_rev"] == installed["_rev"]

    upgraded = {**VALIDATING_DESIGN, "version": 2, "validate_doc_update": "function (doc) {}"}
    assert couch.ensure_design(upgraded) is True
    assert couch.get("_design/after")["version"] == 2
    couch.post({"worker": "manobi", "job": "forbidden"})  # the new rules are in force

    # An older worker does not downgrade what a newer one installed.
    assert couch.ensure_design(VALIDATING_DESIGN) is False
    assert couch.get("_design/after")["version"] == 2


def test_two_workers_installing_the_design_at_once_write_it_once(couch):
    couch.ensure_design(VALIDATING_DESIGN)
    results, errors = [], []
    new = {**VALIDATING_DESIGN, "version": 3}

    def install():
        try:
            results.append(couch.clone().ensure_design(new))
        except Exception as e:  # reported below, so a failure says what happened
            errors.append(e)

    threads = [threading.Thread(target=install) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert errors == []
    assert sorted(results) == [False, True]
    assert couch.get("_design/after")["version"] == 3


def test_ensure_design_installs_afters_own_design_document(couch):
    from afterd.design import design_doc

    assert couch.ensure_design() is True
    assert couch.get("_design/after")["version"] == design_doc()["version"]
    assert couch.ensure_design() is False


# -- one _changes request ---------------------------------------------------------------------


def test_changes_returns_only_the_selected_workers_documents(couch):
    since = couch.update_seq()
    couch.bulk([{"_id": "mine", "worker": "manobi"}, {"_id": "theirs", "worker": "other"}])

    results, last_seq = couch.changes(since, selector={"worker": "manobi"}, deadline_s=10)

    assert [r["id"] for r in results] == ["mine"]
    assert results[0]["doc"]["worker"] == "manobi"
    # Nothing new for us after last_seq: the deadline ends the longpoll, since comes back as given.
    started = clock.monotonic_s()
    assert couch.changes(last_seq, selector={"worker": "manobi"}, deadline_s=1.5) == ([], last_seq)
    assert clock.monotonic_s() - started < 6


def test_changes_waits_for_a_change_that_arrives_later(couch):
    since = couch.update_seq()
    timer = threading.Timer(0.5, lambda: couch.post({"worker": "manobi", "late": True}))
    timer.start()
    try:
        results, _ = couch.changes(since, selector={"worker": "manobi"}, deadline_s=20)
    finally:
        timer.join()
    assert [r["doc"]["late"] for r in results] == [True]


def test_changes_stops_waiting_when_canceled(couch):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    assert couch.changes(couch.update_seq(), selector={"worker": "manobi"}, deadline_s=30,
                         cancel=cancel)[0] == []
    assert time.monotonic() - started < 5


def test_changes_honours_limit(couch):
    since = couch.update_seq()
    couch.bulk([{"worker": "manobi", "n": i} for i in range(5)])
    first, seq = couch.changes(since, selector={"worker": "manobi"}, limit=2, deadline_s=10)
    rest, _ = couch.changes(seq, selector={"worker": "manobi"}, deadline_s=10)
    assert len(first) == 2 and len(rest) == 3
    assert {r["doc"]["n"] for r in first + rest} == set(range(5))


def test_scan_reads_every_active_task_of_a_worker_page_by_page(couch):
    """Given more active tasks than fit a page, when a worker scans for its tasks page by
    page while one ends and another changes, then it sees every active one at least once,
    and nothing of another worker's and nothing finished."""
    couch.ensure_design()
    docs = [{"_id": f"t{i:02d}", "worker": "manobi", "date": "2026-12-01", "status": "waiting",
             "job": {"name": "hello"}} for i in range(9)]
    docs.append({"_id": "other", "worker": "someone", "date": "2026-12-01", "status": "waiting",
                 "job": {"name": "hello"}})
    docs.append({"_id": "old", "worker": "manobi", "date": "2026-12-01", "status": "done",
                 "job": {"name": "hello"}})
    assert all("rev" in r for r in couch.bulk(docs))
    selector = {"worker": "manobi", "status": {"$in": ["waiting", "scheduled"]}}
    seen, pages = [], couch.scan(selector, page_size=4)
    seen += [d["_id"] for d in next(pages)]
    # pouchdb-server does not give a bulk's documents their seqs in the order sent: the
    # task that ends is one the first page had, the one that changes one it did not
    ended = seen[0]
    first = couch.get(ended)          # a task ends while the worker is between two pages
    couch.put({**first, "status": "done"})
    unread = sorted({f"t{i:02d}" for i in range(9)} - set(seen))[-1]
    last = couch.get(unread)          # and one not read yet changes (it moves to a later seq)
    couch.put({**last, "status": "scheduled"})
    for page in pages:
        seen += [d["_id"] for d in page]
    assert set(seen) == {f"t{i:02d}" for i in range(9)}


def test_the_heartbeats_of_a_worker_are_read_by_id_and_not_a_namesakes(couch):
    from afterd.claims import heartbeat_prefix, heartbeats_of

    beats = [{"_id": f"after:process:{w}:host:0", "type": "process", "worker": w} for w in ("a", "a:b", "ab")]
    assert all("rev" in r for r in couch.bulk(beats + [{"_id": "a-task", "worker": "a"}]))
    found = heartbeats_of("a", couch.docs_with_prefix(heartbeat_prefix("a")))
    assert [d["_id"] for d in found] == ["after:process:a:host:0"]


def test_the_environment_s_proxy_settings_are_read_once_and_still_apply(monkeypatch):
    """requests reads HTTP_PROXY / NO_PROXY on every request unless told not to; Couch reads
    them once per session (a tenth of the worker's CPU otherwise), with the same answer."""
    from afterd.couch import Couch

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = Couch("http://couch.invalid:5984", "tasks")
    assert proxied.session.proxies.get("http") == "http://proxy.invalid:3128"
    assert proxied.clone().session.proxies == proxied.session.proxies
    assert proxied.session.trust_env is False
    monkeypatch.setenv("NO_PROXY", "couch.invalid")
    assert not Couch("http://couch.invalid:5984", "tasks").session.proxies.get("http")
