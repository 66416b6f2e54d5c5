"""History entries and follow-up tasks (pure, table-driven)."""

import json

import pytest

from afterd.chains import Template, follow_up_doc, follow_up_id, parse_template
from afterd.fields import parse_date
from afterd.history import history_entry, push_history, summary, tail
from afterd.task import check_document

D = parse_date


# ---- history -------------------------------------------------------------------------------------

def test_history_entry_of_a_successful_run():
    entry = history_entry(occurrence=D("2026-12-01T03:00:00Z"), attempt=1, started_at=D("2026-12-01T03:00:00.002Z"),
                          finished_at=D("2026-12-01T03:00:01.502Z"), status="done", result={"invoices": 3},
                          process="after:process:manobi:host:0", output_ref="output/r1.txt")
    assert entry == {"occurrence": "2026-12-01T03:00:00Z", "attempt": 1, "start": "2026-12-01T03:00:00.002Z",
                     "end": "2026-12-01T03:00:01.502Z", "duration_s": 1.5, "status": "done",
                     "result": {"invoices": 3}, "process": "after:process:manobi:host:0",
                     "output_ref": "output/r1.txt"}


def test_history_entry_of_a_failed_run_keeps_a_summary_not_the_traceback():
    error = {"type": "RuntimeError", "message": "x" * 1000, "traceback": "Traceback ...\n" * 100}
    entry = history_entry(occurrence=None, attempt=2, started_at=None, finished_at=D("2026-12-01T03:00:01Z"),
                          status="error", error=error, result={"ignored": True}, output="line\n" * 5000,
                          output_tail_bytes=100)
    assert entry["error"].startswith("RuntimeError: xxx") and len(entry["error"]) == 200
    assert "result" not in entry and "start" not in entry and "duration_s" not in entry
    assert entry["output"].startswith("…") and len(entry["output"].encode()) <= 100 + len("…".encode())
    assert len(json.dumps(entry)) < 500


@pytest.mark.parametrize("value,expected", [
    (None, None), (3, 3), (True, True), ("short", "short"), ({"a": 1}, {"a": 1}), ([1, 2], [1, 2]),
    ("y" * 300, "y" * 199 + "…"),
    ({"rows": list(range(200))}, ('{"rows":[' + ",".join(map(str, range(200))))[:199] + "…"),
])
def test_summary(value, expected):
    assert summary(value) == expected


def test_tail_cuts_on_a_character_boundary():
    text = "é" * 100                            # 2 bytes each
    cut = tail(text, 51)
    assert cut.startswith("…") and set(cut[1:]) == {"é"} and len(cut[1:].encode()) <= 51
    assert tail("short", 100) == "short"


@pytest.mark.parametrize("why,history,limit,expected", [
    ("appended, oldest first", [1, 2], 5, [1, 2, "new"]),
    ("bounded: the oldest go", [1, 2, 3], 3, [2, 3, "new"]),
    ("a smaller limit trims", [1, 2, 3, 4, 5], 2, [5, "new"]),
    ("limit 0 keeps nothing", [1, 2], 0, []),
    ("no history yet", None, 20, ["new"]),
    ("a user's garbage starts afresh", {"not": "a list"}, 20, ["new"]),
])
def test_push_history(why, history, limit, expected):
    before = list(history) if isinstance(history, list) else history
    assert push_history(history, "new", limit) == expected, why
    assert history == before                    # a new list: the document is not changed


def test_a_year_of_runs_every_minute_stays_at_the_limit():
    history = []
    entry = history_entry(occurrence=D("2026-12-01T03:00:00Z"), attempt=1, started_at=D("2026-12-01T03:00:00Z"),
                          finished_at=D("2026-12-01T03:00:01Z"), status="done", result={"ok": True},
                          process="after:process:manobi:host:0")
    for _ in range(525_600 // 100):             # a sample of the year is enough to see the bound
        history = push_history(history, entry, 20)
    assert len(history) == 20 and len(json.dumps(history)) < 20 * 300


# ---- chains --------------------------------------------------------------------------------------

PARENT = {"_id": "billing-1234", "_rev": "7-x", "worker": "manobi", "date": "2026-12-01T03:00:00Z",
          "status": "error", "job": {"name": "generate_billing", "arguments": ["1234"]},
          "error": {"type": "RuntimeError", "message": "card declined", "traceback": "..."},
          "on_error": {"job": {"name": "notify_url", "arguments": {"url": "http://127.0.0.1:9/hook"}}}}
NOW = D("2026-12-01T03:00:05Z")
RUN = "billing-1234@2026-12-01T03:00:00Z#0"


def test_follow_up_of_a_failed_run():
    doc = follow_up_doc(PARENT, parse_template(PARENT["on_error"], "on_error"), RUN, "error", NOW)
    assert doc == {"_id": follow_up_id("billing-1234", RUN, "error"), "worker": "manobi",
                   "date": "2026-12-01T03:00:05Z", "status": "waiting",
                   "job": {"name": "notify_url", "arguments": {"url": "http://127.0.0.1:9/hook"}},
                   "parent": {"id": "billing-1234", "run": RUN, "status": "error",
                              "error": "RuntimeError: card declined"}}
    check_document(doc)                          # a task the door lets in


@pytest.mark.parametrize("why,template,worker,date,timeout", [
    ("same worker, due at once", Template("n", [], None, None, None), "manobi", "2026-12-01T03:00:05Z", None),
    ("the template's worker", Template("n", [], "reports", None, None), "reports", "2026-12-01T03:00:05Z", None),
    ("the template's date", Template("n", [], None, D("2026-12-02"), None), "manobi", "2026-12-02T00:00:00Z", None),
    ("the template's timeout", Template("n", [], None, None, 5.0), "manobi", "2026-12-01T03:00:05Z", 5.0),
])
def test_follow_up_worker_date_timeout(why, template, worker, date, timeout):
    doc = follow_up_doc({**PARENT, "status": "done", "result": {"invoices": 3}}, template, RUN, "done", NOW)
    assert (doc["worker"], doc["date"], doc.get("timeout")) == (worker, date, timeout), why
    assert doc["parent"] == {"id": "billing-1234", "run": RUN, "status": "done", "result": {"invoices": 3}}


def test_follow_up_id_is_derived_from_the_run():
    template = parse_template(PARENT["on_error"], "on_error")
    first = follow_up_doc(PARENT, template, RUN, "error", NOW)
    replayed = follow_up_doc(PARENT, template, RUN, "error", D("2026-12-01T04:00:00Z"))   # after a crash
    assert first["_id"] == replayed["_id"]
    assert follow_up_id("billing-1234", RUN.replace("#0", "#1"), "error") != first["_id"]   # another attempt
    assert follow_up_id("billing-1234", RUN, "done") != first["_id"]
    assert first["_id"].startswith("billing-1234~on_error~")
    long_id = follow_up_id("x" * 5000, RUN, "error")
    assert len(long_id) < 120


def test_follow_up_refuses_other_endings():
    with pytest.raises(ValueError):
        follow_up_doc(PARENT, parse_template(PARENT["on_error"], "on_error"), RUN, "timeout", NOW)
