"""One table (doc_cases.py), two validators: the Python model and the server's validate_doc_update.

Given the design document installed in a fresh database, when each case is POSTed over plain
HTTP, then good documents are stored (201) and bad ones are refused with 403 and a reason
naming the field, exactly as the Python model refuses them, so the two cannot drift apart.
"""

import json

import pytest
import requests

from afterd.design import DESIGN_ID, design_doc
from afterd.task import TaskError, check_document, parse_task
from doc_cases import bad_docs, good_docs

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def db(couch_url, db_name):
    """A fresh database with _design/after installed; returns its URL."""
    url = f"{couch_url}/{db_name}"
    requests.put(url, timeout=10).raise_for_status()
    r = requests.put(f"{url}/{DESIGN_ID}", data=json.dumps(design_doc()), headers=JSON, timeout=10)
    assert r.status_code == 201, r.text
    return url


def reason_of(response) -> str:
    # CouchDB answers refusals as JSON, but not always with a JSON content type.
    try:
        return response.json().get("reason", "")
    except ValueError:
        return response.text


def post(url, doc):
    return requests.post(url, data=json.dumps(doc), headers=JSON, timeout=10)


@pytest.mark.parametrize("name,doc", good_docs(), ids=[n for n, _ in good_docs()])
def test_python_accepts_good(name, doc):
    check_document(doc)


@pytest.mark.parametrize("name,field,doc", bad_docs(include_python_only=True),
                         ids=[n for n, _, _ in bad_docs(include_python_only=True)])
def test_python_refuses_bad_naming_the_field(name, field, doc):
    with pytest.raises(TaskError) as caught:
        check_document(doc)
    message = str(caught.value)
    assert message.startswith(f"{field}: "), message
    assert "\n" not in message


def test_server_agrees_with_python_on_every_case(db):
    """One test, many POSTs: a database per case would cost more than the cases."""
    disagreements = []
    for name, doc in good_docs():
        r = post(db, doc)
        if r.status_code != 201:
            disagreements.append(f"good {name!r}: {r.status_code} {r.text}")
    for name, field, doc in bad_docs():
        r = post(db, doc)
        reason = reason_of(r)
        if r.status_code != 403 or not reason.startswith(f"{field}: "):
            disagreements.append(f"bad {name!r}: {r.status_code} {reason!r} (expected 403 naming {field})")
    assert not disagreements, "\n".join(disagreements)
    # Nothing bad was stored: only the good documents and the design document are there.
    rows = requests.get(f"{db}/_all_docs", timeout=10).json()["rows"]
    assert len(rows) == len(good_docs()) + 1


def test_shape_only_cases_are_stored_but_python_refuses_them(db):
    """tz and rrule meaning cannot be checked in the JS sandbox: the worker's model catches them."""
    from doc_cases import PYTHON_ONLY_BAD
    for name, field, doc in PYTHON_ONLY_BAD:
        assert post(db, doc).status_code == 201, name
        with pytest.raises(TaskError, match=f"^{field}: "):
            parse_task(doc)


def test_refusal_is_in_bulk_docs_too(db):
    """Workers write through _bulk_docs: a bad document there is refused per document."""
    good = dict(good_docs()[0][1], _id="good")
    bad = dict(good, _id="bad", status="pending")
    r = requests.post(f"{db}/_bulk_docs", data=json.dumps({"docs": [good, bad]}), headers=JSON, timeout=10)
    results = {row["id"]: row for row in r.json()}
    assert "error" not in results["good"], results
    assert results["bad"]["error"] == "forbidden" and results["bad"]["reason"].startswith("status: ")
    assert requests.get(f"{db}/bad", timeout=10).status_code == 404


def test_update_to_a_bad_document_is_refused_and_changes_nothing(db):
    good = good_docs()[0][1]
    r = post(db, good)
    doc_id, rev = r.json()["id"], r.json()["rev"]
    bad = dict(good, _id=doc_id, _rev=rev, date="2026-02-30")
    r = requests.put(f"{db}/{doc_id}", data=json.dumps(bad), headers=JSON, timeout=10)
    assert r.status_code == 403 and reason_of(r).startswith("date: ")
    stored = requests.get(f"{db}/{doc_id}", timeout=10).json()
    assert stored["_rev"] == rev and stored["date"] == good["date"]


