"""Reading a crontab into tasks (pure: the text, the clock and the schedule math are passed in).

`after import crontab` (cli/cronimport.py) reads a user crontab (`crontab -l`) or a system
file (/etc/crontab, /etc/cron.d/*: a user field after the five time fields) and turns each
job line into a task running the `shell` job (jobs/shell.py) with the line's command, as
cron would run it: through SHELL, with the environment lines above it, as its user.

Ids. A task's id is derived from the worker, the file, the line's user and command, and
which occurrence of that same command in the file it is (the 1st, 2nd...): so importing
the same file twice finds the same ids and changes nothing; a line whose schedule (or
SHELL, PATH, variables, CRON_TZ) was edited keeps its id and its task is updated; a line
whose command was edited is a new task, and the task of the old command, gone from the
file, is canceled. The command is what a person recognises a line by ("the backup"), and
the schedule is what they edit.

What cron does that a task cannot, the import refuses with the reason (`Skipped`): @reboot
(there is no boot in after), an unescaped `%` in the command (cron turns it into a newline
and feeds the rest to the command's stdin). MAILTO and MAILFROM are cron's mail settings:
not carried (a run's output is kept with the run: `after history ID --output`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from afterd.fields import format_date

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
ENV_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*\Z")
# Cron's own settings, not the command's environment.
MAIL_SETTINGS = ("MAILTO", "MAILFROM")
SHELL_JOB = "shell"
DEFAULT_SHELL = "/bin/sh"
DEFAULT_PATH = "/usr/bin:/bin"      # cron's PATH when the file sets none
ID_PREFIX = "cron-"
# A job line moved to after, commented out for cron (`--print-disabled`): cron skips it, the
# import still reads it, so importing the disabled file again changes nothing.
MOVED = "# after: "


@dataclass(frozen=True)
class Job:
    """One job line of a crontab, read."""
    line: int                  # 1-based line number in the file
    text: str                  # the line as written
    schedule: str              # "0 3 * * 1-5" or "@daily"
    user: str | None           # the system format's user field; else --user (or None: the worker's)
    command: str               # as cron hands it to the shell (\% unescaped)
    env: dict                  # the variables set above the line (SHELL and PATH included)
    shell: str
    tz: str | None             # CRON_TZ above the line, else None (the import's zone)
    random_delay_min: int | None = None   # cronie's RANDOM_DELAY, in minutes: the task's jitter


@dataclass(frozen=True)
class Skipped:
    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class Note:
    line: int
    text: str
    note: str


@dataclass
class Crontab:
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def unquote(value: str) -> str:
    """Cron strips one pair of matching quotes around a variable's value."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def split_fields(text: str, count: int) -> tuple[list[str], str] | None:
    """The first `count` whitespace-separated fields and the rest of the line, or None."""
    parts = text.split(None, count)
    if len(parts) <= count:
        return None
    return parts[:count], parts[count]


def unescape_command(command: str) -> str:
    """`\\%` is a literal percent sign; an unescaped `%` raises ValueError saying why."""
    out = []
    i = 0
    while i < len(command):
        c = command[i]
        if c == "\\" and i + 1 < len(command) and command[i + 1] == "%":
            out.append("%")
            i += 2
            continue
        if c == "%":
            raise ValueError("a % in the command: cron turns it into a newline and feeds the rest to "
                             "the command's input; put the command in a script, or write \\% for a "
                             "percent sign (date +\\%F)")
        out.append(c)
        i += 1
    return "".join(out)


def parse_crontab(text: str, *, system: bool = False, user: str | None = None) -> Crontab:
    """Read a crontab: `system` for /etc/crontab and /etc/cron.d files (a user field after the
    time fields); `user` for a user crontab's lines (None: they run as the worker's user)."""
    result = Crontab()
    env: dict[str, str] = {}
    tz: str | None = None
    random_delay: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(MOVED.strip()):
            raw = line = line[len(MOVED.strip()):].strip()
            if not line or ENV_LINE.match(line):
                continue
        elif not line or line.startswith("#"):
            continue
        m = ENV_LINE.match(raw)
        if m:
            name, value = m.group(1), unquote(m.group(2))
            if name == "CRON_TZ":
                tz = value or None
            elif name in MAIL_SETTINGS:
                result.notes.append(Note(number, raw, f"{name} is cron's mail setting: not carried. Each "
                                         "run's output is kept with the run (after history ID --output) "
                                         "and in the worker's log; for mail on failure, use on_error"))
            elif name == "RANDOM_DELAY":
                if not value.isdigit():
                    result.skipped.append(Skipped(number, raw, "RANDOM_DELAY must be a number of minutes"))
                else:
                    random_delay = int(value) or None
            else:
                env[name] = value
            continue
        job = read_job(number, raw, line, system=system, user=user, env=env, tz=tz,
                       random_delay=random_delay)
        (result.jobs if isinstance(job, Job) else result.skipped).append(job)
    return result


