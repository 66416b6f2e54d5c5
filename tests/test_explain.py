"""`after explain`'s sentences (afterd/explain.py), from a table of cases shared with the
console's port (tests/explain_cases.json; tests/browser/test_console_lib.py runs the same
table through console-lib.mjs): each case is a document, its worker's heartbeats, whether
the design document exists, this machine's jobs (or null), the time, and what is said."""

import json
from pathlib import Path

import pytest

from afterd.explain import explain, sentence, span
from afterd.fields import parse_date

CASES = json.loads((Path(__file__).parent / "explain_cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_explain_says(case):
    design = {"_id": "_design/after"} if case["design"] else None
    assert explain(case["doc"], case["heartbeats"], design, case["jobs"], parse_date(case["now"])) == case["say"]


def test_the_table_covers_every_reason_the_acceptance_names():
    """A paused task, a dead worker, a broken job, a future date, a refusal, a skip, a cluster."""
    said = "\n".join(line for case in CASES for line in case["say"])
    for words in ("paused since", "no live process of worker", "cannot be loaded on", "runs next at",
                  "refused", "skipped", "conflicting revision", "stopped 2 days ago", "alive (lease renewed"):
        assert words in said


def test_a_status_no_worker_knows_is_refused():
    doc = {"_id": "t", "worker": "w", "date": "2026-12-07", "status": "later", "job": {"name": "j"}}
    [line] = explain(doc, [], {}, None, parse_date("2026-12-06"))
    assert line.startswith("refused: status: 'later' is not a status")


def test_a_document_the_worker_cannot_use_is_refused_with_the_workers_own_reason():
    doc = {"_id": "t", "worker": "w", "date": "2026-12-07", "status": "waiting", "job": {"name": "j"},
           "repeat": {"days": 0}}
    [line] = explain(doc, [], {}, None, parse_date("2026-12-06"))
    assert line == "refused: repeat: the offset is zero (it must be at least 1 millisecond): a repeat must move " \
                   "time forward: a process of worker `w` will end it as error"


@pytest.mark.parametrize("seconds,text", [(0, "0 s"), (4.9, "4 s"), (65, "1 min 5 s"), (3600, "1 h"),
                                          (11520, "3 h 12 min"), (86400, "1 day"), (2 * 86400 + 7200, "2 days 2 h")])
def test_spans(seconds, text):
    assert span(seconds) == text


def test_sentences_are_printed_with_a_capital_and_a_stop():
    assert sentence("paused since x") == "Paused since x."
