"""The `after` command (design §6): run and manage workers, and handle tasks without hand-written JSON.

Every error ends the command with one line on stderr and a named exit code, never a
traceback, never a password.
"""

import argparse
import ast
import json
import re
import sys
from datetime import datetime, timedelta, timezone

from afterd import __version__
from afterd import daemon
from afterd.config import ConfigError, Settings, load_settings, mask_url
from afterd.exits import (EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_NOPERM, EXIT_OK,
                          EXIT_UNAVAILABLE, EXIT_USAGE)
from afterd.repeat import DURATION_HELP, DURATION_UNITS

PROG = "after"


class UserError(Exception):
    """Bad input from the command line: one line, exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ---- durations: the compact repeat syntax (the grammar lives in afterd/repeat.py) ---------------

def parse_duration(text: str, flag: str = "duration") -> dict[str, int]:
    """'1M7d' -> {'months': 1, 'days': 7}: the long keys of a task's `repeat` (design §3)."""
    from afterd.repeat import parse_duration as parse
    from afterd.task import TaskError

    try:
        return parse(text, flag)
    except TaskError as e:
        raise UserError(str(e)) from None


def duration_delta(offset: dict[str, int]):
    from dateutil.relativedelta import relativedelta

    fields = dict(offset)
    ms = fields.pop("milliseconds", 0)
    return relativedelta(**fields, microseconds=ms * 1000)


# ---- dates -----------------------------------------------------------------------------------

DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")

def parse_at(text: str, tz_name: str | None) -> datetime:
    """A date from the command line: ISO 8601, a space allowed for T; no offset means UTC,
    or wall-clock time in tz_name when given."""
    from afterd.task import TaskError, parse_date

    iso = text.strip().replace(" ", "T", 1)
    try:
        parsed = parse_date(iso, "--at")
    except TaskError as e:
        raise UserError(str(e)) from None
    has_offset = "T" in iso and bool(re.search(r"(Z|[+-]\d{2}:\d{2})$", iso))
    if tz_name and not has_offset:
        naive = parsed.replace(tzinfo=None)
        return naive.replace(tzinfo=zone(tz_name)).astimezone(timezone.utc)
    return parsed


def zone(tz_name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"--tz {tz_name!r} is not an IANA time zone name (like Europe/Lisbon)") from None


def parse_argument(kind: str, text: str):
    """An --arg value is text, as typed ("1234", "00123" and "1e5" stay strings: a value
    typed on a command line is text); an --arg-json value is JSON (1234, true, {"a": 1})."""
    if kind == "text":
        return text
    try:
        return json.loads(text)
    except ValueError as e:
        raise UserError(f"--arg-json {text!r} is not JSON ({e}); use --arg for text") from None


def text_arg(text: str):
    return ("text", text)


def json_arg(text: str):
    return ("json", text)


def parse_timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        delta = duration_delta(parse_duration(text, "--timeout"))
        if delta.years or delta.months:
            raise UserError("--timeout: use days or shorter units, not months or years") from None
        seconds = timedelta(weeks=delta.weeks, days=delta.days - delta.weeks * 7, hours=delta.hours,
                            minutes=delta.minutes, seconds=delta.seconds,
                            microseconds=delta.microseconds).total_seconds()
    if not seconds > 0:
        raise UserError(f"--timeout must be more than 0 seconds, not {text!r}")
    return seconds


# ---- building a task -----------------------------------------------------------------------

def build_task(args, now: datetime) -> dict:
    """The document `after add` stores, from its flags (pure: `now` is passed in)."""
    from afterd.task import format_date

    if args.arguments is not None and args.arg:
        raise UserError("--arguments gives all the arguments: use it without --arg / --arg-json")
    if args.arguments is not None:
        try:
            arguments = json.loads(args.arguments)
        except ValueError as e:
            raise UserError(f"--arguments is not JSON: {e}") from None
        if not isinstance(arguments, (list, dict)):
            raise UserError("--arguments must be a JSON list or object")
    else:
        arguments = [parse_argument(kind, text) for kind, text in args.arg]
    if args.tz:
        zone(args.tz)
    if args.at is not None:
        date = parse_at(args.at, args.tz)
        if DATE_ONLY.fullmatch(args.at.strip()) and not args.tz:
            # A date alone is a valid task date (midnight UTC): store it as written, so
            # `--at 2012-02-27` gives the very document a user would POST.
            date = args.at.strip()
    elif args.in_ is not None:
        date = now + duration_delta(parse_duration(args.in_, "--in"))
    else:
        date = now
    doc = {"worker": args.worker, "date": date if isinstance(date, str) else format_date(date),
           "status": "waiting",
           "job": {"name": args.job, "arguments": arguments}}
    if args.id:
        doc["_id"] = args.id
    if args.every or args.rrule:
        repeat = parse_duration(args.every, "--every") if args.every else {}
        if args.rrule:
            repeat["rrule"] = args.rrule
        if args.tz:
            repeat["tz"] = args.tz
        doc["repeat"] = repeat
    if args.timeout is not None:
        doc["timeout"] = parse_timeout(args.timeout)
    doc.update(policy_fields(args))
    check_task(doc)
    return doc


