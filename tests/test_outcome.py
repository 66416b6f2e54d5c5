"""The document after a run (afterd/outcome.py): a table of cases, pure, `now` passed in."""

from datetime import datetime, timezone

import pytest

from afterd.outcome import REMOVE, Outcome, apply_outcome, from_journal, interrupted, outcome_fields, replace_due
from afterd.task import format_date, parse_date

NOW = datetime(2026, 12, 1, 3, 0, 5, tzinfo=timezone.utc)
T0 = NOW.timestamp() - 5


def ok(result=None):
    return Outcome("r1", True, result, None, T0, T0 + 1, 2.5)


def failed(kind="RuntimeError"):
    return Outcome("r1", False, None, {"type": kind, "message": "boom", "traceback": "tb"}, T0, T0 + 1, 0.0)


def task(**fields):
    return {"_id": "t", "worker": "w", "date": "2026-12-01T03:00:00Z", "status": "scheduled",
            "job": {"name": "j", "arguments": []}, **fields}


@pytest.mark.parametrize("doc, outcome, canceled, expected", [
    # one-time: the run's ending is the task's status, with its result or error
    (task(), ok({"n": 1}), False, {"status": "done", "result": {"n": 1}, "runs": 1}),
    (task(runs=4), failed(), False, {"status": "error", "runs": 5}),
    (task(), failed("Canceled"), False, {"status": "canceled"}),
    (task(), ok(), True, {"status": "canceled"}),
    # a repeat goes on from its anchor. Occurrences that came due since the run began
    # (here 03:00:02 and :04, now is :05) follow overlap and catchup: by default (wait,
    # one) the latest runs at once; with overlap skip they are dropped (see below too)
    (task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0), ok(),
     False, {"status": "scheduled", "date": "2026-12-01T03:00:04Z", "occurrence": 2}),
    (task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0, overlap="skip"), ok(),
     False, {"status": "scheduled", "date": "2026-12-01T03:00:06Z", "occurrence": 3}),
    (task(repeat={"months": 1}, date="2026-01-31T00:00:00Z", anchor="2026-01-31T00:00:00Z", occurrence=10),
     ok(), False, {"status": "scheduled", "date": "2026-12-31T00:00:00Z", "occurrence": 11}),
    # a repeat that ended (count) takes its final status, and keeps last_run
    (task(repeat={"seconds": 1, "count": 1}, anchor="2026-12-01T03:00:00Z"), ok(7), False,
     {"status": "done", "result": 7}),
    # a canceled repeat does not go on
    (task(repeat={"seconds": 1}), ok(), True, {"status": "canceled"}),
    # an extra run (`run now`) keeps the chain's date and occurrence
    (task(repeat={"days": 1}, occurrence=5, run_now="2026-12-01T03:00:04Z"), ok(), False,
     {"status": "scheduled"}),
])
def test_outcome_fields(doc, outcome, canceled, expected):
    fields, warning = outcome_fields(doc, outcome, now=NOW, canceled=canceled)
    assert warning is None
    assert {k: fields.get(k) for k in expected} == expected
    assert fields["started_at"] == "2026-12-01T03:00:00Z" and fields["finished_at"] == "2026-12-01T03:00:01Z"
    # a repeat records the run it made, due at its date; a run now when it was asked for
    due = doc.get("run_now", doc["date"])
    if doc.get("repeat") is not None:
        assert fields["last_run"]["date"] == due
    assert fields["history"][-1]["occurrence"] == due
    if "run_now" in doc:
        assert "date" not in fields and "occurrence" not in fields and "run_now" in fields[REMOVE]
        assert fields["history"][-1]["run_now"] is True
    else:
        assert "run_now" not in fields["history"][-1]


def test_a_repeat_that_cannot_be_planned_ends_with_a_warning():
    doc = task(repeat={"rrule": "FREQ=SOMETIMES"})
    fields, warning = outcome_fields(doc, ok(), now=NOW)
    assert fields["status"] == "done" and "cannot plan" in warning


