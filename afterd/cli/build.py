"""The document `after add` stores, built from its flags (pure: `now` is passed in).

Durations (--in, --every, --retry-delay...) are read by afterd/repeat.py's grammar; what
the database would refuse is refused here first, with the same rules (task.check_document).
"""

import json
import re
from datetime import datetime, timedelta, timezone

from afterd.cli import UserError, typed_input
from afterd.repeat import duration_delta, duration_value, parse_duration


# ---- dates -----------------------------------------------------------------------------------

DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")

def parse_at(text: str, tz_name: str | None) -> datetime:
    """A date from the command line: ISO 8601, a space allowed for T; no offset means UTC,
    or wall-clock time in tz_name when given."""
    from afterd.task import parse_date

    iso = text.strip().replace(" ", "T", 1)
    with typed_input():
        parsed = parse_date(iso, "--at")
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
        with typed_input():
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

def build_task(args, now: datetime, min_repeat_s: float | None = None) -> dict:
    """The document `after add` stores, from its flags (pure: `now` is passed in).
    `min_repeat_s`: the floor the database applies (the setting; None: its default)."""
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
        with typed_input():
            date = now + duration_delta(parse_duration(args.in_, "--in"))
    else:
        date = now
    doc = {"worker": args.worker, "date": date if isinstance(date, str) else format_date(date),
           "status": "waiting",
           "job": {"name": args.job, "arguments": arguments}}
    if args.id:
        doc["_id"] = args.id
    if args.every or args.rrule or args.cron:
        with typed_input():
            repeat = parse_duration(args.every, "--every") if args.every else {}
        if args.rrule:
            repeat["rrule"] = args.rrule
        if args.cron:
            repeat["cron"] = args.cron
        if args.tz:
            repeat["tz"] = args.tz
        doc["repeat"] = repeat
    if args.timeout is not None:
        doc["timeout"] = parse_timeout(args.timeout)
    doc.update(policy_fields(args))
    check_task(doc, min_repeat_s)
    return doc


# ---- the policy flags of `after add` ---------------------------------------------------------

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
    with typed_input():   # the order of the keys is the order of the flags in --help
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
    retry = retry_field(args)
    with typed_input():
        catchup_window = (duration_value(args.catchup_window, "--catchup-window")
                          if args.catchup_window is not None else None)
        jitter = duration_value(args.jitter, "--jitter") if args.jitter is not None else None
    fields = {"retry": retry, "catchup": args.catchup, "catchup_window": catchup_window,
              "overlap": args.overlap, "jitter": jitter, "history_limit": args.history_limit,
              "on_done": template_field(args.on_done_job, args.on_done_arguments, "--on-done"),
              "on_error": template_field(args.on_error_job, args.on_error_arguments, "--on-error")}
    return {key: value for key, value in fields.items() if value is not None}


def check_task(doc: dict, min_repeat_s: float | None = None) -> None:
    """Refuse here, with the same rules the database applies, what CouchDB would refuse."""
    from afterd.repeat import DEFAULT_MIN_REPEAT_S
    from afterd.task import check_document

    with typed_input():
        check_document(doc, DEFAULT_MIN_REPEAT_S if min_repeat_s is None else min_repeat_s)