def read_job(number, raw, line, *, system, user, env, tz, random_delay) -> Job | Skipped:
    if line.startswith("@"):
        alias, rest = (line.split(None, 1) + [""])[:2]
        if alias == "@reboot":
            return Skipped(number, raw, "@reboot runs once when the machine starts, and after has no "
                                        "such event: start the command from a systemd unit instead")
        if alias not in ALIASES:
            return Skipped(number, raw, f"{alias} is not a schedule cron knows ({', '.join(ALIASES)})")
        schedule, rest_fields = alias, rest
    else:
        split = split_fields(line, 5)
        if split is None:
            return Skipped(number, raw, "not a job line: five time fields and a command expected")
        fields, rest_fields = split
        schedule = " ".join(fields)
    line_user = user
    if system:
        split = split_fields(rest_fields, 1)
        if split is None:
            return Skipped(number, raw, "no user and command after the schedule (a system crontab "
                                        "line is: minute hour day month weekday user command)")
        (line_user,), rest_fields = split
    if not rest_fields.strip():
        return Skipped(number, raw, "no command after the schedule")
    try:
        command = unescape_command(rest_fields.strip())
    except ValueError as e:
        return Skipped(number, raw, str(e))
    shell = env.get("SHELL", DEFAULT_SHELL)
    carried = {"PATH": DEFAULT_PATH, **env, "SHELL": shell}
    return Job(line=number, text=raw, schedule=schedule, user=line_user, command=command,
               env=carried, shell=shell, tz=tz, random_delay_min=random_delay)


# ---- tasks ---------------------------------------------------------------------------------------

def slug(command: str, width: int = 24) -> str:
    """A few readable characters of the command for the id: 'backup-full' from '/usr/local/bin/backup --full'."""
    words = [w.rsplit("/", 1)[-1] for w in command.split()[:3]]
    text = re.sub(r"[^a-z0-9]+", "-", " ".join(words).lower()).strip("-")
    return text[:width].strip("-") or "job"


def task_ids(jobs: list[Job], *, worker: str, source: str) -> list[str]:
    """One id per job line: worker, file, user, command, and the how-manieth line with that
    same user and command it is (two lines may run one command at two times)."""
    seen: dict[tuple, int] = {}
    ids = []
    for job in jobs:
        key = (job.user, job.command)
        nth = seen.get(key, 0)
        seen[key] = nth + 1
        digest = hashlib.sha256("\0".join([worker, source, job.user or "", job.command, str(nth)])
                                .encode()).hexdigest()
        ids.append(f"{ID_PREFIX}{worker}-{slug(job.command)}-{digest[:12]}")
    return ids


def task_doc(job: Job, *, task_id: str, worker: str, source: str, tz: str, first: datetime,
             catchup: str) -> dict:
    """The task of a job line; `first`: its first occurrence after now (the schedule math's)."""
    arguments = {"script": job.command, "shell": job.shell, "env": dict(job.env)}
    if job.user is not None:
        arguments["user"] = job.user
    doc = {
        "_id": task_id,
        "worker": worker,
        "status": "waiting",
        "date": format_date(first),
        "job": {"name": SHELL_JOB, "arguments": arguments},
        "repeat": {"cron": job.schedule, "tz": job.tz or tz},
        "catchup": catchup,
        "imported_from": {"crontab": source, "line": job.line, "text": job.text},
    }
    if job.random_delay_min:
        doc["jitter"] = f"{job.random_delay_min}m"
    return doc


# The fields the import owns: a task whose fields are these is the line, unchanged (its
# date is the worker's to move, its line number may shift when lines are added above it).
OWNED = ("worker", "job", "repeat", "catchup", "jitter")


def same_task(existing: dict, wanted: dict) -> bool:
    return (all(existing.get(k) == wanted.get(k) for k in OWNED)
            and (existing.get("imported_from") or {}).get("crontab") == wanted["imported_from"]["crontab"])