@pytest.mark.parametrize("base_status, fields_status, written", [
    ("scheduled", "scheduled", "scheduled"),
    ("cancel", "scheduled", "canceled"),      # the user canceled during the run
    ("cancel", "done", "canceled"),
    ("pause", "scheduled", "paused"),         # paused during the run: the chain waits
    ("pause", "done", "done"),                # a one-time task's run was its end
])
def test_apply_outcome_keeps_what_the_user_wrote_meanwhile(base_status, fields_status, written):
    base = task(status=base_status, note="mine", running={"run": "r1"}, error={"old": 1})
    doc = apply_outcome(base, {"status": fields_status, "runs": 1, REMOVE: ["running", "error"]}, {"process": "me"})
    assert doc["status"] == written and doc["note"] == "mine" and doc["owner"] == {"process": "me"}
    assert "running" not in doc and "error" not in doc and doc["runs"] == 1


def test_run_now_asked_during_a_run_is_kept_as_an_extra_run_due_when_it_ended():
    base = task(status="run", repeat={"seconds": 2}, running={"run": "r1"})
    fields = {"status": "scheduled", "finished_at": "2026-12-01T03:00:01Z", "runs": 1, REMOVE: ["running", "run_now"]}
    doc = apply_outcome(base, fields, {"process": "me"})
    assert (doc["status"], doc["run_now"]) == ("scheduled", "2026-12-01T03:00:01Z")
    # a one-time task: that run was its run
    done = apply_outcome(task(status="run"), {**fields, "status": "done"}, {"process": "me"})
    assert done["status"] == "done" and "run_now" not in done


@pytest.mark.parametrize("fields_status, repeat", [("scheduled", {"days": 1}), ("done", None), ("scheduled", None)])
def test_a_reschedule_written_during_a_run_moves_the_next_run_to_the_users_date(fields_status, repeat):
    # scheduled + no repeat: the run failed and its retry was planned; the user's date wins
    base = task(status="reschedule", date="2027-01-05T08:00:00Z", repeat=repeat, anchor="2026-12-01T03:00:00Z",
                occurrence=4, running={"run": "r1"})
    fields = {"status": fields_status, "date": "2026-12-02T03:00:00Z", "occurrence": 5, "attempts": 1,
              "runs": 5, REMOVE: ["running"]}
    doc = apply_outcome(base, fields, {"process": "me"})
    assert (doc["status"], doc["date"], doc["anchor"], doc["occurrence"], doc["attempts"]) == \
        ("scheduled", "2027-01-05T08:00:00Z", "2027-01-05T08:00:00Z", 0, 0)
    assert doc["runs"] == 5 and "running" not in doc


def test_interrupted_and_journal_outcomes():
    gone = interrupted("t@x#0", "its owner vanished", NOW)
    assert not gone.ok and gone.error["type"] == "Interrupted" and "its owner vanished" in gone.error["message"]
    fields, _ = outcome_fields(task(), gone, now=NOW)
    assert fields["status"] == "error" and fields["started_at"] is None
    rec = from_journal("r", {"ok": True, "result": 3, "started_at_s": T0, "finished_at_s": T0 + 2}, NOW.timestamp())
    assert rec.ok and rec.result == 3 and rec.finished_at_s == T0 + 2 and rec.queued_ms == 0.0


RETRY = {"attempts": 3, "delay": "30s", "backoff": 2, "on": ["error"]}


@pytest.mark.parametrize("attempts, status, due_in_s", [
    (0, "scheduled", 30),    # the 1st attempt failed: the 2nd after the delay
    (1, "scheduled", 60),    # the 2nd failed: the 3rd after twice the delay (backoff 2)
    (2, "error", None),      # the 3rd and last failed: it ends
])
def test_a_failed_attempt_is_retried_with_backoff_then_ends(attempts, status, due_in_s):
    fields, _ = outcome_fields(task(retry=RETRY, attempts=attempts), failed(), now=NOW)
    assert fields["status"] == status
    if due_in_s is not None:
        assert fields["attempts"] == attempts + 1 and fields["error"]["message"] == "boom"
        assert parse_date(fields["date"]).timestamp() == pytest.approx(NOW.timestamp() + due_in_s)
    assert fields["history"][-1]["attempt"] == attempts + 1 and fields["history"][-1]["status"] == "error"


