"""Policies: parsing into Task.policy, and the pure rules the decision core applies
(retry delays, which endings retry, jitter, overlap) as tables."""

import pytest

from afterd.chains import Template
from afterd.fields import TaskError, parse_date
from afterd.policy import (DEFAULT_POLICY, Policy, RetryPolicy, after_run, history_limit,
                           jitter_s, overlap_action, parse_policy, retry_delay_s, should_retry)
from afterd.repeat import parse_repeat
from afterd.task import parse_task
from doc_cases import task

ALL_ENDINGS = frozenset({"error", "timeout", "interrupted"})


# ---- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("why,fields,expected", [
    ("no policy field: today's behaviour", {}, DEFAULT_POLICY),
    ("retry number: crash retries only", {"retry": 2}, Policy(retry=RetryPolicy(attempts=3))),
    ("retry object, the design's example",
     {"retry": {"attempts": 3, "delay": "30s", "backoff": 2, "max_delay": "1h", "on": ["error", "timeout"]}},
     Policy(retry=RetryPolicy(3, 30.0, 2.0, 3600.0, frozenset({"error", "timeout"})))),
    ("retry object defaults: no wait, every failing ending", {"retry": {"attempts": 2}},
     Policy(retry=RetryPolicy(2, 0.0, 1.0, None, ALL_ENDINGS))),
    ("catch-up and window", {"catchup": "all", "catchup_window": "1h30m"},
     Policy(catchup="all", catchup_window_s=5400.0)),
    ("overlap, jitter in ms, history", {"overlap": "skip", "jitter": "1500ms", "history_limit": 5},
     Policy(overlap="skip", jitter_s=1.5, history_limit=5)),
    ("nulls are the defaults", {"catchup": None, "overlap": None, "jitter": None, "on_done": None},
     DEFAULT_POLICY),
    ("a template", {"on_error": {"job": {"name": "notify_url", "arguments": {"url": "u"}}}},
     Policy(on_error=Template("notify_url", {"url": "u"}, None, None, None))),
    ("a template with every key", {"on_done": {"job": {"name": "n"}, "worker": "w", "date": "2026-12-02",
                                               "timeout": 5}},
     Policy(on_done=Template("n", [], "w", parse_date("2026-12-02"), 5.0))),
])
def test_parse_policy(why, fields, expected):
    assert parse_policy(task(**fields)) == expected, why


def test_task_carries_policy_and_crash_retries():
    t = parse_task(task(retry={"attempts": 4, "on": ["interrupted", "error"]}, overlap="replace"))
    assert t.policy.overlap == "replace" and t.retry == 3
    assert parse_task(task(retry={"attempts": 4, "on": ["error"]})).retry == 0   # crashes not retried
    assert parse_task(task(retry=2)).retry == 2
    assert parse_task(task()).policy is DEFAULT_POLICY


@pytest.mark.parametrize("fields,field,says", [
    ({"retry": {"attempts": 3, "delay": "1M"}}, "retry.delay", "use days (30d)"),
    ({"retry": {"delay": 5}}, "retry.attempts", "missing"),
    ({"retry": {"attempts": 2, "on": ["crash"]}}, "retry.on", "error, timeout, interrupted"),
    ({"catchup": "some"}, "catchup", "one, all, none"),
    ({"overlap": "queue"}, "overlap", "wait, skip, replace"),
    ({"jitter": "soon"}, "jitter", "e.g. 1M7d, 1h30m, 90s"),
    ({"on_error": {"job": {"name": "a/b"}}}, "on_error.job.name", "letters, digits and _"),
])
def test_refusals_say_what_to_do(fields, field, says):
    with pytest.raises(TaskError) as caught:
        parse_policy(task(**fields))
    assert caught.value.field == field and says in str(caught.value) and "\n" not in str(caught.value)


# ---- retries -------------------------------------------------------------------------------------

@pytest.mark.parametrize("why,policy,attempt,expected_s", [
    ("the first run does not wait", RetryPolicy(3, 30, 2), 1, 0.0),
    ("the second waits the delay", RetryPolicy(3, 30, 2), 2, 30.0),
    ("then backoff times more", RetryPolicy(5, 30, 2), 3, 60.0),
    ("and again", RetryPolicy(5, 30, 2), 4, 120.0),
    ("backoff 1: a constant delay", RetryPolicy(5, 10, 1), 5, 10.0),
    ("max_delay caps it", RetryPolicy(10, 30, 2, 100), 5, 100.0),
    ("max_delay below the delay wins", RetryPolicy(3, 30, 2, 5), 2, 5.0),
    ("no delay: retry at once", RetryPolicy(3), 3, 0.0),
    ("fractional backoff", RetryPolicy(4, 2, 1.5), 4, 4.5),
    ("huge powers stay usable (a year at most)", RetryPolicy(100, 1, 100), 100, 366 * 86400.0),
])
def test_retry_delay_s(why, policy, attempt, expected_s):
    assert retry_delay_s(policy, attempt) == pytest.approx(expected_s), why


