"""Settings: built-in defaults < /etc/after/after.conf (TOML) < environment < flags.

The file and the environment use the field names of `Settings` (the environment
upper-cased with an `AFTER_` prefix: `AFTER_COUCHDB_URL`, `AFTER_LEASE_S`, ...).
`AFTER_CONFIG` names another file; a missing default file is fine, a missing
file named on purpose is an error.

`state_dir` is a base folder shared by all workers of this machine; each worker
keeps its own files in `worker_state_dir(settings, name)` (= state_dir / name).

Errors are one line and never show a password: URLs are masked before they are
ever put into a message.
"""

import os
import re
import socket
import tomllib
import urllib.parse
from dataclasses import dataclass, fields, replace
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("/etc/after/after.conf")
LOG_LEVELS = ("debug", "info", "warning", "error")
# CouchDB's rule for database names.
DATABASE_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
# Bounds of the worker-wide history settings: a task's own `history_limit` has the same
# top (afterd/policy.py); an output tail of more than 1 MiB a run is a log, not a tail.
MAX_HISTORY_LIMIT = 1000
MAX_OUTPUT_LIMIT = 1024 * 1024


class ConfigError(ValueError):
    """A setting is wrong; str(e) is one line a person can act on, without passwords."""


@dataclass(frozen=True)
class Settings:
    couchdb_url: str = "http://127.0.0.1:5984"   # may carry user:password
    database: str = "tasks"
    jobs_dir: Path = Path("/usr/local/etc/after")
    state_dir: Path = Path("/var/lib/after")      # base folder; see worker_state_dir()
    concurrency: int = 1
    default_timeout_s: float | None = None
    lease_s: float = 60.0
    skew_margin_s: float = 5.0
    kill_grace_s: float = 10.0
    stop_grace_s: float = 30.0
    memory_limit_mb: int | None = None           # address space of each job's process
    # A run's output (stdout and stderr): the last output_limit bytes are kept with its
    # history entry, as an attachment of the task (0: none); the whole goes to the log.
    output_limit: int = 4096
    history_limit: int = 20                      # runs in `history` when a task sets none
    # The database's floor on how often a task may repeat: a repeat whose runs may come
    # closer is refused at the door (each run writes the task twice). `after init`
    # writes it into the design document, so CouchDB enforces it (a worker keeps the
    # floor it finds there). 0: no floor.
    min_repeat_s: float = 1.0
    log_level: str = "info"
    host: str = ""
    # The node exporter's textfile folder (Debian's default); metrics are written only
    # when it exists. "none" (or "") turns them off.
    metrics_dir: Path | None = Path("/var/lib/prometheus/node-exporter")

    def __repr__(self):
        # Settings end up in debug logs and test failures: never show the password.
        shown = ", ".join(
            f"{f.name}={mask_url(self.couchdb_url) if f.name == 'couchdb_url' else getattr(self, f.name)!r}"
            for f in fields(self))
        return f"Settings({shown})"

    @property
    def safe_couchdb_url(self) -> str:
        return mask_url(self.couchdb_url)

    @property
    def memory_limit_bytes(self) -> int | None:
        return self.memory_limit_mb * 1024 * 1024 if self.memory_limit_mb else None


FIELD_NAMES = tuple(f.name for f in fields(Settings))


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, for display."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if _port_or_none(parts) else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _port_or_none(parts):
    try:
        return parts.port
    except ValueError:
        return None


def worker_state_dir(settings: Settings, name: str) -> Path:
    """Where worker NAME keeps its files (checkpoint, journal)."""
    return settings.state_dir / name


def default_state_dir(env=os.environ) -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/after")
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "after"


def defaults(env=os.environ) -> Settings:
    return Settings(state_dir=default_state_dir(env), concurrency=os.cpu_count() or 1,
                    host=socket.gethostname())


# ---- checking one value ---------------------------------------------------------------