def test_a_retry_policy_retries_only_the_endings_it_names():
    fields, _ = outcome_fields(task(retry=RETRY), failed("Timeout"), now=NOW)
    assert fields["status"] == "error"        # timeouts are not in "on"
    fields, _ = outcome_fields(task(retry=RETRY), ok(), now=NOW)
    assert fields["status"] == "done" and fields["attempts"] == 0


def test_history_keeps_the_last_n_runs():
    old = [{"occurrence": f"2026-11-{d:02d}T00:00:00Z", "attempt": 1, "status": "done"} for d in range(1, 21)]
    fields, _ = outcome_fields(task(history=old, history_limit=20), ok(5), now=NOW, process="manobi:h:0")
    assert len(fields["history"]) == 20 and fields["history"][0] == old[1]
    last = fields["history"][-1]
    assert last["status"] == "done" and last["process"] == "manobi:h:0" and last["duration_s"] == 1.0
    fields, _ = outcome_fields(task(history=old, history_limit=3), ok(), now=NOW)
    assert len(fields["history"]) == 3


NOTIFY = {"job": {"name": "notify_url", "arguments": {"url": "http://127.0.0.1:9/hook"}}}


@pytest.mark.parametrize("doc, outcome, follow_job", [
    (task(on_error=NOTIFY), failed(), "notify_url"),
    (task(on_error=NOTIFY), ok(), None),                                # on_error only
    (task(on_done=NOTIFY), ok(1), "notify_url"),
    (task(on_error=NOTIFY, retry=RETRY), failed(), None),               # a retry is left: not yet
    (task(on_error=NOTIFY, retry=RETRY, attempts=2), failed(), "notify_url"),   # the last attempt failed
    (task(on_error=NOTIFY, repeat={"days": 1}), failed(), "notify_url"),  # a repeat's run, too
    (task(on_error=NOTIFY), failed("Canceled"), None),
])
def test_a_run_that_ends_so_asks_for_its_follow_up(doc, outcome, follow_job):
    from afterd.outcome import follow_up

    fields, _ = outcome_fields(doc, outcome, now=NOW)
    follow = follow_up(doc, fields, "t@2026-12-01T03:00:00Z#0", NOW)
    assert (follow and follow["job"]["name"]) == follow_job
    if follow:
        again = follow_up(doc, fields, "t@2026-12-01T03:00:00Z#0", NOW)
        assert again["_id"] == follow["_id"]                 # derived from the run: a replay is a 409
        assert follow["parent"]["id"] == "t" and follow["worker"] == "w" and follow["status"] == "waiting"
        assert "_chain" not in apply_outcome(doc, fields, {"process": "me"})


def test_jitter_delays_each_occurrence_the_same_way_everywhere():
    from afterd.outcome import jittered
    from afterd.policy import parse_policy

    # overlap skip: the next occurrence is the first after now (03:00:06), not one missed
    doc = task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0, jitter="10m", overlap="skip")
    fields, _ = outcome_fields(doc, ok(), now=NOW)
    due = parse_date(fields["date"])
    plain = parse_date("2026-12-01T03:00:06Z")
    assert plain <= due < plain.replace(minute=10) and fields["occurrence"] == 3
    assert outcome_fields(doc, ok(), now=NOW)[0]["date"] == fields["date"]     # derived, not drawn
    assert jittered(plain, "t", 3, parse_policy(doc)) == due
    assert jittered(plain, "t", 4, parse_policy(doc)) != due                    # another occurrence