def test_every_bad_case_is_refused_as_an_update_of_a_stored_task_too(db):
    """An update is checked as a new task is, worker's fields and all: a shortcut for the
    worker's writes (issue 24 tried one) must still refuse every bad case of the table."""
    # Given a good task stored, and claimed by a worker as a worker claims it
    good = good_docs()[0][1]
    r = post(db, good)
    doc_id, rev = r.json()["id"], r.json()["rev"]
    claim = dict(good, _id=doc_id, _rev=rev, status="scheduled", anchor=good["date"], occurrence=0,
                 owner={"process": "w:h:0", "host": "h", "pid": 1})
    r = requests.put(f"{db}/{doc_id}", data=json.dumps(claim), headers=JSON, timeout=10)
    assert r.status_code == 201, r.text
    rev = r.json()["rev"]
    # When each bad case of the table is written over it, keeping the worker's fields
    disagreements = []
    for name, field, doc in bad_docs():
        if str(doc.get("_id", "")).startswith("after:"):
            continue   # the workers' own records, not tasks
        update = {"owner": claim["owner"], "occurrence": 0, **doc, "_id": doc_id, "_rev": rev}
        r = requests.put(f"{db}/{doc_id}", data=json.dumps(update), headers=JSON, timeout=10)
        reason = reason_of(r)
        if r.status_code != 403 or not reason.startswith(f"{field}: "):
            disagreements.append(f"bad {name!r}: {r.status_code} {reason!r} (expected 403 naming {field})")
    # Then each is refused naming its field, as when it was new, and the task is as claimed
    assert not disagreements, "\n".join(disagreements)
    assert requests.get(f"{db}/{doc_id}", timeout=10).json()["_rev"] == rev


def test_a_document_stored_unchecked_is_checked_in_full_when_written_again(db):
    """A task the worker marked InvalidTask (it got in before the design document) is no
    template for its next write: a user's edit that keeps its bad job is refused."""
    bad_job = dict(good_docs()[0][1], job={"name": "no such-name"}, status="error",
                   error={"type": "InvalidTask", "message": "job.name: not a job name"})
    r = post(db, bad_job)
    assert r.status_code == 201, r.text
    retry = dict(bad_job, _id=r.json()["id"], _rev=r.json()["rev"], status="waiting")
    retry.pop("error")
    r = requests.put(f"{db}/{retry['_id']}", data=json.dumps(retry), headers=JSON, timeout=10)
    assert r.status_code == 403 and reason_of(r).startswith("job.name: "), r.text


def test_deletion_is_always_allowed(db):
    r = post(db, good_docs()[0][1])
    doc_id, rev = r.json()["id"], r.json()["rev"]
    r = requests.delete(f"{db}/{doc_id}", params={"rev": rev}, timeout=10)
    assert r.status_code == 200, r.text


def test_views_count_by_status_and_worker(db):
    docs = [
        {"worker": "manobi", "status": "waiting"}, {"worker": "manobi", "status": "done"},
        {"worker": "manobi", "status": "err"}, {"worker": "kiri", "status": "waiting"},
    ]
    base = good_docs()[0][1]
    for d in docs:
        assert post(db, dict(base, **d)).status_code == 201
    assert post(db, {"_id": "after:heartbeat:manobi", "type": "heartbeat"}).status_code == 201

    def view(name, **params):
        params = {k: json.dumps(v) for k, v in params.items()}
        r = requests.get(f"{db}/_design/after/_view/{name}", params=params, timeout=30)
        r.raise_for_status()
        return r.json()["rows"]

    by_status = {row["key"]: row["value"] for row in view("by_status", group=True)}
    assert by_status == {"waiting": 2, "done": 1, "error": 1}
    per_worker = {row["key"][0]: row["value"] for row in view("by_worker_status", group_level=1)}
    assert per_worker == {"manobi": 3, "kiri": 1}
    pair = {tuple(row["key"]): row["value"] for row in view("by_worker_status", group=True)}
    assert pair[("manobi", "error")] == 1
    active = view("active_by_worker", key="manobi", include_docs=True)
    assert [row["value"] for row in active] == ["waiting"]
    assert active[0]["doc"]["worker"] == "manobi"


def test_version_changes_only_with_content():
    first, second = design_doc(), design_doc()
    assert first["version"] == second["version"]
    assert len(first["version"]) == 16
    assert first["validate_doc_update"].startswith("function") and first["validate_doc_update"].endswith("}")


# ---- the policy fields, fuzzed: Python and the server must agree on each document --------------

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from doc_cases import task  # noqa: E402

