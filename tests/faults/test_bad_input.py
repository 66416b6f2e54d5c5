"""Malformed and hostile task documents: refused at the door, or (if forced in around the
validation) ended as `error` with a reason, never crashing or stalling the worker.

Shapes come from tests/doc_cases.py (the table the Python model and the design document
share); hypothesis breaks good tasks in ways that are surely invalid, and dresses them in
hostile extras: huge strings, deep nesting, odd Unicode.
"""

import copy
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from afterd.couch import Couch
from afterd.task import TaskError, check_document
from doc_cases import BAD, bad_docs, task
from helpers import wait_for
from test_engine import post_all, record_task, wait_final
from workers import read_runs

BATCHES = 400
BATCH_SIZE = 25           # 400 x 25 = the 10,000 documents of the issue (small batches:
                          # hypothesis gives up on examples that need too much random data)
VALID_STATUSES = {"waiting", "scheduled", "running", "done", "error", "err", "reschedule", "cancel",
                  "canceled", "pause", "paused", "resume", "run"}
ODD = ["\u200b", "\u202e", "\ufeff", "\u0000", "\U0001f4a3", "e\u0301", "\uff10", "\u0660", "\n", "\t"]

odd_text = st.lists(st.sampled_from(ODD) | st.characters(blacklist_categories=("Cs",)),
                    min_size=1, max_size=40).map("".join)
not_a_string = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | \
    st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)


def deep(depth, leaf="x"):
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"d": value}
    return value


hostile_value = st.one_of(
    st.integers(1_000, 60_000).map(lambda n: "A" * n),                  # huge string
    st.integers(50, 300).map(deep),                                       # deep nesting
    odd_text,
    st.just({"$ne": None}), st.just("<script>alert(1)</script>"), st.just("'; DROP TABLE tasks; --"),
)

job_name_attack = st.one_of(
    st.sampled_from(["../etc/passwd", "/etc/passwd", "os.path", "os.system", "a.b.c", "..", ".",
                     "jobs/../../x", "__import__('os')", "~root", "C:\\x", "a/b", "x\x00y", "os..path",
                     "%2e%2e%2f", "sys.modules", "1abc", "-x", "a b"]),
    st.builds(lambda a, b: f"{a}.{b}", st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
              st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)),
    st.builds(lambda a, b: f"{a}/{b}", st.from_regex(r"[a-z_.]{0,8}", fullmatch=True),
              st.from_regex(r"[a-z_]{1,8}", fullmatch=True)),
    st.integers(1_000, 60_000).map(lambda n: "a" * n + "/b"),
    odd_text.map(lambda s: "job" + s[0] + s),
)

far_date = st.one_of(
    st.integers(1, 1969).map(lambda y: f"{y:04d}-06-01T00:00:00Z"),
    st.integers(3000, 9999).map(lambda y: f"{y:04d}-01-01"),
    st.integers(10_000, 10**9).map(lambda y: f"{y}-01-01"),
    st.just("-0001-01-01"), st.just("+275760-09-13T00:00:00Z"),
)

# Durations a policy field refuses: negative, months or years, words, odd digits, too long.
bad_duration = st.one_of(
    st.floats(-1e9, -1e-9), st.integers(-10**6, -1), st.booleans(), st.lists(st.integers(), max_size=2),
    st.integers(1, 99).map(lambda n: f"{n}M"), st.integers(1, 99).map(lambda n: f"1d{n}y"),
    odd_text.map(lambda s: "1h" + s), st.sampled_from(["", "s", "1h1h", "1 h", "٣s", "1.5s", "-1s", "9" * 16 + "s"]),
)

