"""The `after` command (design §6): run and manage workers, and handle tasks without hand-written JSON.

Every error ends the command with one line on stderr and a named exit code, never a
traceback, never a password. This module reads the settings flags, runs the command and
reports its errors; the commands live beside it:

- parser.py: the argparse parser, every command and flag;
- workers.py: start, stop, log, list, clean, init, console (workers and the database);
- tasks.py: add, tasks, show, history, cancel, reschedule, pause, resume, run;
- build.py: the document `after add` stores, from its flags (pure);
- show.py: tables, policies in words, history rows;
- jobs.py: `after jobs`.

The duration grammar (--in, --every, --retry-delay...) is afterd/repeat.py's.
"""

import argparse
import sys
from contextlib import contextmanager

from afterd import daemon
from afterd.config import ConfigError, Settings, load_settings
from afterd.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_NOPERM, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE

PROG = "after"


class UserError(Exception):
    """Bad input from the command line: one line, exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


@contextmanager
def typed_input():
    """A TaskError from the pure modules about what the user typed (a duration, a date, a
    document CouchDB would refuse) becomes the command's one-line usage error."""
    from afterd.fields import TaskError

    try:
        yield
    except TaskError as e:
        raise UserError(str(e)) from None


def open_couch(settings: Settings):
    from afterd.couch import Couch

    return Couch(settings.couchdb_url, settings.database)


# ---- settings flags: on the main parser and every command ------------------------------------

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


def settings_flags(args) -> list[str]:
    """The settings flags of this command line, handed on to the background worker."""
    argv = []
    for flag, dest in SETTINGS_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            argv += [flag, str(value)]
    return argv


def flags_from(args) -> dict:
    return {dest: getattr(args, dest) for _flag, dest in SETTINGS_FLAGS if hasattr(args, dest)}


# ---- running a command, reporting its error --------------------------------------------------

def main(argv=None) -> int:
    # Here, not at the top: the command modules import this one (UserError, PROG).
    from afterd.cli.parser import build_parser

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


def report(message: str, code: int) -> int:
    """Success goes to stdout; a refusal is an error line on stderr."""
    if code == EXIT_OK:
        print(message)
    else:
        print(f"{PROG}: {message}", file=sys.stderr)
    return code