duration = st.one_of(
    st.integers(-3, 10**6), st.floats(-1, 1e6, allow_nan=False), st.booleans(), st.none(),
    st.from_regex(r"([0-9]{1,3}(ms|y|M|w|d|h|m|s)){1,3}", fullmatch=True),
    st.sampled_from(["", "1h 30m", "٣s", "1.5s", "9" * 16 + "s", "0s", "1h1h"]),
)
policy_values = {
    "retry": st.one_of(st.integers(-2, 101), st.none(), st.text(max_size=3),
                       st.fixed_dictionaries({}, optional={
                           "attempts": st.integers(-1, 101) | st.floats(0, 5) | st.just("3"),
                           "delay": duration, "max_delay": duration,
                           "backoff": st.floats(0, 200, allow_nan=False) | st.just("2"),
                           "on": st.lists(st.sampled_from(["error", "timeout", "interrupted", "crash"]),
                                          max_size=3) | st.just("error"),
                           "tries": st.just(1)})),
    "catchup": st.sampled_from(["one", "all", "none", "All", "", None, 1]),
    "catchup_window": duration,
    "overlap": st.sampled_from(["wait", "skip", "replace", "queue", None, True]),
    "jitter": duration,
    "history_limit": st.integers(-2, 1002) | st.floats(0, 3) | st.just("20") | st.none(),
    "on_error": st.one_of(st.none(), st.just("x"), st.fixed_dictionaries({}, optional={
        "job": st.sampled_from([{"name": "n"}, {"name": "a.b"}, {"name": "n", "arguments": "x"}, "n"]),
        "worker": st.sampled_from(["w", " w", "", 3]),
        "date": st.sampled_from(["2026-12-01", "later", "2026-02-30"]),
        "timeout": st.sampled_from([1, 0, -1, "5"]),
        "status": st.just("waiting")})),
}
policy_doc = st.dictionaries(st.sampled_from(sorted(policy_values)), st.just(None), min_size=1, max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: policy_values[k] for k in keys})).map(lambda fields: task(**fields))


def python_verdict(doc):
    try:
        check_document(doc)
        return "stored"
    except TaskError as e:
        return e.field


@settings(max_examples=8, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(policy_doc, min_size=50, max_size=50))
def test_server_agrees_with_python_on_random_policies(db, batch):
    import uuid

    for doc in batch:
        doc["_id"] = uuid.uuid4().hex
    r = requests.post(f"{db}/_bulk_docs", data=json.dumps({"docs": batch}), headers=JSON, timeout=30)
    answers = {row["id"]: row for row in r.json()}
    disagreements = []
    for doc in batch:
        answer = answers[doc["_id"]]
        server = "stored" if "rev" in answer else answer.get("reason", "").split(": ", 1)[0]
        if server != python_verdict(doc):
            disagreements.append(f"{json.dumps(doc)}: server {answer}, python {python_verdict(doc)}")
    assert not disagreements, "\n".join(disagreements[:5])


# ---- repeat.cron and the floor: one table (cron_cases.json), the same reasons word for word ----

from pathlib import Path  # noqa: E402

from afterd.repeat import DEFAULT_MIN_REPEAT_S  # noqa: E402

CRON_CASES = json.loads((Path(__file__).parent / "cron_cases.json").read_text(encoding="utf-8"))


def design_db(couch_url, name, min_repeat_s):
    url = f"{couch_url}/{name}"
    requests.put(url, timeout=10).raise_for_status()
    r = requests.put(f"{url}/{DESIGN_ID}", data=json.dumps(design_doc(min_repeat_s)), headers=JSON, timeout=10)
    assert r.status_code == 201, r.text
    return url


def verdicts(db_url, docs, min_repeat_s):
    """[(python's reason or "stored", the server's)] for each document, posted in one bulk."""
    import uuid

    for doc in docs:
        doc["_id"] = uuid.uuid4().hex
    r = requests.post(f"{db_url}/_bulk_docs", data=json.dumps({"docs": docs}), headers=JSON, timeout=30)
    answers = {row["id"]: row for row in r.json()}
    out = []
    for doc in docs:
        try:
            check_document(doc, min_repeat_s)
            python = "stored"
        except TaskError as e:
            python = str(e)
        answer = answers[doc["_id"]]
        out.append((python, "stored" if "rev" in answer else answer.get("reason", "")))
    return out


def test_cron_table_same_reasons_in_python_and_on_the_server(db):
    docs = [task(repeat={"cron": expr}) for expr in CRON_CASES["good"]] + \
           [task(repeat={"cron": expr}) for expr, _ in CRON_CASES["bad"]]
    want = ["stored"] * len(CRON_CASES["good"]) + ["repeat: " + message for _, message in CRON_CASES["bad"]]
    got = verdicts(db, docs, DEFAULT_MIN_REPEAT_S)
    wrong = [f"{d['repeat']['cron']!r}: want {w!r}, python {p!r}, server {s!r}"
             for d, w, (p, s) in zip(docs, want, got) if not p == s == w]
    assert not wrong, "\n".join(wrong)


