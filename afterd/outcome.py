"""The task document after a run (pure: no I/O; `now` is passed in).

A run ends as an Outcome (from the runner, from a child's journal record, or made up
for a run whose fate is unknown). `outcome_fields` turns it into the fields to write:
the outcome (`result` or `error`), the counters, `last_run` for a repeat, and the next
occurrence of a repeat, or the final status. `apply_outcome` puts those fields onto
the document as it is when they are written (a user may have changed it meanwhile).
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from afterd import chains, history, outputs, policy
from afterd.catchup import catch_up
from afterd.metrics import outcome_kind
from afterd.repeat import occurrence
from afterd.task import TaskError, format_date, parse_date, parse_task

# Fields an outcome may take out of the document: the run marker, the extra-run request,
# and the outcome of the other kind (a success has no `error`, a failure no `result`).
REMOVE = "_remove"
# The follow-up a run asks for (`on_done` / `on_error`): {"ending", "result" | "error"}.
# Like REMOVE, a note for the worker, never written.
CHAIN = "_chain"


@dataclass
class Outcome:
    run_id: str
    ok: bool
    result: object
    error: dict | None
    started_at_s: float | None    # epoch s; None: not known to have started
    finished_at_s: float          # epoch s
    queued_ms: float
    output: str | None = None     # the last bytes the run wrote (stdout and stderr); None: nothing


def interrupted(run_id: str | None, how: str, now: datetime) -> Outcome:
    """The outcome of a run whose fate is unknown (its process died): never run again."""
    error = {"type": "Interrupted", "run": run_id, "traceback": None,
             "message": f"interrupted: {how}; its outcome is unknown, so it is not run again "
                        f"(set \"retry\" to allow that)"}
    return Outcome(run_id=run_id or "", ok=False, result=None, error=error, started_at_s=None,
                   finished_at_s=now.timestamp(), queued_ms=0.0)


def from_journal(run_id: str, result: dict, now_s: float) -> Outcome:
    """The outcome a child recorded in the journal before its worker heard of it."""
    return Outcome(run_id=run_id, ok=bool(result.get("ok")), result=result.get("result"),
                   error=result.get("error"), started_at_s=result.get("started_at_s"),
                   finished_at_s=result.get("finished_at_s") or now_s,
                   queued_ms=result.get("queued_ms") or 0.0)


def outcome_fields(doc: dict, outcome: Outcome, *, now: datetime, canceled: bool = False,
                   process: str | None = None,
                   history_limit: int = policy.DEFAULT_HISTORY_LIMIT,
                   output_limit: int = history.OUTPUT_TAIL_BYTES) -> tuple[dict, str | None]:
    """(the fields to write after this run, a warning or None).

    A failed attempt that the task's `retry` policy retries goes back to `scheduled`,
    due after the policy's delay, with `attempts` counting it. Else a repeat goes back
    to `scheduled` (next_after_run: its `overlap` and `catchup` say which occurrence),
    unless the chain ended; an extra run (`run_now`) keeps the chain's date and
    occurrence; anything else gets its final status. Every run is added to `history`
    (the last `history_limit`, or the task's own), with `output_ref` naming the
    attachment that keeps the last `output_limit` bytes of its output (outputs.py).
    A repeat with `overlap: "replace"` whose run was canceled without a user's cancel
    was replaced by its next occurrence (replace_due): "replaced" in its history, and
    the chain goes on. The warning says why a repeat could not be planned (it then ends).
    """
    started = format_date(utc(outcome.started_at_s)) if outcome.started_at_s else None
    finished = format_date(utc(outcome.finished_at_s))
    repeats = doc.get("repeat") is not None
    task_policy = policy_of(doc)
    error = outcome.error
    replaced = (not canceled and (error or {}).get("type") == "Canceled" and repeats
                and task_policy.overlap == "replace")
    if replaced:
        error = {"type": "Replaced", "traceback": None,
                 "message": "canceled: its next occurrence came due while it ran (overlap replace)"}
    status = "done" if outcome.ok else "error"
    if canceled or (error or {}).get("type") == "Canceled":
        status = "canceled"
    queued_ms = round(outcome.queued_ms, 3)
    # A run now (`run_now`: when it was asked for) is due then, not at the chain's next date.
    run_now = doc.get("run_now") if isinstance(doc.get("run_now"), str) else None
    due = run_now or doc.get("date")
    run_record = {"date": due, "status": "replaced" if replaced else status, "started_at": started,
                  "finished_at": finished, "queued_ms": queued_ms}
    if outcome.ok:
        run_record["result"] = outcome.result
    else:
        run_record["error"] = error
    runs = int(doc.get("runs", 0) or 0) + 1
    update = {"runs": runs, "started_at": started,
              "finished_at": finished, "queued_ms": queued_ms, "attempts": 0}
    attempt = int(doc.get("attempts", 0) or 0) + 1
    ending = "replaced" if replaced else outcome_kind(outcome.ok, (error or {}).get("type"), canceled)
    kept = outputs.note(runs, history.tail(outcome.output, output_limit)
                        if getattr(outcome, "output", None) and output_limit > 0 else None)
    update["history"] = history.push_history(doc.get("history"), history.history_entry(
        occurrence=due_date(due), run_now=run_now is not None, attempt=attempt,
        started_at=utc(outcome.started_at_s) if outcome.started_at_s else None,
        finished_at=utc(outcome.finished_at_s), status=ending, result=outcome.result, error=error,
        process=process, output_ref=kept["name"] if kept else None),
        policy.history_limit(task_policy, history_limit))
    if kept and any(e.get("output_ref") == kept["name"] for e in update["history"]):
        update[outputs.NOTE] = kept
    if ending == "done":
        update[CHAIN] = {"ending": "done", "result": outcome.result}
    elif ending not in ("canceled", "replaced") and not policy.should_retry(task_policy.retry, ending, attempt):
        update[CHAIN] = {"ending": "error", "error": error}   # a failure, once no retry is left
    if ending != "canceled" and policy.should_retry(task_policy.retry, ending, attempt):
        delay_s = policy.retry_delay_s(task_policy.retry, attempt + 1)
        update.update({"status": "scheduled", "attempts": attempt, "error": error,
                       "date": format_date(utc(max(now.timestamp(), outcome.finished_at_s) + delay_s)),
                       REMOVE: ["running", "run_now", "result"]})
        return update, None
    if "run_now" in doc and repeats and status != "canceled":
        update.update({"status": "scheduled", "last_run": run_record, REMOVE: ["running", "run_now"]})
        return update, None
    warning = next_k = next_date = None
    if status != "canceled" and repeats:
        try:
            next_k, next_date = next_after_run(doc, now, replaced=replaced,
                                               started=utc(outcome.started_at_s) if outcome.started_at_s else None)
        except (TaskError, ValueError, OverflowError) as e:
            warning = f"cannot plan its next run: {e}"
    if next_date is not None:
        update.update({"status": "scheduled", "date": format_date(next_date), "occurrence": next_k,
                       "last_run": run_record})
    else:
        update["status"] = status
        if repeats:
            update["last_run"] = run_record
        if outcome.ok:
            update["result"] = outcome.result
        else:
            update["error"] = error
    update[REMOVE] = ["running", "run_now"] + (["error"] if outcome.ok else ["result"])
    return update, warning


def next_after_run(doc: dict, now: datetime, replaced: bool = False,
                   started: datetime | None = None) -> tuple[int | None, datetime | None]:
    """(index, date) of the occurrence a repeat arms when the run of its occurrence
    `occurrence`, begun at `started`, ends at `now`; (None, None) when the chain ended.
    Occurrences due before the run began collapsed into it (after downtime: one run,
    then the first future occurrence). By `overlap`:

    wait (default): the occurrences that came due during the run follow `catchup`:
        "one" runs the latest of them at once, "all" each in order (the oldest now,
        and those missed before the run too, as always), "none" none of them
        (`catchup_window` drops older ones);
    skip: they are dropped; the first occurrence after `now`;
    replace: the run was cut by its next occurrence (`replaced`): the latest due
        occurrence starts at once (like "one"); a run that ended in time: as wait.
    An occurrence armed in the past starts at once; a new one gets its jitter.
    Raises TaskError / ValueError when the repeat cannot be planned.
    """
    task = parse_task(doc)
    task_policy = task.policy
    anchor = parse_date(doc.get("anchor") or doc["date"])
    k_ran = int(doc.get("occurrence", 0) or 0)
    if replaced:
        task_policy = replace(task_policy, catchup="one", overlap="wait")   # keeps its jitter
    cu = policy.after_run(task_policy, anchor, task.repeat, k_ran, now, started)
    if cu.runs:
        return cu.runs[0], occurrence(anchor, task.repeat, cu.runs[0])
    if cu.next_date is None:
        return None, None
    return cu.next_k, jittered(cu.next_date, doc.get("_id", ""), cu.next_k, task_policy)


def replace_due(doc: dict, now: datetime) -> datetime | None:
    """When the run going on now must be canceled for the next occurrence: a repeat with
    `overlap: "replace"` whose next occurrence is due at that date (the run of occurrence
    `occurrence`, or an extra run (`run_now`), whose next is the chain's `date`); None
    for every other task, or when the chain ends with this run."""
    if doc.get("repeat") is None or doc.get("overlap") != "replace":
        return None
    try:
        task = parse_task(doc)
        if "run_now" in doc:
            return task.date
        anchor = parse_date(doc.get("anchor") or doc["date"])
        k = int(doc.get("occurrence", 0) or 0) + 1
        date = occurrence(anchor, task.repeat, k)
    except (TaskError, ValueError, OverflowError):
        return None
    return jittered(date, doc.get("_id", ""), k, task.policy) if date is not None else None


def due_date(value) -> datetime | None:
    """The date a run was due, for its history entry; None when unreadable."""
    try:
        return parse_date(value) if isinstance(value, str) else None
    except TaskError:
        return None


def apply_outcome(base: dict, fields: dict, owner_field: dict) -> dict:
    """The document to write: `fields` over `base` (the current version), owned by us.

    A user's `cancel` written during the run (or carried out by another process) makes
    it `canceled`; a `pause` makes a
    repeat that would go on `paused` (the run finished; the chain waits); a `run` (run
    now) makes a repeat that goes on run once more at once (`run_now`); a `reschedule`
    makes the user's date the next one (a new anchor for a repeat, a new run for a
    one-time task), whatever the run planned.
    """
    update = dict(fields)
    remove = update.pop(REMOVE, [])
    update.pop(CHAIN, None)
    output = update.pop(outputs.NOTE, None)
    doc = {k: v for k, v in base.items() if k not in remove}
    doc.update(update)
    if "history" in update:
        # The run's output inline, the outputs of runs no longer in `history` left out.
        attachments = outputs.attachments_after(base.get("_attachments"), doc["history"], output)
        if attachments:
            doc["_attachments"] = attachments
        else:
            doc.pop("_attachments", None)
    if base.get("status") in ("cancel", "canceled"):
        # Canceled meanwhile (on a cluster another process may have carried out the cancel
        # while our run's outcome was on its way): the run is recorded, the task stays ended.
        doc["status"] = "canceled"
    elif base.get("status") in ("pause", "paused") and doc.get("status") == "scheduled":
        doc["status"] = "paused"
    elif base.get("status") == "run" and doc.get("status") == "scheduled" and "run_now" not in doc:
        # Run now, asked during the run: the extra run is due when this one ended (its id
        # derives from that date, so it runs once), then the chain goes on.
        doc["run_now"] = doc.get("finished_at")
    elif base.get("status") == "reschedule":
        # What a claim of a `reschedule` writes (actions.py `_claim`, reset_anchor), on the
        # user's date: the run that just ended does not undo a move written during it.
        date = base.get("date")
        try:
            date = format_date(parse_date(date))
        except TaskError:
            pass   # validation let it in as written; parse_task refuses it at arming, saying why
        doc.update(status="scheduled", date=date, anchor=date, occurrence=0, attempts=0)
        doc.pop("run_now", None)
        if isinstance(doc.get("repeat"), dict) and doc["repeat"].get("cron") is not None:
            try:   # a cron repeat's first run is when its expression matches, as at a claim
                first = first_date(parse_task(doc))
            except (TaskError, ValueError, OverflowError):
                first = None
            if first is not None:
                doc["date"] = format_date(first)
    doc["owner"] = owner_field
    return doc


def follow_up(doc: dict, fields: dict, run_id: str, now: datetime) -> dict | None:
    """The task a run's `on_done` / `on_error` template asks for, or None. Its id derives
    from the run (chains.follow_up_id), so writing it again (a replay, a retry of the
    write) is a 409, never a second task."""
    chain = fields.get(CHAIN)
    if not chain:
        return None
    task_policy = policy_of(doc)
    template = task_policy.on_done if chain["ending"] == "done" else task_policy.on_error
    if template is None:
        return None
    parent = {**doc, "result": chain.get("result"), "error": chain.get("error")}
    return chains.follow_up_doc(parent, template, run_id, chain["ending"], now)


def missed_fields(doc: dict, now: datetime, grace_s: float = 1.0) -> dict | None:
    """At arming: the fields that move a repeat past occurrences it must not run (its
    `catchup` is "none", or they are older than `catchup_window`), or None to run its
    date as it is. `grace_s`: an occurrence due that recently is on time, not missed."""
    if doc.get("repeat") is None or "run_now" in doc:
        return None
    try:
        task = parse_task(doc)
        task_policy = task.policy
        if task_policy.catchup != "none" and task_policy.catchup_window_s is None:
            return None
        if task.date > now - timedelta(seconds=grace_s):
            return None
        anchor = parse_date(doc.get("anchor") or doc["date"])
        k = int(doc.get("occurrence", 0) or 0)
        cu = catch_up(anchor, task.repeat, k, now, task_policy.catchup, task_policy.catchup_window_s, grace_s)
    except (TaskError, ValueError, OverflowError):
        return None
    if cu.runs:
        if cu.runs[0] == k:
            return None
        k_next, date = cu.runs[0], occurrence(anchor, task.repeat, cu.runs[0])
    elif cu.next_date is not None:
        k_next, date = cu.next_k, jittered(cu.next_date, doc.get("_id", ""), cu.next_k, task_policy)
    else:
        return {"status": "done"}   # the chain ended while nobody ran it: nothing is left to run
    return {"date": format_date(date), "occurrence": k_next}


def skipped_note(doc: dict, skip: dict, now: datetime) -> dict | None:
    """What a skip (missed_fields' answer) leaves in the document, for `after explain` and
    the console: how many occurrences were not run, the first, when that was decided and
    why (the worker records nothing else of them). None when nothing was skipped."""
    if "occurrence" not in skip:
        return None
    k = int(doc.get("occurrence", 0) or 0)
    why = "catchup none" if policy_of(doc).catchup == "none" else "older than catchup_window"
    return {"count": skip["occurrence"] - k, "first": doc.get("date"), "at": format_date(now), "why": why}


def first_date(task) -> datetime | None:
    """When the first run of a task dated `task.date` is due: that date, or for a cron
    repeat the first time at or after it that the expression matches (None: until or
    count end the chain before it), with occurrence 0's jitter. The anchor keeps the date."""
    date = task.date
    if task.repeat is not None and task.repeat.cron is not None:
        date = occurrence(task.date, task.repeat, 0)
        if date is None:
            return None
    return jittered(date, task.id or "", 0, task.policy)


def jittered(date: datetime, task_id: str, k: int, task_policy: policy.Policy) -> datetime:
    """Occurrence k's date with the task's jitter: the same delay on every process."""
    delay_s = policy.jitter_s(task_id, k, task_policy.jitter_s)
    return date + timedelta(seconds=delay_s) if delay_s else date


def policy_of(doc: dict) -> policy.Policy:
    """The task's policies; the defaults when they cannot be read (validation let it in)."""
    try:
        return policy.parse_policy(doc)
    except (TaskError, ValueError, TypeError):
        return policy.DEFAULT_POLICY


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)
