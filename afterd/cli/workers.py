"""The commands about workers and their database: start, stop, log, list, clean, init, console."""

import sys

from afterd import daemon
from afterd.cli import UserError, open_couch, settings_flags
from afterd.cli.show import print_table
from afterd.config import Settings, mask_url
from afterd.exits import EXIT_FAILURE, EXIT_OK


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
    from afterd.design import design_doc
    from afterd.repeat import number_text
    installed = couch.ensure_design(design_doc(settings.min_repeat_s))
    print("installed the design document _design/after (validation, views)" if installed
          else "the design document _design/after is up to date")
    print(f"tasks may repeat at most once every {number_text(settings.min_repeat_s)} s (min_repeat_s)")
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

    couch.put_security(console_security())   # TASKS_ROLE acts, the console's read-only role reads


def cmd_console(args, settings: Settings) -> int:
    from afterd.console.serve import serve

    return serve(settings.couchdb_url, settings.database, host=args.host, port=args.port)