@pytest.mark.parametrize("policy, occurrence, expected", [
    ({}, 0, None),                                                      # "one": run its date as it is
    ({"catchup": "all"}, 0, None),                                      # "all": from the oldest
    # none: the missed ones are skipped; the latest, due 1 s ago, is within the grace (a late timer)
    ({"catchup": "none"}, 0, {"date": "2026-12-01T03:00:04Z", "occurrence": 2}),
    ({"catchup": "all", "catchup_window": 3}, 0, {"date": "2026-12-01T03:00:02Z", "occurrence": 1}),
    ({"catchup": "one", "catchup_window": 3}, 0, {"date": "2026-12-01T03:00:04Z", "occurrence": 2}),
])
def test_missed_occurrences_at_arming(policy, occurrence, expected):
    from afterd.outcome import missed_fields

    doc = task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=occurrence, **policy)
    assert missed_fields(doc, NOW) == expected


def test_catchup_none_without_grace_skips_to_the_next_occurrence():
    from afterd.outcome import missed_fields

    doc = task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0, catchup="none")
    assert missed_fields(doc, NOW, grace_s=0) == {"date": "2026-12-01T03:00:06Z", "occurrence": 3}


def test_catchup_all_after_a_run_goes_to_the_next_missed_occurrence():
    doc = task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0, catchup="all")
    fields, _ = outcome_fields(doc, ok(), now=NOW)
    assert fields["occurrence"] == 1 and fields["date"] == "2026-12-01T03:00:02Z"


# ---- overlap: which occurrence follows a run that outlasted its period ---------------------------

def run_of(seconds, start="2026-12-01T03:00:00Z"):
    """A run of `seconds` that began at `start`; `now` is its end."""
    t0 = parse_date(start).timestamp()
    return Outcome("r1", True, None, None, t0, t0 + seconds, 0.0), datetime.fromtimestamp(t0 + seconds, timezone.utc)


@pytest.mark.parametrize("why, fields, seconds, date, k", [
    ("wait (default), catchup one: the latest that came due runs at once (back-to-back)",
     {}, 3.05, "2026-12-01T03:00:03Z", 3),
    ("wait, catchup all: each that came due, the oldest first", {"catchup": "all"}, 3.05, "2026-12-01T03:00:01Z", 1),
    ("wait, catchup none: none of them, the first after the run",
     {"catchup": "none"}, 3.05, "2026-12-01T03:00:04Z", 4),
    ("wait, catchup one with a window shorter than the run: the latest is within it",
     {"catchup_window": 0.5}, 3.05, "2026-12-01T03:00:03Z", 3),
    ("skip: dropped, the first occurrence after the run", {"overlap": "skip"}, 3.05, "2026-12-01T03:00:04Z", 4),
    ("skip, catchup all: dropped all the same", {"overlap": "skip", "catchup": "all"}, 3.05,
     "2026-12-01T03:00:04Z", 4),
    ("replace, a run that ended in time: the next as usual", {"overlap": "replace"}, 0.5,
     "2026-12-01T03:00:01Z", 1),
    ("any mode, a run that ended in time: the next occurrence", {"overlap": "skip"}, 0.5, "2026-12-01T03:00:01Z", 1),
    ("wait, a run that ended in time", {}, 0.5, "2026-12-01T03:00:01Z", 1),
])
def test_overlap_after_a_run(why, fields, seconds, date, k):
    outcome, now = run_of(seconds)
    doc = task(repeat={"seconds": 1}, anchor="2026-12-01T03:00:00Z", occurrence=0, **fields)
    got, warning = outcome_fields(doc, outcome, now=now)
    assert warning is None and (got["status"], got["date"], got["occurrence"]) == ("scheduled", date, k), why


