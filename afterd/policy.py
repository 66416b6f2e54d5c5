"""Schedule policies of a task (design §3, Policies): parse them, and the small pure rules
the decision core applies (retries, jitter, overlap). No clock, no I/O.

Every field is optional and its default is the behaviour after had before policies:
a `retry` number retries only runs cut by a crash, missed occurrences collapse into one
run, a run still going makes the next occurrence wait, no jitter, 20 history entries,
no follow-up tasks. The JS validator (design/validate_doc_update.js) applies the same
rules; tests/doc_cases.py holds the two equal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from afterd.chains import Template, parse_template
from afterd.fields import TaskError, is_integer, is_number
from afterd.catchup import CATCHUP_MODES, CatchUp, catch_up, first_at_or_after
from afterd.repeat import Repeat, duration_s, plan

RETRY_ENDINGS = ("error", "timeout", "interrupted")
RETRY_KEYS = ("attempts", "delay", "backoff", "max_delay", "on")
OVERLAP_MODES = ("wait", "skip", "replace")
POLICY_FIELDS = ("retry", "catchup", "catchup_window", "overlap", "jitter", "history_limit",
                 "on_done", "on_error")
# Bounds that keep a document small and a schedule sane; more is a mistake, not a plan.
MAX_ATTEMPTS = 100
MAX_BACKOFF = 100
MAX_HISTORY_LIMIT = 1000
DEFAULT_HISTORY_LIMIT = 20   # the worker's setting when a task gives none


@dataclass(frozen=True)
class RetryPolicy:
    """How many runs one occurrence gets, the first included, and the waits between them."""
    attempts: int = 1                        # 1: no retry
    delay_s: float = 0.0                     # before the 2nd attempt
    backoff: float = 1.0                     # each later delay is this many times the one before
    max_delay_s: float | None = None         # no delay is longer
    on: frozenset = frozenset({"interrupted"})   # endings that are retried


@dataclass(frozen=True)
class Policy:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    catchup: str = "one"                     # one | all | none (repeat.catch_up)
    catchup_window_s: float | None = None    # missed occurrences older than this: skipped
    overlap: str = "wait"                    # wait | skip | replace (overlap_action)
    jitter_s: float = 0.0                    # bound of each occurrence's delay (jitter_s())
    history_limit: int | None = None         # None: the worker's setting (default 20)
    on_done: Template | None = None
    on_error: Template | None = None


DEFAULT_POLICY = Policy()


# ---- parsing ---------------------------------------------------------------------------------

def parse_retry(value) -> RetryPolicy:
    """A number N: N more runs after a run cut by a crash (the meaning `retry` always had).
    An object: {"attempts", "delay", "backoff", "max_delay", "on"}, attempts required."""
    if not isinstance(value, dict):
        if not is_integer(value) or value < 0:
            raise TaskError("retry", f"{value!r} is not a whole number of retries (0 or more) "
                                     'or an object like {"attempts": 3, "delay": "30s", "backoff": 2}')
        if value + 1 > MAX_ATTEMPTS:
            raise TaskError("retry", f"{value!r}: at most {MAX_ATTEMPTS - 1} retries")
        return RetryPolicy(attempts=int(value) + 1)
    unknown = sorted(k for k in value if k not in RETRY_KEYS)
    if unknown:
        raise TaskError("retry", f"unknown key {unknown[0]!r}; use {', '.join(RETRY_KEYS)}")
    attempts = value.get("attempts")
    if attempts is None:
        raise TaskError("retry.attempts", "missing: how many runs in all, the first included (e.g. 3)")
    if not is_integer(attempts) or not 1 <= attempts <= MAX_ATTEMPTS:
        raise TaskError("retry.attempts", f"{attempts!r} is not a whole number from 1 to {MAX_ATTEMPTS}")
    delay = value.get("delay")
    delay_s = duration_s(delay, "retry.delay") if delay is not None else 0.0
    backoff = value.get("backoff")
    if backoff is not None and (not is_number(backoff) or not 1 <= backoff <= MAX_BACKOFF):
        raise TaskError("retry.backoff", f"{backoff!r} is not a factor from 1 to {MAX_BACKOFF} "
                                         "(2 doubles each delay)")
    max_delay = value.get("max_delay")
    max_delay_s = duration_s(max_delay, "retry.max_delay") if max_delay is not None else None
    on = value.get("on")
    if on is None:
        on = list(RETRY_ENDINGS)
    if not isinstance(on, list) or not on or any(e not in RETRY_ENDINGS for e in on):
        raise TaskError("retry.on", f"{on!r} is not a list of endings to retry, from "
                                    f"{', '.join(RETRY_ENDINGS)}")
    return RetryPolicy(attempts=int(attempts), delay_s=delay_s,
                       backoff=float(backoff) if backoff is not None else 1.0,
                       max_delay_s=max_delay_s, on=frozenset(on))


def parse_choice(doc: dict, name: str, choices: tuple, default: str) -> str:
    value = doc.get(name)
    if value is None:
        return default
    if value not in choices:
        raise TaskError(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def parse_policy(doc: dict) -> Policy:
    """The task's policies; TaskError naming the first bad field."""
    if not any(name in doc for name in POLICY_FIELDS):
        return DEFAULT_POLICY       # most tasks: no work on the worker's hot path
    if "retry" in doc:     # null is refused: the field always meant a number
        retry = parse_retry(doc["retry"])
    else:
        retry = RetryPolicy()
    catchup = parse_choice(doc, "catchup", CATCHUP_MODES, "one")
    window = doc.get("catchup_window")
    window_s = duration_s(window, "catchup_window") if window is not None else None
    overlap = parse_choice(doc, "overlap", OVERLAP_MODES, "wait")
    jitter = doc.get("jitter")
    jitter_s = duration_s(jitter, "jitter") if jitter is not None else 0.0
    limit = doc.get("history_limit")
    if limit is not None and (not is_integer(limit) or not 0 <= limit <= MAX_HISTORY_LIMIT):
        raise TaskError("history_limit", f"{limit!r} is not a whole number of runs from 0 to "
                                         f"{MAX_HISTORY_LIMIT}")
    templates = {name: parse_template(doc[name], name) if doc.get(name) is not None else None
                 for name in ("on_done", "on_error")}
    policy = Policy(retry=retry, catchup=catchup, catchup_window_s=window_s, overlap=overlap,
                    jitter_s=jitter_s, history_limit=int(limit) if limit is not None else None,
                    **templates)
    return DEFAULT_POLICY if policy == DEFAULT_POLICY else policy