# ---- the policy flags of `after add` ---------------------------------------------------------

def duration_value(text: str, flag: str):
    """A policy duration as the document keeps it: a number of seconds when typed as one
    ("90", "0.5"), else the duration text as typed ("1h30m")."""
    from afterd.repeat import duration_s
    from afterd.task import TaskError

    try:
        number = float(text)
    except ValueError:
        number = None
    value = (int(number) if number.is_integer() else number) if number is not None else text
    try:
        duration_s(value, flag)
    except TaskError as e:
        raise UserError(str(e)) from None
    return value


def retry_field(args):
    """--retry N and its companions -> the `retry` object, or None when no retry flag is given."""
    companions = {"--retry-delay": args.retry_delay, "--backoff": args.backoff,
                  "--max-delay": args.max_delay, "--retry-on": args.retry_on}
    if args.retry is None:
        given = [flag for flag, value in companions.items() if value is not None]
        if given:
            raise UserError(f"{given[0]} needs --retry N (how many retries)")
        return None
    if args.retry < 0:
        raise UserError(f"--retry must be 0 or more, not {args.retry}")
    retry = {"attempts": args.retry + 1}
    if args.retry_delay is not None:
        retry["delay"] = duration_value(args.retry_delay, "--retry-delay")
    if args.backoff is not None:
        retry["backoff"] = int(args.backoff) if args.backoff.is_integer() else args.backoff
    if args.max_delay is not None:
        retry["max_delay"] = duration_value(args.max_delay, "--max-delay")
    if args.retry_on is not None:
        retry["on"] = [e.strip() for e in args.retry_on.split(",") if e.strip()]
    return retry


def template_field(job, arguments_json, flag: str):
    """--on-error-job NAME [--on-error-arguments JSON] -> a task template."""
    if job is None:
        if arguments_json is not None:
            raise UserError(f"{flag}-arguments needs {flag}-job NAME")
        return None
    template = {"job": {"name": job}}
    if arguments_json is not None:
        try:
            template["job"]["arguments"] = json.loads(arguments_json)
        except ValueError as e:
            raise UserError(f"{flag}-arguments is not JSON: {e}") from None
    return template


def policy_fields(args) -> dict:
    """The policy fields (design §3, Policies) from `after add`'s flags; only those given."""
    fields = {"retry": retry_field(args), "catchup": args.catchup,
              "catchup_window": (duration_value(args.catchup_window, "--catchup-window")
                                 if args.catchup_window is not None else None),
              "overlap": args.overlap,
              "jitter": duration_value(args.jitter, "--jitter") if args.jitter is not None else None,
              "history_limit": args.history_limit,
              "on_done": template_field(args.on_done_job, args.on_done_arguments, "--on-done"),
              "on_error": template_field(args.on_error_job, args.on_error_arguments, "--on-error")}
    return {key: value for key, value in fields.items() if value is not None}


def check_task(doc: dict) -> None:
    """Refuse here, with the same rules the database applies, what CouchDB would refuse."""
    from afterd.task import TaskError, check_document

    try:
        check_document(doc)
    except TaskError as e:
        raise UserError(str(e)) from None


# ---- the commands --------------------------------------------------------------------------

def open_couch(settings: Settings):
    from afterd.couch import Couch

    return Couch(settings.couchdb_url, settings.database)