def test_overlap_replace_a_run_canceled_by_its_next_occurrence_is_replaced_and_the_chain_goes_on():
    t0 = parse_date("2026-12-01T03:00:00Z").timestamp()
    canceled = Outcome("r1", False, None, {"type": "Canceled", "message": "canceled", "traceback": None},
                       t0, t0 + 2.02, 0.0)
    doc = task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0, overlap="replace",
               retry={"attempts": 3, "on": ["error"]}, on_error={"job": {"name": "j"}})
    fields, _ = outcome_fields(doc, canceled, now=datetime.fromtimestamp(t0 + 2.02, timezone.utc))
    # the occurrence that cut it starts at once; no retry, no on_error: it did not fail
    assert (fields["status"], fields["date"], fields["occurrence"]) == ("scheduled", "2026-12-01T03:00:02Z", 1)
    assert fields["history"][-1]["status"] == "replaced" and "overlap replace" in fields["history"][-1]["error"]
    assert fields["last_run"]["error"]["type"] == "Replaced" and "_chain" not in fields
    # canceled just before its next occurrence (the worker's timer fires a little early):
    # that occurrence is armed at its own date
    early = Outcome("r1", False, None, canceled.error, t0, t0 + 1.95, 0.0)
    fields, _ = outcome_fields(doc, early, now=datetime.fromtimestamp(t0 + 1.95, timezone.utc))
    assert (fields["date"], fields["occurrence"], fields["history"][-1]["status"]) == \
        ("2026-12-01T03:00:02Z", 1, "replaced")
    # with jitter, that occurrence keeps its jitter: the date replace_due armed the cut for
    jittery = {**doc, "repeat": {"minutes": 1}, "jitter": "30s"}
    fields, _ = outcome_fields(jittery, early, now=datetime.fromtimestamp(t0 + 1.95, timezone.utc))
    assert fields["date"] == format_date(replace_due(jittery, NOW)) != "2026-12-01T03:01:00Z"
    # a user's cancel of the same run ends the task, as always
    fields, _ = outcome_fields(doc, canceled, now=NOW, canceled=True)
    assert fields["status"] == "canceled" and fields["history"][-1]["status"] == "canceled"
    # overlap wait: a cancel (by whoever) is not a replacement
    fields, _ = outcome_fields({**doc, "overlap": "wait"}, canceled, now=NOW)
    assert fields["status"] == "canceled"