FLOOR_60 = [   # (repeat, stored under a floor of 60 s)
    ({"m": 1}, True), ({"s": 59}, False), ({"s": 59.5, "ms": 500}, True), ({"M": 1}, True),
    ({"cron": "* * * * *"}, True), ({"cron": "*/30 * * * * *"}, False), ({"cron": "0,59 * * * * *"}, False),
    ({"cron": "0 0,1 * * *"}, True), ({"cron": "0 * * * *"}, True), ({"cron": "0 */2 * * *"}, True),
    ({"rrule": "FREQ=MINUTELY"}, True), ({"rrule": "FREQ=SECONDLY;INTERVAL=30"}, False),
    ({"rrule": "FREQ=SECONDLY;INTERVAL=60"}, True), ({"rrule": "FREQ=DAILY;BYSECOND=0,30"}, False),
    ({"rrule": "FREQ=DAILY;BYMINUTE=0,59"}, True), ({"rrule": "FREQ=DAILY;BYHOUR=3;BYMINUTE=0"}, True),
    ({"rrule": "RRULE:FREQ=HOURLY;BYSECOND=5,10"}, False), ({"rrule": "FREQ=WEEKLY;BYDAY=MO,TU"}, True),
]


def test_the_floor_is_the_design_documents_setting(couch_url, db_name):
    """after init writes min_repeat_s into validate_doc_update: at 60 s, Python and the server
    refuse the same repeats, with the same reason."""
    url = design_db(couch_url, db_name, 60)
    docs = [task(repeat=dict(repeat)) for repeat, _ in FLOOR_60]
    got = verdicts(url, docs, 60)
    wrong = [f"{d['repeat']}: python {p!r}, server {s!r}" for d, (p, s), (_, stored) in zip(docs, got, FLOOR_60)
             if p != s or (p == "stored") != stored]
    assert not wrong, "\n".join(wrong)
    assert got[1][0] == ("repeat: runs would come less than 60 s apart, this database's min_repeat_s: "
                         "each run writes the task twice")


cron_atom = st.one_of(st.sampled_from(["*", "0", "7", "59", "60", "24", "31", "32", "MON", "jan", "sun", "FOO",
                                       "", "L", "?", "1#2", "00", "0000001"]),
                      st.integers(0, 70).map(str))
cron_item = st.one_of(cron_atom,
                      st.tuples(cron_atom, cron_atom).map("-".join),
                      st.tuples(cron_atom, st.sampled_from(["0", "1", "2", "15", "x", ""])).map("/".join),
                      st.tuples(cron_atom, cron_atom, st.sampled_from(["3", "0"])).map(
                          lambda t: f"{t[0]}-{t[1]}/{t[2]}"))
cron_field = st.lists(cron_item, min_size=1, max_size=3).map(",".join)
valid_field = st.sampled_from(["*", "*/15", "0", "5-59/20", "1,2", "1-5", "*/2", "10-20/3", "7", "3"])
cron_text = st.one_of(
    st.lists(valid_field, min_size=5, max_size=6).map(" ".join),
    st.lists(st.one_of(valid_field, cron_field), min_size=5, max_size=6).map(" ".join),
    st.lists(cron_field, min_size=5, max_size=6).map(" ".join),
    st.lists(cron_field, min_size=4, max_size=7).map(" ".join),
    st.sampled_from(["@reboot", "@daily", "@Hourly", "@every 5m", "  0 3 * * *\t", "", "0  3 * *  *"]),
    st.text(alphabet="0123456789*/,- @MONJAFEBSUn\t?#\n\u2013\u00d6\U0001F600", max_size=24))
cron_doc = st.one_of(
    st.builds(lambda text: task(repeat={"cron": text}), cron_text),
    st.builds(lambda text: task(repeat={"cron": text}), cron_text),
    st.builds(lambda text: task(repeat={"cron": text}), cron_text),
    st.fixed_dictionaries({"cron": cron_text}, optional={
        "tz": st.sampled_from(["UTC", "Europe/Lisbon"]), "count": st.sampled_from([1, 0]),
        "days": st.sampled_from([1]), "rrule": st.sampled_from(["FREQ=DAILY"])}).map(lambda rep: task(repeat=rep)))


@settings(max_examples=6, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(cron_doc, min_size=60, max_size=60))
def test_server_agrees_with_python_on_random_cron(db, batch):
    got = verdicts(db, batch, DEFAULT_MIN_REPEAT_S)
    wrong = [f"{json.dumps(d['repeat'])}: python {p!r}, server {s!r}" for d, (p, s) in zip(batch, got) if p != s]
    assert not wrong, "\n".join(wrong[:5])


offset_doc = st.dictionaries(st.sampled_from(["s", "ms", "m", "seconds", "milliseconds"]),
                             st.one_of(st.integers(0, 2000), st.floats(0, 2, allow_nan=False)),
                             min_size=1, max_size=2).map(lambda rep: task(repeat=rep))


@settings(max_examples=4, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(offset_doc, min_size=50, max_size=50))
def test_server_agrees_with_python_on_the_floor_for_random_offsets(db, batch):
    got = verdicts(db, batch, DEFAULT_MIN_REPEAT_S)
    wrong = [f"{json.dumps(d['repeat'])}: python {p!r}, server {s!r}" for d, (p, s) in zip(batch, got) if p != s]
    assert not wrong, "\n".join(wrong[:5])
