"""The commands about tasks: add, tasks, show, history, and cancel, reschedule, pause,
resume, run (a status written for the task's worker to act on, retried on 409)."""

import json

from afterd.cli import UserError, open_couch, report
from afterd.cli.build import build_task, parse_at
from afterd.cli.show import history_row, job_name, policy_rows, print_table
from afterd.config import Settings
from afterd.exits import EXIT_FAILURE, EXIT_OK
from afterd.repeat import repeat_text


def cmd_add(args, settings: Settings) -> int:
    from afterd import clock
    from afterd.couch import Conflict

    doc = build_task(args, clock.now(), settings.min_repeat_s)
    couch = open_couch(settings)
    if "_id" in doc:
        try:
            couch.put(doc)
        except Conflict:
            raise UserError(f"a document with id {doc['_id']!r} already exists", EXIT_FAILURE) from None
        print(doc["_id"])
    else:
        doc_id, _rev = couch.post(doc)
        print(doc_id)
    return EXIT_OK


def cmd_tasks(args, settings: Settings) -> int:
    from afterd.task import TaskError, normalize_status

    selector = {"worker": args.worker} if args.worker else {"worker": {"$exists": True}}
    if args.status:
        try:
            status = normalize_status(args.status)
        except TaskError as e:
            raise UserError(f"--status: {e.problem}") from None
        # Older documents wrote "err" for "error".
        selector["status"] = {"$in": ["error", "err"]} if status == "error" else status
    docs = [d for d in open_couch(settings).find(selector)
            if not str(d.get("_id", "")).startswith(("_design/", "after:"))]
    docs.sort(key=lambda d: (str(d.get("date", "")), str(d.get("_id"))))
    if args.json:
        print(json.dumps(docs, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not docs:
        print("no tasks")
        return EXIT_OK
    rows = [(str(d.get("_id")), str(d.get("worker")), str(d.get("status")), str(d.get("date")),
             job_name(d), repeat_text(d.get("repeat"))) for d in docs]
    print_table(("ID", "WORKER", "STATUS", "DATE", "JOB", "REPEAT"), rows)
    return EXIT_OK


def get_task(couch, task_id: str) -> dict:
    from afterd.couch import NotFound

    try:
        return couch.get(task_id)
    except NotFound:
        raise UserError(f"no task with id {task_id!r} in database {couch_database(couch)}", EXIT_FAILURE) from None


def couch_database(couch) -> str:
    return getattr(couch, "database", "?")


def cmd_show(args, settings: Settings) -> int:
    doc = get_task(open_couch(settings), args.id)
    if args.policies:
        print_table(("POLICY", "VALUE"), policy_rows(doc))
        return EXIT_OK
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_next(args, settings: Settings) -> int:
    """The next runs as the worker will start them (afterd/preview.py replays its rules)."""
    import sys

    from afterd import clock
    from afterd.preview import next_runs
    from afterd.task import TaskError

    if not 1 <= args.count <= 1000:
        raise UserError(f"-n must be from 1 to 1000, not {args.count}")
    doc = get_task(open_couch(settings), args.id)
    try:
        runs, note = next_runs(doc, clock.now(), args.count)
    except (TaskError, ValueError, OverflowError) as e:
        raise UserError(f"task {args.id}: {e}", EXIT_FAILURE) from None
    tz = (doc.get("repeat") or {}).get("tz") if isinstance(doc.get("repeat"), dict) else None
    for start in runs:
        print(run_line(start, tz))
    if note:
        print(note, file=sys.stderr)
    return EXIT_OK


def run_line(start, tz) -> str:
    """'2026-12-07T03:00:00Z  Mon 2026-12-07 03:00:00 WET': the date the worker writes, then
    the wall-clock time in the repeat's zone (UTC without one)."""
    from zoneinfo import ZoneInfo

    from afterd.task import format_date

    local = start.astimezone(ZoneInfo(tz)) if tz else start
    return f"{format_date(start)}  {local:%a %Y-%m-%d %H:%M:%S} {local.tzname()}"


def cmd_history(args, settings: Settings) -> int:
    couch = open_couch(settings)
    doc = get_task(couch, args.id)
    history = doc.get("history")
    if args.json:
        print(json.dumps(history if isinstance(history, list) else [], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not isinstance(history, list) or not history:
        print(f"no runs recorded for task {args.id} yet")
        return EXIT_OK
    print_table(("OCCURRENCE", "ATTEMPT", "START", "DURATION", "STATUS", "OUTCOME", "PROCESS"),
                [history_row(entry) for entry in history])
    if args.output:
        print_outputs(couch, args.id, history)
    return EXIT_OK


def print_outputs(couch, task_id: str, history: list) -> None:
    """Each run's kept output (an attachment of the task, afterd/outputs.py) under a header."""
    from afterd.couch import NotFound
    from afterd.outputs import read_output

    for entry in history:
        if not isinstance(entry, dict) or not entry.get("output_ref"):
            continue
        try:
            text = read_output(couch, task_id, entry)
        except NotFound:
            continue   # dropped since the document was read: the run left the history
        print(f"\n--- output of the run started {entry.get('start', '-')} ({entry.get('status', '?')}) ---")
        print(text.rstrip("\n"))


CONFLICT_RETRIES = 5   # a worker may write the task between our read and our write


def update_task(couch, task_id: str, change) -> tuple[dict, str]:
    """Apply change(doc) -> (new doc or None, message) with the current rev, retrying on 409."""
    from afterd.couch import Conflict

    for _ in range(CONFLICT_RETRIES):
        doc = get_task(couch, task_id)
        new_doc, message = change(doc)
        if new_doc is None:
            return doc, message
        try:
            couch.put(new_doc)
            return new_doc, message
        except Conflict:
            continue
    raise UserError(f"task {task_id!r} kept changing under us; try again", EXIT_FAILURE)


def status_of(doc: dict) -> str:
    """The task's status as the worker reads it ("err" is "error"); as written if unknown."""
    from afterd.task import TaskError, normalize_status

    try:
        return normalize_status(doc.get("status"))
    except TaskError:
        return str(doc.get("status"))


def cmd_cancel(args, settings: Settings) -> int:
    from afterd.task import FINAL

    outcome = {}

    def cancel(doc):
        status = status_of(doc)
        if status in ("cancel", "canceled"):
            outcome["code"] = EXIT_OK
            already = "canceled" if status == "canceled" else "waiting for its worker to cancel it"
            return None, f"task {args.id} is already {already}"
        if status in FINAL:
            outcome["code"] = EXIT_FAILURE
            return None, f"task {args.id} is already {status} (final): nothing to cancel"
        outcome["code"] = EXIT_OK
        return {**doc, "status": "cancel"}, f"task {args.id} ({status}) marked cancel: its worker will stop it"

    _doc, message = update_task(open_couch(settings), args.id, cancel)
    return report(message, outcome["code"])


def cmd_reschedule(args, settings: Settings) -> int:
    from afterd.task import FINAL, format_date

    new_date = format_date(parse_at(args.date, None))
    outcome = {}

    def reschedule(doc):
        status = status_of(doc)
        if status in FINAL:
            outcome["code"] = EXIT_FAILURE
            return None, (f"task {args.id} is {status} (final): add a new task instead "
                          "(`after add`)")
        outcome["code"] = EXIT_OK
        # A task no worker has taken yet stays "waiting"; a taken one tells its worker to re-arm.
        new_status = "waiting" if status == "waiting" else "reschedule"
        return {**doc, "date": new_date, "status": new_status}, f"task {args.id} moved to {new_date} ({new_status})"

    _doc, message = update_task(open_couch(settings), args.id, reschedule)
    return report(message, outcome["code"])


# ---- pause, resume, run: a command status the worker acts on ----------------------------------

def set_command_status(args, settings: Settings, command: str) -> int:
    """Write `command` ("pause", "resume" or "run") as the task's status, retrying on 409
    like cancel; refuse it where the worker could do nothing with it."""
    outcome = {}

    def change(doc):
        status = status_of(doc)
        verdict = command_verdict(command, status)
        outcome["code"] = EXIT_OK if verdict is None or verdict.startswith("already") else EXIT_FAILURE
        if verdict is not None:
            return None, f"task {args.id} is {verdict}"
        return {**doc, "status": command}, f"task {args.id} ({status}) marked {command}: {COMMAND_EFFECT[command]}"

    _doc, message = update_task(open_couch(settings), args.id, change)
    return report(message, outcome["code"])


COMMAND_EFFECT = {"pause": "its worker will stop arming it (a run already going finishes)",
                  "resume": "its worker will arm it again",
                  "run": "its worker will run it now, once"}


def command_verdict(command: str, status: str) -> str | None:
    """None when `command` may be written over `status`; else why not ("already ..." is
    not an error)."""
    from afterd.task import FINAL

    if status in FINAL:
        return f"{status} (final): nothing to {command}" + (" (add a new task: after add)" if command == "run" else "")
    if status in ("cancel",):
        return f"being canceled: nothing to {command}"
    if command == "pause" and status in ("pause", "paused"):
        return "already paused" if status == "paused" else "already waiting for its worker to pause it"
    if command == "resume":
        if status == "resume":
            return "already waiting for its worker to resume it"
        if status not in ("pause", "paused"):
            return f"{status}, not paused: nothing to resume"
    if command == "run":
        if status == "run":
            return "already waiting for its worker to run it"
        if status in ("pause", "paused"):
            return f"{status}: resume it first (after resume ID)"
    return None


def cmd_pause(args, settings: Settings) -> int:
    return set_command_status(args, settings, "pause")


def cmd_resume(args, settings: Settings) -> int:
    return set_command_status(args, settings, "resume")


def cmd_run(args, settings: Settings) -> int:
    return set_command_status(args, settings, "run")