def cmd_start(args, settings: Settings) -> int:
    name = daemon.check_worker_name(args.name)
    if args.background:
        if daemon.systemd_running():
            return daemon.systemd_start(name)
        worker_argv = [sys.executable, "-m", "afterd", *settings_flags(args), "start", name]
        return daemon.daemon_start(name, worker_argv)
    try:
        from afterd.service import run_worker
    except ImportError as e:
        if getattr(e, "name", None) == "afterd.worker":
            raise UserError("this build has no worker yet (afterd/worker.py is missing)", EXIT_FAILURE) from None
        raise
    return run_worker(name, settings)


def settings_flags(args) -> list[str]:
    """The settings flags of this command line, handed on to the background worker."""
    argv = []
    for flag, dest in SETTINGS_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            argv += [flag, str(value)]
    return argv


def cmd_stop(args, settings: Settings) -> int:
    name = daemon.check_worker_name(args.name)
    if daemon.systemd_running():
        return daemon.systemd_stop(name)
    # Running jobs get stop_grace_s, then the worker kills what is left within kill_grace_s.
    return daemon.daemon_stop(name, settings.stop_grace_s + settings.kill_grace_s + 5)


def cmd_log(args, settings: Settings) -> int:
    name = daemon.check_worker_name(args.name)
    task = getattr(args, "task", None)
    if daemon.systemd_running():
        return daemon.systemd_log(name, args.follow, args.lines, task)
    return daemon.daemon_log(name, args.follow, args.lines, task=task)


def cmd_list(args, settings: Settings) -> int:
    if daemon.systemd_running():
        rows = [(name, state, status or "-") for name, state, status in daemon.systemd_workers()]
        header = ("WORKER", "STATE", "STATUS")
    else:
        rows = [(name, str(pid), str(log)) for name, pid, log in daemon.daemon_workers()]
        header = ("WORKER", "PID", "LOG")
    if not rows:
        print("no workers running")
        return EXIT_OK
    print_table(header, rows)
    return EXIT_OK


def cmd_clean(args, settings: Settings) -> int:
    name = daemon.check_worker_name(args.name)
    if daemon.systemd_running():
        print(daemon.JOURNALD_CLEAN_TEXT.format(name=name))
        return EXIT_OK
    return daemon.daemon_clean(name)


def cmd_init(args, settings: Settings) -> int:
    couch = open_couch(settings)
    where = f"{settings.database} at {mask_url(settings.couchdb_url)}"
    created = couch.ensure_database()
    print(f"created database {where}" if created else f"database {where} already exists")
    installed = couch.ensure_design()
    print("installed the design document _design/after (validation, views)" if installed
          else "the design document _design/after is up to date")
    set_security(couch, settings)
    print(f"set _security: only server admins and users with the role '{TASKS_ROLE}' "
          "can read and write tasks, and with 'after_reader' read them")
    from afterd.console.install import init_console
    init_console(couch, settings, console_csp=args.console_csp)
    return EXIT_OK


TASKS_ROLE = "after"


def set_security(couch, settings: Settings) -> None:
    """Members by role: CouchDB then refuses everyone else (pouchdb-server's _find ignores it)."""
    from afterd.console.install import security as console_security
    security = console_security()   # TASKS_ROLE acts, the console's read-only role reads
    if hasattr(couch, "put_security"):
        couch.put_security(security)
        return
    # Couch's contract has no _security call yet (asked for put_security): use its request
    # helper, so errors come back typed and scrubbed like every other call.
    couch._request("PUT", f"{couch._db_path}/_security", body=security, what="setting _security")


def cmd_console(args, settings: Settings) -> int:
    from afterd.console.serve import serve

    return serve(settings.couchdb_url, settings.database, host=args.host, port=args.port)


def cmd_add(args, settings: Settings) -> int:
    from afterd import clock
    from afterd.couch import Conflict

    doc = build_task(args, clock.now())
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


def job_name(doc: dict) -> str:
    job = doc.get("job")
    return str(job.get("name")) if isinstance(job, dict) else "?"


REPEAT_SHORT = {long: short for short, long in DURATION_UNITS.items()}


def repeat_text(repeat) -> str:
    """{'months': 1, 'days': 7} -> '1M7d' (the syntax `after add --every` takes)."""
    if not isinstance(repeat, dict):
        return "-"
    parts = ["".join(f"{value}{REPEAT_SHORT.get(key, key)}" for key, value in repeat.items()
                     if key not in ("tz", "rrule", "until", "count"))]
    if "rrule" in repeat:
        parts.append(str(repeat["rrule"]))
    if "tz" in repeat:
        parts.append(f"({repeat['tz']})")
    return " ".join(p for p in parts if p) or "-"