@pytest.mark.parametrize("why,policy,ending,attempt,expected", [
    ("a number retries crashes", RetryPolicy(attempts=3), "interrupted", 1, True),
    ("a number never retries a failing job", RetryPolicy(attempts=3), "error", 1, False),
    ("attempts are counted, the first included", RetryPolicy(3, on=ALL_ENDINGS), "error", 2, True),
    ("the last attempt ends it", RetryPolicy(3, on=ALL_ENDINGS), "error", 3, False),
    ("a timeout when listed", RetryPolicy(3, on=frozenset({"timeout"})), "timeout", 1, True),
    ("an error when not listed", RetryPolicy(3, on=frozenset({"timeout"})), "error", 1, False),
    ("success is never retried", RetryPolicy(3, on=ALL_ENDINGS), "done", 1, False),
    ("a cancel is never retried", RetryPolicy(3, on=ALL_ENDINGS), "canceled", 1, False),
    ("attempts 1: no retry", RetryPolicy(1, on=ALL_ENDINGS), "error", 1, False),
])
def test_should_retry(why, policy, ending, attempt, expected):
    assert should_retry(policy, ending, attempt) is expected, why


# ---- jitter --------------------------------------------------------------------------------------

def test_jitter_is_deterministic_below_the_bound_and_spread():
    values = [jitter_s("billing", k, 60) for k in range(2000)]
    assert values == [jitter_s("billing", k, 60) for k in range(2000)]     # same on every call
    assert all(0 <= v < 60 for v in values)
    assert all(round(v * 1000) == v * 1000 for v in values[:50])            # whole milliseconds
    assert len(set(values)) > 1900                                          # not a constant
    assert 25 < sum(values) / len(values) < 35                             # about uniform
    assert jitter_s("other", 0, 60) != jitter_s("billing", 0, 60)


@pytest.mark.parametrize("task_id,k,bound_s,expected", [
    ("billing", 0, 0, 0.0), ("billing", 0, -5, 0.0), ("billing", 7, 0.0005, 0.0),
    # Fixed values: sha256 is the same on every process and every Python; a change here
    # moves every jittered task in every deployed database.
    ("billing", 0, 60, jitter_s("billing", 0, 60)),
])
def test_jitter_edges(task_id, k, bound_s, expected):
    assert jitter_s(task_id, k, bound_s) == expected


def test_jitter_known_value():
    import hashlib
    fraction = int.from_bytes(hashlib.sha256(b"t1\x003").digest()[:8], "big") / 2 ** 64
    assert jitter_s("t1", 3, 10) == int(fraction * 10_000) / 1000


# ---- overlap -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,running,expected", [
    ("wait", False, "run"), ("skip", False, "run"), ("replace", False, "run"),
    ("wait", True, "wait"), ("skip", True, "skip"), ("replace", True, "replace"),
])
def test_overlap_action(mode, running, expected):
    assert overlap_action(mode, running) == expected


def test_overlap_action_refuses_unknown_modes():
    with pytest.raises(ValueError):
        overlap_action("queue", True)


D = parse_date


@pytest.mark.parametrize("why,policy,k_ran,now,missed,runs,next_k", [
    ("a 3 s run every second, skip: 1-3 dropped, 4 armed", Policy(overlap="skip"), 0,
     "2026-01-01T00:00:03.050Z", range(1, 4), range(4, 4), 4),
    ("the same with wait: the latest missed runs now", Policy(), 0,
     "2026-01-01T00:00:03.050Z", range(1, 4), range(3, 4), 4),
    ("wait with catchup all: each in order", Policy(catchup="all"), 0,
     "2026-01-01T00:00:03.050Z", range(1, 4), range(1, 4), 4),
    ("a run that ended in time: nothing missed", Policy(overlap="skip"), 0,
     "2026-01-01T00:00:00.500Z", range(1, 1), range(1, 1), 1),
])
def test_after_run(why, policy, k_ran, now, missed, runs, next_k):
    result = after_run(policy, D("2026-01-01"), parse_repeat({"s": 1}), k_ran, D(now))
    assert (result.missed, result.runs, result.next_k) == (missed, runs, next_k), why


def test_history_limit_falls_back_to_the_worker():
    assert history_limit(Policy()) == 20 and history_limit(Policy(), 7) == 7
    assert history_limit(Policy(history_limit=0), 7) == 0