def _check(name: str, value, source: str):
    """Return `value` converted to the field's type; raise ConfigError naming source and key.

    `value` is a str when it comes from the environment or a flag, a TOML value from the file.
    """
    where = f"{source}: {name}"
    from_text = isinstance(value, str)
    if name == "couchdb_url":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string (a URL like http://127.0.0.1:5984)")
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or _bad_port(parts):
            raise ConfigError(f"{where} must be an http(s) URL like http://user:password@127.0.0.1:5984, "
                              f"not {mask_url(value)!r}")
        return value.strip().rstrip("/")
    if name == "database":
        if not isinstance(value, str) or not DATABASE_NAME.match(value):
            raise ConfigError(f"{where} must be a CouchDB database name "
                              "(lowercase letter, then lowercase letters, digits, _$()+-/)")
        return value
    if name == "metrics_dir":
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a folder path (a string), or \"none\" for no metrics")
        return Path(value).expanduser()
    if name in ("jobs_dir", "state_dir"):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where} must be a folder path (a string)")
        return Path(value).expanduser()
    if name == "concurrency":
        number = _number(value, where, integer=True)
        if number < 1:
            raise ConfigError(f"{where} must be at least 1, not {number}")
        return number
    if name == "min_repeat_s":
        number = _number(value, where)
        if not 0 <= number <= 86400:
            raise ConfigError(f"{where} must be a number of seconds from 0 to 86400, not {number}")
        return number
    if name in ("default_timeout_s", "lease_s", "skew_margin_s", "kill_grace_s", "stop_grace_s"):
        if name == "default_timeout_s" and from_text and value.strip().lower() in ("", "none"):
            return None
        number = _number(value, where)
        if number < 0 or (number == 0 and name in ("default_timeout_s", "lease_s")):
            raise ConfigError(f"{where} must be a positive number of seconds, not {number}")
        return number
    if name == "memory_limit_mb":
        if from_text and value.strip().lower() in ("", "none"):
            return None
        number = _number(value, where, integer=True)
        if number < 1:
            raise ConfigError(f"{where} must be a whole number of megabytes (at least 1), not {number}")
        return number
    if name in ("output_limit", "history_limit"):
        number = _number(value, where, integer=True)
        top = MAX_OUTPUT_LIMIT if name == "output_limit" else MAX_HISTORY_LIMIT
        if not 0 <= number <= top:
            raise ConfigError(f"{where} must be a whole number from 0 to {top}, not {number}")
        return number
    if name == "log_level":
        if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
            raise ConfigError(f"{where} must be one of {', '.join(LOG_LEVELS)}")
        return value.lower()
    if name == "host":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a non-empty string")
        return value
    raise ConfigError(f"{source}: unknown setting {name!r} (known: {', '.join(FIELD_NAMES)})")


def _bad_port(parts) -> bool:
    try:
        parts.port
    except ValueError:
        return True
    return False


def _number(value, where, integer=False):
    if isinstance(value, bool):   # TOML `true` is an int subclass in Python: refuse it
        raise ConfigError(f"{where} must be a number, not a boolean")
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise ConfigError(f"{where} must be {kind}, not {value!r}") from None
    if integer and not isinstance(value, int):
        raise ConfigError(f"{where} must be a whole number")
    if not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number")
    return value if integer else float(value)


# ---- the layers -------------------------------------------------------------------------

def read_config_file(path: Path, required: bool) -> dict:
    """The settings in a TOML file, checked; {} when an optional file is absent."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: no such file (named by AFTER_CONFIG)") from None
        return {}
    except tomllib.TOMLDecodeError as e:
        # The message carries "(at line N, column M)"; it never quotes the offending text.
        raise ConfigError(f"{path}: malformed TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return {key: _check(key, value, str(path)) for key, value in data.items()}


def env_values(env) -> dict:
    values = {}
    for name in FIELD_NAMES:
        text = env.get("AFTER_" + name.upper())
        if text is not None and (text != "" or name in ("default_timeout_s", "memory_limit_mb", "metrics_dir")):
            values[name] = _check(name, text, "AFTER_" + name.upper())
    return values


def flag_values(flags: dict) -> dict:
    values = {}
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        values[name] = _check(name, value, "--" + name.replace("_", "-"))
    return values


def config_path(env=os.environ) -> tuple[Path, bool]:
    """The file to read and whether it must exist."""
    named = env.get("AFTER_CONFIG")
    if named:
        return Path(named), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(flags: dict | None = None, env=os.environ) -> Settings:
    """Settings from every layer, highest last; raises ConfigError (one line, no password)."""
    path, required = config_path(env)
    settings = defaults(env)
    for layer in (read_config_file(path, required), env_values(env), flag_values(flags or {})):
        settings = replace(settings, **layer)
    return settings