BREAKERS = {
    "worker": not_a_string.filter(lambda v: not isinstance(v, str)) | st.just("") |
    odd_text.map(lambda s: " " + s) | st.integers(1_000, 60_000).map(lambda n: "w" * n + " "),
    "date": not_a_string | far_date | odd_text.map(lambda s: "x" + s) |
    st.sampled_from(["２０２６-12-01", "2026-12-01T03:00:00Z\u200b", "2026-02-30", "2026-12-01 03:00"]),
    "status": not_a_string | odd_text.filter(lambda s: s not in VALID_STATUSES) | st.just("wait\u200bing"),
    "job": not_a_string.filter(lambda v: not isinstance(v, dict)) |
    job_name_attack.map(lambda n: {"name": n, "arguments": []}) |
    not_a_string.filter(lambda v: not isinstance(v, (list, dict))).map(lambda a: {"name": "send", "arguments": a}),
    "repeat": st.one_of(
        st.sampled_from(["days", "d", "hours", "ms", "months", "y"]).flatmap(
            lambda k: st.integers(-10**6, 0).map(lambda n: {k: n})),                      # zero, negative
        st.floats(-1e9, -1e-9).map(lambda f: {"seconds": f}),
        st.integers(-100, 0).map(lambda n: {"days": 1, "count": n}),
        st.just({}), st.integers(), odd_text,
        odd_text.filter(lambda s: s not in ("y", "M", "w", "d", "h", "m", "s", "ms")).map(lambda k: {"zz" + k: 1}),
    ),
    "timeout": st.integers(-10**6, 0) | st.text(max_size=5) | st.booleans(),
    "retry": st.integers(-10**6, -1) | st.integers(100, 10**9) | st.floats(0.1, 0.9) | st.text(max_size=5) |
    st.booleans() | st.just({}) | st.integers(-5, 0).map(lambda n: {"attempts": n}) |
    bad_duration.map(lambda d: {"attempts": 3, "delay": d}) |
    st.floats(-10, 0.99).map(lambda b: {"attempts": 3, "backoff": b}) |
    odd_text.map(lambda e: {"attempts": 3, "on": [e]}) | odd_text.map(lambda k: {"attempts": 3, "x" + k: 1}),
    "catchup": odd_text.filter(lambda s: s not in ("one", "all", "none")) | st.integers() | st.booleans(),
    "catchup_window": bad_duration,
    "overlap": odd_text.filter(lambda s: s not in ("wait", "skip", "replace")) | st.integers() | st.booleans(),
    "jitter": bad_duration,
    "history_limit": st.integers(-10**6, -1) | st.integers(1001, 10**9) | st.floats(0.1, 0.9) | st.text(max_size=5),
    "on_error": not_a_string.filter(lambda v: not isinstance(v, dict)) |
    job_name_attack.map(lambda n: {"job": {"name": n}}) |
    odd_text.map(lambda k: {"job": {"name": "notify_url"}, "x" + k: 1}) |
    far_date.map(lambda d: {"job": {"name": "notify_url"}, "date": d}),
}


@st.composite
def hostile_doc(draw):
    """A task that is surely invalid (at least one field broken), often with hostile extras."""
    if draw(st.integers(0, 4)) == 0:
        _, _, doc = draw(st.sampled_from(BAD))
        doc = copy.deepcopy(doc)
    else:
        doc = task()
        for field in draw(st.lists(st.sampled_from(sorted(BREAKERS)), min_size=1, max_size=3, unique=True)):
            doc[field] = draw(BREAKERS[field])
    for i in range(draw(st.integers(0, 2))):
        doc[f"x_extra_{i}"] = draw(hostile_value)
    # A "broken" field can come out valid by chance (a job name "jobee" is a fine name);
    # the Python model, which tests/test_validation.py holds equal to the JS one, says so.
    try:
        check_document(doc)
    except TaskError:
        return doc
    doc["job"] = {"name": "../" + str(doc.get("job")), "arguments": []}
    return doc


@pytest.fixture(scope="module")
def door(couch_server):
    """A database with the design document in place: the HTTP door to test."""
    import uuid

    db = Couch(couch_server.url, "faults-door-" + uuid.uuid4().hex[:8])
    db.ensure_database()
    db.ensure_design()
    db.refused = 0
    yield db
    import requests
    requests.delete(f"{couch_server.url}/{db.database}", timeout=30)


def assert_refused(db, docs):
    import uuid

    for doc in docs:
        doc.setdefault("_id", "hostile-" + uuid.uuid4().hex)   # pair answers by id, not order
    results = db.bulk(docs)
    by_id = {d["_id"]: d for d in docs}
    stored = [(r, by_id.get(r.get("id"))) for r in results if "rev" in r]
    assert not stored, f"stored although invalid: {json.dumps(stored)[:2000]}"
    for r in results:
        assert r.get("error") == "forbidden", r
        reason = r.get("reason")
        assert isinstance(reason, str) and reason.strip() and "\n" not in reason, r
    db.refused += len(docs)