def changes(existing: dict, wanted: dict) -> list[str]:
    """What an update changes, in words: 'schedule 0 3 * * * -> 0 4 * * *'."""
    out = []
    old_rep, new_rep = existing.get("repeat") or {}, wanted["repeat"]
    if old_rep.get("cron") != new_rep["cron"]:
        out.append(f"schedule {old_rep.get('cron', old_rep or '-')} -> {new_rep['cron']}")
    if old_rep.get("tz") != new_rep.get("tz"):
        out.append(f"time zone {old_rep.get('tz')} -> {new_rep.get('tz')}")
    old_args = ((existing.get("job") or {}).get("arguments") or {})
    new_args = wanted["job"]["arguments"]
    if isinstance(old_args, dict):
        for key in ("shell", "user"):
            if old_args.get(key) != new_args.get(key):
                out.append(f"{key} {old_args.get(key)} -> {new_args.get(key)}")
        old_env, new_env = old_args.get("env") or {}, new_args["env"]
        names = sorted(k for k in old_env.keys() | new_env.keys() if old_env.get(k) != new_env.get(k))
        if names:
            out.append("environment " + ", ".join(names))
    for key in ("worker", "catchup", "jitter"):
        if existing.get(key) != wanted.get(key):
            out.append(f"{key} {existing.get(key)} -> {wanted.get(key)}")
    if (existing.get("job") or {}).get("name") != SHELL_JOB:
        out.append(f"job {(existing.get('job') or {}).get('name')} -> {SHELL_JOB}")
    return out or ["fields"]


FINAL = ("done", "error", "err", "canceled")


def updated(existing: dict, wanted: dict) -> dict:
    """The task rewritten to the line: the user's other fields and the worker's record kept;
    a task a worker holds is told to re-read it (reschedule), a paused one stays paused."""
    status = existing.get("status")
    if status in FINAL or status in ("waiting", "cancel"):
        new_status = "waiting"
    elif status in ("pause", "paused"):
        new_status = status
    else:
        new_status = "reschedule"
    doc = {**existing, **{k: v for k, v in wanted.items() if k != "_id"}, "status": new_status}
    if "jitter" not in wanted:
        doc.pop("jitter", None)
    if new_status == "waiting" and status != "waiting":
        for key in ("error", "result", "finished_at", "owner", "anchor", "occurrence", "attempts"):
            doc.pop(key, None)
    return doc


@dataclass(frozen=True)
class Step:
    """One line of the plan: create, update, same, cancel (gone from the file)."""
    kind: str
    task_id: str
    doc: dict | None           # what to write (None for same)
    job: Job | None
    detail: str = ""


def plan_import(crontab: Crontab, existing: dict[str, dict], imported: list[dict], *, worker: str,
                source: str, tz: str, now: datetime, next_date, catchup: str = "none") -> list[Step]:
    """What importing `crontab` does to the database: `existing` the documents with the
    wanted ids (missing ones absent), `imported` the tasks imported earlier from the same
    source for this worker; next_date(schedule, tz, now) the first occurrence after now.
    Raises nothing for a bad schedule: that line becomes a skip (returned in crontab.skipped)."""
    steps = []
    ids = task_ids(crontab.jobs, worker=worker, source=source)
    kept = []
    for job, task_id in zip(crontab.jobs, ids):
        try:
            first = next_date(job.schedule, job.tz or tz, now)
        except ValueError as e:
            crontab.skipped.append(Skipped(job.line, job.text, f"schedule {job.schedule!r}: {e}"))
            continue
        if first is None:
            crontab.skipped.append(Skipped(job.line, job.text, f"schedule {job.schedule!r} never comes"))
            continue
        kept.append(task_id)
        wanted = task_doc(job, task_id=task_id, worker=worker, source=source, tz=tz, first=first,
                          catchup=catchup)
        have = existing.get(task_id)
        if have is None or have.get("_deleted"):
            steps.append(Step("create", task_id, wanted, job))
        elif have.get("status") in ("cancel", "canceled"):
            # Its line was removed (or the task canceled) and is back: the task starts again.
            steps.append(Step("update", task_id, updated(have, wanted), job, f"was {have.get('status')}: starts again"))
        elif same_task(have, wanted):
            steps.append(Step("same", task_id, None, job))
        else:
            steps.append(Step("update", task_id, updated(have, wanted), job, "; ".join(changes(have, wanted))))
    crontab.skipped.sort(key=lambda s: s.line)
    for doc in sorted(imported, key=lambda d: d.get("_id", "")):
        if doc.get("_id") in kept or doc.get("status") in FINAL or doc.get("status") in ("cancel",):
            continue
        was = (doc.get("imported_from") or {})
        steps.append(Step("cancel", doc["_id"], {**doc, "status": "cancel"}, None,
                          f"no longer in the file (was line {was.get('line', '?')}: {was.get('text', '?')})"))
    return steps


def disabled(text: str, lines: set[int]) -> str:
    """The crontab with these job lines commented out for cron (MOVED before each), the
    rest as it was: what `after import crontab --print-disabled` prints for `crontab -`."""
    out = []
    for number, raw in enumerate(text.splitlines(keepends=True), start=1):
        out.append(MOVED + raw if number in lines and not raw.lstrip().startswith("#") else raw)
    return "".join(out)