def print_table(header, rows) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


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


def policy_rows(doc: dict) -> list[tuple[str, str]]:
    """The task's policies in words, defaults included (what the worker will do)."""
    from afterd.policy import parse_policy
    from afterd.task import TaskError

    try:
        policy = parse_policy(doc)
    except TaskError as e:
        raise UserError(f"task {doc.get('_id')}: {e}", EXIT_FAILURE) from None
    retry = policy.retry
    if retry.attempts == 1:
        retry_text = "no retry"
    else:
        waits = f"wait {seconds_text(retry.delay_s)}" + (f", x{retry.backoff:g} each time" if retry.backoff != 1 else "")
        if retry.max_delay_s is not None:
            waits += f", at most {seconds_text(retry.max_delay_s)}"
        retry_text = f"{retry.attempts} attempts in all on {', '.join(sorted(retry.on))}; {waits}"
    window = f", skip those older than {seconds_text(policy.catchup_window_s)}" \
        if policy.catchup_window_s is not None else ""
    catchup = {"one": "missed occurrences run once", "all": "each missed occurrence runs, in order",
               "none": "missed occurrences are skipped"}[policy.catchup]
    overlap = {"wait": "the next occurrence waits for the run, then catches up",
               "skip": "occurrences due during a run are skipped",
               "replace": "a due occurrence cancels the run and starts"}[policy.overlap]
    limit = policy.history_limit
    rows = [("retry", retry_text), ("catchup", f"{policy.catchup}: {catchup}{window}"),
            ("overlap", f"{policy.overlap}: {overlap}"),
            ("jitter", f"up to {seconds_text(policy.jitter_s)}" if policy.jitter_s else "none"),
            ("history_limit", str(limit) if limit is not None else "the worker's (default 20)")]
    for name in ("on_done", "on_error"):
        template = getattr(policy, name)
        rows.append((name, "-" if template is None else
                     f"job {template.job_name} {json.dumps(template.arguments)}"
                     + (f" on worker {template.worker}" if template.worker else "")))
    return rows