@pytest.mark.parametrize("why, doc, expected", [
    ("the run of occurrence 0: occurrence 1's date", task(repeat={"seconds": 2}, overlap="replace",
     anchor="2026-12-01T03:00:00Z", occurrence=0), "2026-12-01T03:00:02Z"),
    ("a retry attempt of occurrence 3: occurrence 4's", task(repeat={"seconds": 2}, overlap="replace",
     anchor="2026-12-01T03:00:00Z", occurrence=3, attempts=1, date="2026-12-01T03:00:06.500Z"),
     "2026-12-01T03:00:08Z"),
    ("an extra run: the chain's next date", task(repeat={"seconds": 2}, overlap="replace", occurrence=5,
     anchor="2026-12-01T02:59:50Z", run_now="2026-12-01T03:00:00.100Z"), "2026-12-01T03:00:00Z"),
    ("the last of its count: nothing replaces it", task(repeat={"seconds": 2, "count": 1}, overlap="replace",
     anchor="2026-12-01T03:00:00Z", occurrence=0), None),
    ("overlap wait: never", task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z"), None),
    ("overlap skip: never", task(repeat={"seconds": 2}, overlap="skip", anchor="2026-12-01T03:00:00Z"), None),
    ("a one-time task: never", task(overlap="replace"), None),
])
def test_replace_due(why, doc, expected):
    got = replace_due(doc, NOW)
    assert (format_date(got) if got else None) == expected, why


# ---- output: kept as an attachment, named in the run's history entry -----------------------------

def test_a_runs_output_tail_goes_inline_as_an_attachment_named_by_its_run_number():
    import base64

    out = Outcome("r1", True, 1, None, T0, T0 + 1, 0.0, output="x" * 5000 + "last line\n")
    fields, _ = outcome_fields(task(runs=6), out, now=NOW, output_limit=100)
    entry = fields["history"][-1]
    assert entry["output_ref"] == "output/7" and "output" not in entry
    note = fields["_output"]
    assert note["name"] == "output/7"
    text = base64.b64decode(note["data"]).decode()
    assert text.endswith("last line\n") and len(text.encode()) <= 100 + 3
    doc = apply_outcome(task(runs=6), fields, {"process": "me"})
    assert doc["_attachments"] == {"output/7": {"content_type": "text/plain", "data": note["data"]}}
    assert "_output" not in doc
    # no output, or output_limit 0: no attachment, no output_ref
    for outcome, limit in ((ok(), 4096), (out, 0)):
        fields, _ = outcome_fields(task(), outcome, now=NOW, output_limit=limit)
        assert "output_ref" not in fields["history"][-1] and "_output" not in fields


def test_outputs_of_runs_that_left_the_history_are_dropped_in_the_same_write_and_the_users_kept():
    stub = {"content_type": "text/plain", "digest": "md5-x", "length": 3, "revpos": 2, "stub": True}
    history = [{"status": "done", "output_ref": f"output/{n}"} for n in (1, 2)]
    base = task(repeat={"seconds": 1}, anchor="2026-12-01T03:00:00Z", runs=2, history_limit=2, history=history,
                _attachments={"output/1": stub, "output/2": stub, "photo.png": stub})
    out = Outcome("r1", True, 1, None, T0, T0 + 1, 0.0, output="three")
    fields, _ = outcome_fields(base, out, now=NOW)
    doc = apply_outcome(base, fields, {"process": "me"})
    assert sorted(doc["_attachments"]) == ["output/2", "output/3", "photo.png"]
    assert doc["_attachments"]["output/2"] == stub and "data" in doc["_attachments"]["output/3"]
    # a run without output still drops what left the history; nothing left: no field
    bare = task(repeat={"seconds": 1}, anchor="2026-12-01T03:00:00Z", runs=1, history_limit=1,
                history=history[:1], _attachments={"output/1": stub})
    fields, _ = outcome_fields(bare, ok(), now=NOW)
    assert "_attachments" not in apply_outcome(bare, fields, {"process": "me"})


def test_history_limit_of_the_worker_applies_when_the_task_sets_none():
    doc = task(repeat={"seconds": 1}, anchor="2026-12-01T03:00:00Z", history=[{"status": "done"}] * 9)
    assert len(outcome_fields(doc, ok(), now=NOW, history_limit=5)[0]["history"]) == 5
    assert len(outcome_fields({**doc, "history_limit": 7}, ok(), now=NOW, history_limit=5)[0]["history"]) == 7


@pytest.mark.parametrize("why, fields, start, seconds, date, k", [
    ("after downtime the missed occurrences collapse into the run made now: then the first future one",
     {}, "2026-12-01T03:10:30Z", 0.5, "2026-12-01T03:11:00Z", 11),
    ("the same run taking 40 s: 03:11:00 came due during it, and runs at once",
     {}, "2026-12-01T03:10:30Z", 40, "2026-12-01T03:11:00Z", 11),
    ("catchup all: every occurrence since, as always", {"catchup": "all"}, "2026-12-01T03:10:30Z", 0.5,
     "2026-12-01T03:01:00Z", 1),
    ("catchup none, 40 s: none of them", {"catchup": "none"}, "2026-12-01T03:10:30Z", 40,
     "2026-12-01T03:12:00Z", 12),
])
def test_a_run_begun_late_by_catchup(why, fields, start, seconds, date, k):
    outcome, now = run_of(seconds, start)
    doc = task(date="2026-12-01T03:00:00Z", repeat={"minutes": 1}, anchor="2026-12-01T03:00:00Z", occurrence=0,
               **fields)
    got, _ = outcome_fields(doc, outcome, now=now)
    assert (got["date"], got["occurrence"]) == (date, k), why


def test_a_skip_leaves_a_note_of_what_was_skipped_and_why():
    """What `after explain` reads: how many occurrences, the first, when, why (actions._arm writes it)."""
    from afterd.outcome import missed_fields, skipped_note

    doc = task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0, catchup="none")
    skip = missed_fields(doc, NOW)
    assert skipped_note(doc, skip, NOW) == {"count": 2, "first": "2026-12-01T03:00:00Z",
                                            "at": format_date(NOW), "why": "catchup none"}
    windowed = task(repeat={"seconds": 2}, anchor="2026-12-01T03:00:00Z", occurrence=0, catchup_window=3)
    assert skipped_note(windowed, missed_fields(windowed, NOW), NOW)["why"] == "older than catchup_window"
    assert skipped_note(doc, {"status": "done"}, NOW) is None