def test_every_row_of_the_bad_table_is_refused_with_a_reason(door):
    assert_refused(door, [doc for _, _, doc in bad_docs()])


@settings(max_examples=BATCHES, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(batch=st.lists(hostile_doc(), min_size=BATCH_SIZE, max_size=BATCH_SIZE))
def test_10000_hostile_documents_are_refused_at_the_door(door, batch):
    assert_refused(door, batch)


def test_the_door_kept_out_everything(door):
    """After the generated batches: nothing got in, and the count is what the issue asks."""
    rows = door.find({"_id": {"$gt": None}})
    assert [r["_id"] for r in rows if not r["_id"].startswith("_design/")] == []
    print(f"\nrefused at the door: {door.refused} documents")
    assert door.refused >= BATCHES * BATCH_SIZE


def test_documents_forced_in_before_the_design_end_as_error_and_the_worker_goes_on(
        couch_url, db_name, spawn, records):
    # No design document yet: nothing validates, so these are stored as they are.
    db = Couch(couch_url, db_name)
    db.ensure_database()
    forced = [doc for _, _, doc in bad_docs(include_python_only=True)]
    forced += [hostile_doc().example() for _ in range(100)]
    forced = [{k: v for k, v in doc.items() if k != "_id"} for doc in forced]   # two rows share an id
    results = db.bulk(forced)
    ids = [r["id"] for r in results if "rev" in r]
    assert len(ids) == len(forced), [r for r in results if "rev" not in r][:3]
    docs = {d["_id"]: d for d in db.find({"_id": {"$in": ids}})}
    # What a worker named manobi must act on: its own tasks in a status it handles.
    active = {i for i, d in docs.items() if d.get("worker") == "manobi"
              and d.get("status") in ("waiting", "scheduled", "running", "reschedule", "cancel")}
    w = spawn("manobi", couch_url, db_name).start()     # installs the design document
    assert db.get("_design/after")
    [good] = post_all(db, [record_task(records, datetime.now(timezone.utc) + timedelta(seconds=2))])

    def ended():
        now = {d["_id"]: d for d in db.find({"_id": {"$in": sorted(active)}})}
        return all(d["status"] in ("error", "canceled") for d in now.values()) and now
    final = wait_for(ended, 30, "every forced-in task of manobi to end")
    for doc in final.values():
        if doc["status"] == "error":
            assert doc["error"]["type"] == "InvalidTask" and doc["error"]["message"], doc["error"]
    assert wait_final(db, [good], 30)[good]["status"] == "done"
    assert len(read_runs(records)) == 2
    assert w.alive()
    untouched = [i for i in ids if i not in active and db.get(i).get("_rev") != docs[i]["_rev"]]
    print(f"\nforced in: {len(ids)} documents, {len(active)} were manobi's to handle, "
          f"{sum(1 for d in final.values() if d['status'] == 'error')} ended as error")
    assert untouched == [], "the worker changed documents that were not its tasks"


def test_a_server_that_answers_garbage_or_hangs_is_survived(couch, couch_url, db_name, spawn, records):
    from proxy import CuttableProxy

    front = CuttableProxy("127.0.0.5", couch_url).start()   # the URL: its credentials carry over
    try:
        w = spawn("manobi", front.url, db_name).start()
        soon = lambda s: datetime.now(timezone.utc) + timedelta(seconds=s)  # noqa: E731
        [first] = post_all(couch, [record_task(records, soon(2))])
        assert wait_final(couch, [first], 20)[first]["status"] == "done"
        posted = []
        for mode in ("garbage", "hang"):
            front.set_mode(mode)
            posted += post_all(couch, [record_task(records, soon(3))])   # straight to the real server
            time.sleep(12)      # the bad server's turn: longer than a request timeout
            assert w.alive(), f"the worker died on a server answering {mode}:\n{w.log_tail()}"
        front.set_mode("pass")
        final = wait_final(couch, posted, 90)
        assert {d["status"] for d in final.values()} == {"done"}
        assert len([r for r in read_runs(records) if r["event"] == "start"]) == 3
        assert w.alive()
    finally:
        front.close()
