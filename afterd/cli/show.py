"""How the command shows things: tables, a task's policies in words, its history's rows."""

import json

from afterd.cli import UserError
from afterd.exits import EXIT_FAILURE


def print_table(header, rows) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def job_name(doc: dict) -> str:
    job = doc.get("job")
    return str(job.get("name")) if isinstance(job, dict) else "?"


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
    rows = [("repeat", repeat_words(doc["repeat"]))] if doc.get("repeat") is not None else []
    rows += [("retry", retry_text), ("catchup", f"{policy.catchup}: {catchup}{window}"),
            ("overlap", f"{policy.overlap}: {overlap}"),
            ("jitter", f"up to {seconds_text(policy.jitter_s)}" if policy.jitter_s else "none"),
            ("history_limit", str(limit) if limit is not None else "the worker's (default 20)")]
    for name in ("on_done", "on_error"):
        template = getattr(policy, name)
        rows.append((name, "-" if template is None else
                     f"job {template.job_name} {json.dumps(template.arguments)}"
                     + (f" on worker {template.worker}" if template.worker else "")))
    return rows


def repeat_words(repeat) -> str:
    """A cron repeat in words ("at 03:00 on Monday to Friday, Lisbon time"); others as
    `after add --every` takes them ("1M7d (Europe/Lisbon)"); until and count after."""
    from afterd.cron import CronError, describe
    from afterd.repeat import repeat_text

    if not isinstance(repeat, dict):
        return repeat_text(repeat)
    text = repeat_text(repeat)
    if isinstance(repeat.get("cron"), str):
        try:
            text = f"{describe(repeat['cron'], repeat.get('tz'))} (cron {repeat['cron']})"
        except CronError:
            pass
    if repeat.get("until") is not None:
        text += f", until {repeat['until']}"
    if repeat.get("count") is not None:
        text += f", {repeat['count']} runs in all"
    return text


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
