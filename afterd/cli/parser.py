"""The `after` parser: every command, its flags and its help (packaging/after.1 follows it:
tests/test_cli.py checks that the man page names every command and flag)."""

import argparse

from afterd import __version__
from afterd.cli import PROG, settings_parent
from afterd.cli.build import json_arg, text_arg
from afterd.cli.cronimport import cmd_import_crontab
from afterd.cli.explain import cmd_explain
from afterd.cli.jobs import cmd_jobs
from afterd.cli.tasks import (cmd_add, cmd_cancel, cmd_history, cmd_next, cmd_pause, cmd_reschedule, cmd_resume,
                              cmd_run, cmd_show, cmd_tasks)
from afterd.cli.workers import cmd_clean, cmd_console, cmd_init, cmd_list, cmd_log, cmd_start, cmd_stop
from afterd.repeat import DURATION_HELP


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
    # --every, --rrule and --cron exclude each other: the repeat's own rules refuse a pair in
    # one line (an argparse group would print its usage too).
    p.add_argument("--every", metavar="DURATION", help=f"repeat: {DURATION_HELP}")
    p.add_argument("--rrule", metavar="RULE", help='repeat by an RFC 5545 rule, e.g. "FREQ=DAILY;BYHOUR=3"')
    p.add_argument("--cron", metavar="EXPR",
                     help='repeat by a cron expression, e.g. "0 3 * * 1-5" (first run: its first match at or '
                          "after the date), in --tz wall-clock time")
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

    p = command("next", cmd_next, "the task's next runs, as its worker will start them",
                "The task's next runs, as its worker will start them: its first date or cron match, "
                "jitter, catch-up of missed occurrences, overlap, until and count applied (each run "
                "taken to end as it starts). A paused task: the runs that would follow a resume now.")
    p.add_argument("id", metavar="ID")
    p.add_argument("-n", "--count", type=int, default=5, metavar="N", help="how many (default 5, at most 1000)")

    p = command("history", cmd_history, "the task's last runs, as a table")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="the history entries as JSON instead")
    p.add_argument("--output", action="store_true",
                   help="and below the table, what each run wrote (the last output_limit bytes kept)")

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
    p = command("explain", cmd_explain, "why a task is where it is, and what its worker does next, in sentences",
                "Say in sentences what the task's worker will do with it and why: when it runs next and on "
                "which process, whether that process is alive, a pause, a refusal, a job that cannot be "
                "loaded (from the processes' heartbeats and this machine's jobs folder), skipped occurrences.")
    p.add_argument("id", metavar="ID")
    add_import(sub, parent)
    return parser


def add_import(sub, parent) -> None:
    """`after import crontab`: a crontab's lines as tasks of the shell job."""
    p = sub.add_parser("import", parents=[parent], help="bring schedules from elsewhere: after import crontab",
                       description="Bring schedules from elsewhere into tasks.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    p = kinds.add_parser("crontab", parents=[parent], help="a crontab's lines as tasks of the shell job",
                         description="Read a user crontab (crontab -l | after import crontab - --worker W) or a "
                                     "system one (/etc/crontab, /etc/cron.d/*: with a user field) and print the "
                                     "tasks it would create, update or cancel; --apply writes them. Importing the "
                                     "same file again changes nothing; a line's task keeps its id when its "
                                     "schedule is edited. @reboot and commands with an unescaped % are listed, "
                                     "not imported.")
    p.set_defaults(func=cmd_import_crontab)
    p.add_argument("file", metavar="FILE", nargs="?", default="-", help="the crontab file, or - for stdin (default)")
    p.add_argument("--worker", required=True, help="the worker that runs the tasks")
    p.add_argument("--apply", action="store_true", help="write the tasks (without it nothing is written)")
    p.add_argument("--user", metavar="NAME",
                   help="run a user crontab's lines as NAME (needs a worker running as root); default: the "
                        "worker's user. A system crontab's lines run as their user field")
    p.add_argument("--system", action="store_true",
                   help="the file has a user field after the schedule (automatic for /etc/crontab and /etc/cron.d/*)")
    p.add_argument("--tz", metavar="ZONE", help="the time zone of the schedules (default: this machine's; "
                                                 "CRON_TZ lines override it)")
    p.add_argument("--catchup", choices=("none", "one", "all"), default="none",
                   help="runs missed while no worker ran: none, as cron (default), one, or all")
    p.add_argument("--print-disabled", action="store_true",
                   help="print the crontab with the lines already imported commented out ('# after: ' before "
                        "each: cron skips them, the import still reads them), for `| crontab -`; writes nothing")
    p.add_argument("--source", metavar="NAME",
                   help="the name the tasks remember their file by (default: the file's path; "
                        "'user crontab' for stdin): importing under the same name updates them")


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