# ---- the rules -------------------------------------------------------------------------------

def retry_delay_s(policy: RetryPolicy, attempt: int) -> float:
    """The wait before attempt `attempt` (1 is the first run: no wait). Attempt 2 waits
    delay_s, each later one `backoff` times more, never more than max_delay_s."""
    if attempt <= 1:
        return 0.0
    try:
        delay = policy.delay_s * policy.backoff ** (attempt - 2)
    except OverflowError:
        delay = float("inf")
    if policy.max_delay_s is not None:
        delay = min(delay, policy.max_delay_s)
    return min(delay, MAX_DELAY_S)


# No wait beyond this even without max_delay: backoff**99 must still give a usable date.
MAX_DELAY_S = 366 * 86400.0


def should_retry(policy: RetryPolicy, ending: str, attempt: int) -> bool:
    """Whether attempt `attempt` (1-based) that ended with `ending` ("done", "error",
    "timeout", "interrupted", "canceled") gets another one."""
    return ending in policy.on and attempt < policy.attempts


def jitter_s(task_id: str, occurrence_index: int, bound_s: float) -> float:
    """The delay added to occurrence `occurrence_index` of task `task_id`: in [0, bound_s),
    whole milliseconds, the same on every process and every restart (a hash, not a draw)."""
    if bound_s <= 0:
        return 0.0
    digest = hashlib.sha256(f"{task_id}\0{occurrence_index}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2 ** 64           # [0, 1)
    bound_ms = int(bound_s * 1000)
    return min(int(fraction * bound_s * 1000), max(bound_ms - 1, 0)) / 1000


def overlap_action(mode: str, running: bool) -> str:
    """What to do when an occurrence comes due: "run" when nothing of the task is running,
    else the task's overlap mode: "wait" (start it when the run ends, then catch up),
    "skip" (drop the occurrences that came due during the run: after it, arm
    repeat.plan(anchor, rep, k_ran, now)), "replace" (cancel the run, start this one)."""
    if mode not in OVERLAP_MODES:
        raise ValueError(f"overlap mode {mode!r} is not one of {', '.join(OVERLAP_MODES)}")
    return mode if running else "run"


def after_run(policy: Policy, anchor: datetime, rep: Repeat, k_ran: int, now: datetime,
              started: datetime | None = None) -> CatchUp:
    """What follows the end of occurrence `k_ran`'s run at `now` for a repeating task;
    `started`: when the run began (None: at occurrence k_ran's date).

    overlap "skip": the occurrences that came due during the run are dropped (they are
    CatchUp.missed, none runs) and the first after now is armed: plan()'s answer.
    Otherwise ("wait", and "replace", whose run was not replaced): the catch-up policy,
    with no grace (catch_up's grace is for a timer firing late, not for a run):
    "all" runs every occurrence since k_ran, oldest first; "one" runs the latest of
    those that came due after the run began (those due before it began collapsed into
    it: after downtime, one run for all, then the first future one); "none" none.
    """
    if policy.overlap == "skip":
        next_k, next_date = plan(anchor, rep, k_ran, now)
        stop = next_k if next_k is not None else k_ran + 1
        missed = range(k_ran + 1, max(k_ran + 1, stop))
        return CatchUp(missed, range(missed.stop, missed.stop), next_k, next_date)
    first = k_ran + 1
    if policy.catchup != "all" and started is not None:
        first = max(first, first_at_or_after(anchor, rep, k_ran + 1, started))
    return catch_up(anchor, rep, first, now, policy.catchup, policy.catchup_window_s, grace_s=0.0)


def history_limit(policy: Policy, worker_default: int = DEFAULT_HISTORY_LIMIT) -> int:
    return worker_default if policy.history_limit is None else policy.history_limit
