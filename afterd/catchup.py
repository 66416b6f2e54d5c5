"""Catch-up (pure): which occurrences of a repeat, missed while no worker ran it or while
it was paused, run now: one for all of them, every one in order, or none; and a window
beyond which missed occurrences are skipped (design §3, the `catchup` policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from afterd.repeat import Repeat, cron_first_after, occurrence, offset_first_after, rrule_after_anchor

CATCHUP_MODES = ("one", "all", "none")


@dataclass(frozen=True)
class CatchUp:
    """What to do with the occurrences that came due while nobody ran them.

    missed: the due occurrences not run yet (indices, oldest first; date <= now).
    runs:   those to run now, in this order (a sub-range of `missed`; empty: none).
            Run the first, then ask again with planned_k = runs[0] + 1 ("all") or
            planned_k = next_k ("one", "none"): the answer never depends on history.
    next_k, next_date: the first occurrence after now, to arm once `runs` are done;
            (None, None) when until/count ended the chain.
    """
    missed: range
    runs: range
    next_k: int | None
    next_date: datetime | None


def first_at_or_after(anchor: datetime, rep: Repeat, k_from: int, t: datetime) -> int:
    """The smallest k >= k_from whose date is after `t`, ignoring `until` (and, for offset
    chains, `count`); past the end of a finite rule, one past its last occurrence."""
    if rep.cron:
        return cron_first_after(anchor, rep, k_from - 1, t)
    if not rep.rrule:
        return offset_first_after(anchor, rep, k_from - 1, t)
    if k_from <= 0 and anchor > t:
        return 0
    k = 0
    for k, date in enumerate(rrule_after_anchor(anchor, rep), start=1):
        if (rep.count is not None and k >= rep.count) or (k >= k_from and date > t):
            return k
    return max(k + 1, k_from)


def chain_end(anchor: datetime, rep: Repeat, k_from: int) -> int | None:
    """One past the last occurrence that until/count allow; None for an endless chain."""
    ends = []
    if rep.count is not None:
        ends.append(rep.count)
    if rep.until is not None:
        ends.append(first_at_or_after(anchor, rep, k_from, rep.until))
    return min(ends) if ends else None


def catch_up(anchor: datetime, rep: Repeat, planned_k: int, now: datetime, mode: str = "one",
             window_s: float | None = None, grace_s: float = 1.0) -> CatchUp:
    """The catch-up policy (design §3) for a chain whose occurrence `planned_k` is the
    first not yet run.

    one:  the missed occurrences collapse into one run, the latest (today's rule; next_k
          and next_date are what plan() answers);
    all:  each missed occurrence runs, oldest first;
    none: none runs, except the latest if it came due less than `grace_s` ago (a timer
          that fires a little late is on time, not catching up). On `resume` pass
          grace_s=0: whatever is due came due while paused.
    window_s: in every mode, missed occurrences older than now - window_s are skipped.
    """
    if mode not in CATCHUP_MODES:
        raise ValueError(f"catch-up mode {mode!r} is not one of {', '.join(CATCHUP_MODES)}")
    after_now = first_at_or_after(anchor, rep, planned_k, now)
    end = chain_end(anchor, rep, planned_k)
    stop = after_now if end is None else min(after_now, end)
    missed = range(planned_k, max(planned_k, stop))
    next_date = occurrence(anchor, rep, after_now) if end is None or after_now < end else None
    next_k = after_now if next_date is not None else None
    nothing = range(missed.stop, missed.stop)
    if not missed:
        return CatchUp(missed, nothing, next_k, next_date)
    first = missed.start
    if window_s is not None:
        oldest_kept = now - timedelta(seconds=window_s, microseconds=1)
        first = min(max(first_at_or_after(anchor, rep, planned_k, oldest_kept), first), missed.stop)
    latest = missed.stop - 1
    if first > latest:
        runs = nothing
    elif mode == "all":
        runs = range(first, missed.stop)
    elif mode == "one" or occurrence(anchor, rep, latest) >= now - timedelta(seconds=grace_s):
        runs = range(latest, missed.stop)
    else:
        runs = nothing
    return CatchUp(missed, runs, next_k, next_date)


