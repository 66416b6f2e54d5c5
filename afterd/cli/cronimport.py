"""`after import crontab [FILE|-] --worker W`: a crontab's lines as tasks (afterd/crontab.py).

Prints what it would do and writes nothing unless --apply. With --apply it creates and
updates the tasks, and cancels those imported earlier from the same file whose line is gone.
"""

import os
import sys
from pathlib import Path

from afterd.cli import UserError, open_couch
from afterd.config import Settings
from afterd.exits import EXIT_FAILURE, EXIT_OK


def cmd_import_crontab(args, settings: Settings) -> int:
    from afterd import clock, crontab
    from afterd.fields import format_date

    check_flags(args)
    text, source, system = read_source(args)
    tz = args.tz or local_zone()
    check_zone(tz)
    table = crontab.parse_crontab(text, system=system, user=args.user)
    couch = open_couch(settings)
    now = clock.now()
    ids = crontab.task_ids(table.jobs, worker=args.worker, source=source)
    existing = existing_docs(couch, ids)
    imported = couch.find({"worker": args.worker, "imported_from.crontab": source})
    steps = crontab.plan_import(table, existing, imported, worker=args.worker, source=source, tz=tz,
                                now=now, next_date=next_date, catchup=args.catchup)
    if args.print_disabled:
        # Only the lines whose task exists as they say: a line not imported yet stays active.
        moved = {s.job.line for s in steps if s.kind == "same"}
        sys.stdout.write(crontab.disabled(text, moved))
        waiting = [s for s in steps if s.kind in ("create", "update")]
        if waiting:
            print(f"after: {len(waiting)} line{'s' if len(waiting) != 1 else ''} not imported yet left active "
                  f"(line {waiting[0].job.line}{' and more' if len(waiting) > 1 else ''}): "
                  "import with --apply first", file=sys.stderr)
        return EXIT_OK
    print(f"{source} ({'system' if system else 'user'} format) -> worker {args.worker}, "
          f"times in {tz} unless CRON_TZ says otherwise")
    for step in steps:
        print(step_text(step, format_date))
    for skip in table.skipped:
        print(f"  skip    line {skip.line}: {skip.text.strip()}\n          {skip.reason}")
    for note in table.notes:
        print(f"  note    line {note.line}: {note.text.strip()}\n          {note.note}")
    counts = {kind: sum(1 for s in steps if s.kind == kind) for kind in ("create", "update", "cancel", "same")}
    summary = (f"{counts['create']} to create, {counts['update']} to update, {counts['cancel']} to cancel, "
               f"{counts['same']} unchanged, {len(table.skipped)} line{'s' if len(table.skipped) != 1 else ''} "
               "not imported")
    writes = [s for s in steps if s.kind != "same"]
    if not args.apply:
        print(summary + "." + ("\nNothing written: run again with --apply to do this." if writes else ""))
        return EXIT_OK
    failed = apply(couch, writes)
    done = summary.replace("to create", "created").replace("to update", "updated").replace("to cancel", "canceled")
    if failed:
        # One line per reason (usually one: the database's validation refusing them all).
        reasons: dict[str, list[str]] = {}
        for task_id, reason in failed:
            reasons.setdefault(str(reason), []).append(task_id)
        for reason, ids in reasons.items():
            more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
            print(f"after: {len(ids)} of {len(writes)} tasks not written ({ids[0]}{more}): {reason}",
                  file=sys.stderr)
        return EXIT_FAILURE
    print(done + ".")
    return EXIT_OK


def step_text(step, format_date) -> str:
    job = step.job
    if step.kind == "cancel":
        return f"  cancel  {step.task_id}\n          {step.detail}"
    who = f" (as {job.user})" if job.user else ""
    head = f"  {step.kind:<7} {step.task_id}  line {job.line}: {job.schedule}{who}  {job.command}"
    if step.kind == "same":
        return head
    lines = [head]
    if step.kind == "update":
        lines.append(f"          changes: {step.detail}")
    lines.append(f"          first run {step.doc['date']} ({step.doc['repeat']['tz']} cron time)"
                 if step.kind == "create" else f"          next run {step.doc['date']}")
    return "\n".join(lines)


def apply(couch, writes) -> list[tuple[str, str]]:
    """Write every step in one bulk request; (id, reason) of those refused."""
    if not writes:
        return []
    answers = couch.bulk([s.doc for s in writes])
    return [(a.get("id", "?"), a.get("reason") or a.get("error")) for a in answers if a.get("error")]


def check_flags(args):
    if args.print_disabled and args.apply:
        raise UserError("--print-disabled prints the crontab with the imported lines commented out; "
                        "import first with --apply, then run it without --apply")


def read_source(args) -> tuple[str, str, bool]:
    """(text, source label, system format?) of FILE, or of stdin for '-'."""
    if args.file == "-":
        if sys.stdin.isatty():
            raise UserError("reading the crontab from stdin, which is a terminal: pipe it in "
                            "(crontab -l | after import crontab - --worker W) or name a file")
        text = sys.stdin.read()
        label = args.source or ("crontab of " + args.user if args.user else "user crontab")
        return text, label, bool(args.system)
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"{args.file}: {e.strerror}", EXIT_FAILURE) from None
    label = args.source or str(path.resolve())
    return text, label, bool(args.system) or is_system_file(path)


def is_system_file(path) -> bool:
    """/etc/crontab and /etc/cron.d/* have a user field after the schedule."""
    real = Path(os.path.abspath(path))
    return str(real) == "/etc/crontab" or str(real.parent) == "/etc/cron.d"


def local_zone() -> str:
    """This machine's IANA time zone (cron's times are local time), or UTC when unknown."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


def check_zone(tz: str):
    from afterd.fields import TaskError
    from afterd.repeat import parse_tz

    try:
        parse_tz(tz)
    except TaskError as e:
        raise UserError(f"--tz: {e.problem}") from None


def existing_docs(couch, ids) -> dict:
    from afterd.couch import NotFound

    found = {}
    for task_id in ids:
        try:
            found[task_id] = couch.get(task_id)
        except NotFound:
            continue
    return found


def next_date(schedule: str, tz: str, now):
    """The first occurrence of a cron schedule after `now` (afterd/cron.py); ValueError if bad."""
    from afterd import cron

    try:
        return cron.next_after(cron.parse_cron(schedule), now, tz)
    except cron.CronError as e:
        head = f"cron {cron.show(schedule)}"   # the line's schedule is named by the caller
        text = str(e)
        raise ValueError(text[len(head):].lstrip(": ") if text.startswith(head) else text) from None