def seconds_text(seconds: float) -> str:
    """5400 -> '1h30m', 1.5 -> '1.5s': the duration syntax users type."""
    if seconds == 0:
        return "0s"
    whole, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    rest = whole + (seconds - int(seconds))
    if rest:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def cmd_history(args, settings: Settings) -> int:
    doc = get_task(open_couch(settings), args.id)
    history = doc.get("history")
    if args.json:
        print(json.dumps(history if isinstance(history, list) else [], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not isinstance(history, list) or not history:
        print(f"no runs recorded for task {args.id} yet")
        return EXIT_OK
    print_table(("OCCURRENCE", "ATTEMPT", "START", "DURATION", "STATUS", "OUTCOME", "PROCESS"),
                [history_row(entry) for entry in history])
    return EXIT_OK


def history_row(entry) -> tuple:
    """One history entry as table cells; whatever a user wrote there is shown, not trusted."""
    if not isinstance(entry, dict):
        return ("?", "", "", "", "", one_line(entry), "")
    duration = entry.get("duration_s")
    outcome = entry.get("error") if entry.get("status") != "done" else entry.get("result")
    return (str(entry.get("occurrence", "-")), str(entry.get("attempt", "-")), str(entry.get("start", "-")),
            f"{duration:g}s" if isinstance(duration, (int, float)) else "-", str(entry.get("status", "?")),
            one_line(outcome), str(entry.get("process", "-")))


def one_line(value, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


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


def cmd_cancel(args, settings: Settings) -> int:
    from afterd.task import FINAL, TaskError, normalize_status

    outcome = {}

    def cancel(doc):
        try:
            status = normalize_status(doc.get("status"))
        except TaskError:
            status = str(doc.get("status"))
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
    from afterd.task import FINAL, TaskError, format_date, normalize_status

    new_date = format_date(parse_at(args.date, None))
    outcome = {}

    def reschedule(doc):
        try:
            status = normalize_status(doc.get("status"))
        except TaskError:
            status = str(doc.get("status"))
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
    from afterd.task import TaskError, normalize_status

    outcome = {}

    def change(doc):
        try:
            status = normalize_status(doc.get("status"))
        except TaskError:
            status = str(doc.get("status"))
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


def report(message: str, code: int) -> int:
    """Success goes to stdout; a refusal is an error line on stderr."""
    if code == EXIT_OK:
        print(message)
    else:
        print(f"{PROG}: {message}", file=sys.stderr)
    return code


def cmd_jobs(args, settings: Settings) -> int:
    found = job_report(settings.jobs_dir)
    if not found:
        print(f"no jobs in {settings.jobs_dir}")
        return EXIT_OK
    print_table(("JOB", "STATE"), found)
    return EXIT_OK if all(state == "ok" for _name, state in found) else EXIT_FAILURE


def job_report(jobs_dir) -> list[tuple[str, str]]:
    """(name, 'ok' or why it cannot run) for every job file in the folder."""
    from pathlib import Path

    root = Path(jobs_dir)
    if not root.is_dir():
        raise UserError(f"jobs folder {root} does not exist (set jobs_dir or AFTER_JOBS_DIR)", EXIT_FAILURE)
    names = sorted({p.stem for p in root.glob("*.py")} |
                   {p.parent.name for p in root.glob("*/__init__.py")})
    return [(name, job_state(root, name)) for name in names if not name.startswith("_")]


def job_state(root, name: str) -> str:
    try:
        from afterd import jobs
    except ImportError:
        jobs = None
    try:
        if jobs is not None:
            path = jobs.resolve(root, name)
            code_source = path.read_bytes()
        else:
            path = root / f"{name}.py"
            code_source = path.read_bytes()
        tree = ast.parse(code_source, str(path))
    except SyntaxError as e:
        return f"syntax error, line {e.lineno}: {e.msg}"
    except ValueError as e:
        return f"cannot compile: {e}"
    except OSError as e:
        return f"cannot read: {e.strerror}"
    except Exception as e:   # JobError: refused by the trust checks, or not a job name
        return f"refused: {e}"
    if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run"
               for node in tree.body) and not defines_name(tree, "run"):
        return "no run(task) function"
    return "ok"


def defines_name(tree, name: str) -> bool:
    """True if the module binds `name` at top level by assignment or import (run = ...)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


# ---- the parser ----------------------------------------------------------------------------

SETTINGS_FLAGS = (("--couchdb-url", "couchdb_url"), ("--database", "database"), ("--jobs-dir", "jobs_dir"),
                  ("--state-dir", "state_dir"), ("--concurrency", "concurrency"),
                  ("--log-level", "log_level"), ("--metrics-dir", "metrics_dir"))


def settings_parent() -> argparse.ArgumentParser:
    # SUPPRESS: the same flags sit on the main parser and on every subcommand, and an
    # unset subcommand flag must not overwrite one given before the subcommand.
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (override /etc/after/after.conf and AFTER_* variables)")
    group.add_argument("--couchdb-url", default=argparse.SUPPRESS, metavar="URL",
                       help="CouchDB server, may carry user:password (AFTER_COUCHDB_URL)")
    group.add_argument("--database", default=argparse.SUPPRESS, metavar="NAME", help="tasks database (AFTER_DATABASE)")
    group.add_argument("--jobs-dir", default=argparse.SUPPRESS, metavar="DIR", help="jobs folder (AFTER_JOBS_DIR)")
    group.add_argument("--state-dir", default=argparse.SUPPRESS, metavar="DIR", help="workers' state folder (AFTER_STATE_DIR)")
    group.add_argument("--concurrency", default=argparse.SUPPRESS, metavar="N", help="jobs run at once (AFTER_CONCURRENCY)")
    group.add_argument("--log-level", default=argparse.SUPPRESS, metavar="LEVEL",
                       help="debug, info, warning or error (AFTER_LOG_LEVEL)")
    group.add_argument("--metrics-dir", default=argparse.SUPPRESS, metavar="DIR",
                       help="node exporter textfile folder for Prometheus metrics, or none "
                            "(AFTER_METRICS_DIR)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parent = settings_parent()
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[parent],
        description="cron no more: tasks are CouchDB documents; named workers run them at their date.")
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, func, help_text, description=None):
        p = sub.add_parser(name, parents=[parent], help=help_text, description=description or help_text)
        p.set_defaults(func=func)
        return p

    p = command("start", cmd_start, "run worker NAME (in the foreground unless -b)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-b", "--background", action="store_true",
                   help="run in the background: systemctl start after@NAME where systemd runs, else a daemon with a pid file")

    p = command("stop", cmd_stop, "stop worker NAME, letting running jobs finish within the grace time")
    p.add_argument("name", metavar="NAME")

    p = command("log", cmd_log, "show the log of worker NAME (journalctl -u after@NAME under systemd)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--task", metavar="ID", help="only the lines about task ID (under systemd: the journal "
                                                "field TASK_ID=ID)")

    command("list", cmd_list, "workers running on this machine, with their status line")

    p = command("clean", cmd_clean, "empty the log of worker NAME (under systemd: explain journald's retention)")
    p.add_argument("name", metavar="NAME")

    p = command("init", cmd_init, "create the database, install _design/after, restrict access to role 'after'",
                "Create the tasks database if needed, install or upgrade the design document "
                "_design/after, and set _security so only server admins and users with the role "
                "'after' can read and write tasks. Needs an admin's user:password in the URL.")
    p.add_argument("--console-csp", action="store_true",
                   help="let the attached console run on Apache CouchDB: set the SERVER-WIDE [csp] "
                        "attachments_header_value to a same-origin-scripts-only policy (says how to undo)")

    p = command("console", cmd_console, "serve the console on loopback with a same-origin proxy to CouchDB",
                "Serve the web console on a loopback port, proxying /_session and the tasks database "
                "to CouchDB from the same origin; changes nothing on the server. For servers that keep "
                "CouchDB's attachment sandbox.")
    p.add_argument("--port", type=int, default=5986, help="loopback port (default 5986; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")

    p = command("add", cmd_add, "add a task; prints its id",
                "Add a task. Dates without an offset are UTC (or wall-clock time in --tz when given); "
                "without --at or --in the task runs as soon as its worker sees it.")
    p.add_argument("--worker", required=True, help="name of the worker that runs it")
    p.add_argument("--job", required=True, help="job name (a module in the jobs folder)")
    # --arg and --arg-json mix (in order), so they cannot be in a mutually exclusive group
    # with --arguments: build_task refuses that pair itself.
    p.add_argument("--arg", dest="arg", action="append", default=[], type=text_arg, metavar="VALUE",
                   help="an argument for the job, stored as text as typed (repeatable: "
                        "--arg 1234 --arg x gives [\"1234\", \"x\"])")
    p.add_argument("--arg-json", dest="arg", action="append", type=json_arg, metavar="JSON",
                   help="an argument for the job as a JSON value (1234 a number, true, "
                        "{\"a\": 1}); mixes with --arg in the order given")
    p.add_argument("--arguments", metavar="JSON", help="all arguments as one JSON list or object")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="DATE",
                      help='when to run: "2026-12-01 03:00", "2026-12-01T03:00:00+01:00"; '
                           "no offset means UTC, or --tz when given")
    when.add_argument("--in", dest="in_", metavar="DURATION", help=f"run after a while: {DURATION_HELP}")
    p.add_argument("--every", metavar="DURATION", help=f"repeat: {DURATION_HELP}")
    p.add_argument("--rrule", metavar="RULE", help='repeat by an RFC 5545 rule, e.g. "FREQ=DAILY;BYHOUR=3"')
    p.add_argument("--tz", metavar="ZONE", help="IANA time zone (Europe/Lisbon) for --at and the repeat")
    p.add_argument("--timeout", metavar="SECONDS", help="kill a run after this long (seconds, or a duration like 5m)")
    p.add_argument("--id", help="the task's document id (default: CouchDB picks one)")
    add_policy_flags(p)

    p = command("tasks", cmd_tasks, "list tasks")
    p.add_argument("--worker", help="only this worker's tasks")
    p.add_argument("--status", help="only tasks with this status")
    p.add_argument("--json", action="store_true", help="the documents as JSON instead of a table")

    p = command("show", cmd_show, "print a task document as JSON")
    p.add_argument("id", metavar="ID")
    p.add_argument("--policies", action="store_true",
                   help="its policies in words instead, defaults included (retry, catchup, overlap...)")

    p = command("history", cmd_history, "the task's last runs, as a table")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="the history entries as JSON instead")

    for name, func, text in (("pause", cmd_pause, "ask the task's worker to stop arming it (a running job finishes)"),
                             ("resume", cmd_resume, "ask the worker of a paused task to arm it again"),
                             ("run", cmd_run, "ask the task's worker to run it now, once (a repeat keeps its next date)")):
        p = command(name, func, text)
        p.add_argument("id", metavar="ID")

    p = command("cancel", cmd_cancel, "ask the task's worker to cancel it (stops it if running)")
    p.add_argument("id", metavar="ID")

    p = command("reschedule", cmd_reschedule, "move a task to another date")
    p.add_argument("id", metavar="ID")
    p.add_argument("date", metavar="DATE", help='new date: "2026-12-01 03:00" (UTC) or ISO 8601 with an offset')

    command("jobs", cmd_jobs, "jobs in the jobs folder, and those that cannot be loaded")
    return parser


def add_policy_flags(p) -> None:
    """`after add`'s flags for the policy fields (design §3, Policies)."""
    group = p.add_argument_group("policies (all optional; the defaults are after's usual behaviour)")
    group.add_argument("--retry", type=int, metavar="N",
                       help="retry a failed run up to N times (N+1 attempts in all)")
    group.add_argument("--retry-delay", metavar="DURATION", help="wait before the first retry (30s, 5m; default 0)")
    group.add_argument("--backoff", type=float, metavar="FACTOR",
                       help="each later wait is FACTOR times the one before (default 1)")
    group.add_argument("--max-delay", metavar="DURATION", help="no wait is longer than this")
    group.add_argument("--retry-on", metavar="ENDINGS",
                       help="which endings are retried, comma-separated: error,timeout,interrupted (default all)")
    group.add_argument("--catchup", choices=("one", "all", "none"),
                       help="missed occurrences: one run for all (default), each in order, or none")
    group.add_argument("--catchup-window", metavar="DURATION", help="skip missed occurrences older than this")
    group.add_argument("--overlap", choices=("wait", "skip", "replace"),
                       help="a run still going when the next is due: wait (default), skip it, or replace the run")
    group.add_argument("--jitter", metavar="DURATION", help="delay each occurrence by a fixed pseudo-random amount below this")
    group.add_argument("--history-limit", type=int, metavar="N", help="how many runs `history` keeps (default 20)")
    for ending in ("done", "error"):
        group.add_argument(f"--on-{ending}-job", metavar="JOB",
                           help=f"when a run ends {ending}, create a task running JOB (same worker, at once)")
        group.add_argument(f"--on-{ending}-arguments", metavar="JSON",
                           help=f"the arguments of the --on-{ending}-job task, a JSON list or object")


def flags_from(args) -> dict:
    return {dest: getattr(args, dest) for _flag, dest in SETTINGS_FLAGS if hasattr(args, dest)}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)   # exits 2 with argparse's own message on bad usage
    password = None
    try:
        settings = load_settings(flags_from(args))
        password = url_password(settings.couchdb_url)
        return args.func(args, settings)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `after tasks | head`: the reader went away; not an error worth a line.
        sys.stderr.close()
        return EXIT_OK
    except ConfigError as e:
        return fail(str(e), EXIT_CONFIG, password)
    except UserError as e:
        return fail(str(e), e.code, password)
    except daemon.DaemonError as e:
        return fail(str(e), e.code, password)
    except OSError as e:
        return fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", EXIT_FAILURE, password)
    except Exception as e:   # CouchError and anything unforeseen: one line, no traceback
        return fail(couch_message(e), couch_exit_code(e), password)


def couch_exit_code(error) -> int:
    try:
        from afterd import couch
    except ImportError:
        return EXIT_FAILURE
    if isinstance(error, couch.Unavailable):
        return EXIT_UNAVAILABLE
    if isinstance(error, couch.Unauthorized):
        return EXIT_NOPERM
    return EXIT_FAILURE


def couch_message(error) -> str:
    try:
        from afterd import couch
        if isinstance(error, couch.CouchError):
            return str(error)
    except ImportError:
        pass
    return f"unexpected {type(error).__name__}: {error}"


def url_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password
    return unquote(password) if password else None


def fail(message: str, code: int, password: str | None) -> int:
    line = " ".join(message.split())   # one line, whatever the error carried
    if password:
        # Belt and braces: whatever produced the message, the password never reaches the screen.
        line = line.replace(password, "***")
        from urllib.parse import quote
        line = line.replace(quote(password, safe=""), "***")
    print(f"{PROG}: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
