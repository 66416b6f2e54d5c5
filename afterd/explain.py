"""Why a task is where it is, and what happens next, in plain sentences (pure: `now` is passed in).

`explain(doc, heartbeats, design, jobs, now)` reads the task document, the heartbeats of its
worker's processes (claims.py: `after:process:<worker>:<host>:<slot>`, each with its lease and
what it reports: `metrics.jobs_broken`, `metrics.jobs_failing`), the design document (None:
not installed) and, when known, the job files of this machine's jobs folder ({job: "ok" or why
not}, jobs.job_state; None: not looked at). What the worker will do is asked of the worker's
own rules, so the explanation cannot drift from it: decide.decide (what a process does with
this version), claims.lease_expired and claims.takeover (whether a process is alive; what a
live one does with a dead one's task), outcome.missed_fields (which missed occurrences the
catch-up policy skips).

`after explain ID` prints the sentences; the console's task page shows the same, built by
console-lib.mjs's explain(); tests/explain_cases.json holds the two equal.
"""

from __future__ import annotations

from datetime import datetime

from afterd import claims, decide
from afterd.fields import TaskError, parse_date
from afterd.outcome import missed_fields, skipped_note
from afterd.task import FINAL, normalize_status, parse_task

GRACE_S = 1.0   # outcome.missed_fields' default: a timer firing this late is on time


# ---- words ---------------------------------------------------------------------------------------

def span(seconds: float) -> str:
    """3 h 12 min, 4 s, 2 days: how long, to the unit a person reads (console-lib.mjs: span)."""
    s = int(max(0, seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    if minutes:
        return f"{minutes} min" + (f" {s} s" if s else "")
    return f"{s} s"


def at(value) -> str:
    """A document's date as the page shows it: '2026-12-07 03:00:00 UTC'."""
    d = date_or_none(value)
    return d.strftime("%Y-%m-%d %H:%M:%S UTC") if d else str(value)


def relative(value, now: datetime) -> str:
    d = date_or_none(value)
    if d is None:
        return "?"
    delta = (d - now).total_seconds()
    return f"in {span(delta)}" if delta >= 0 else f"{span(-delta)} ago"


def date_or_none(value) -> datetime | None:
    try:
        return parse_date(value)
    except (TaskError, TypeError, ValueError):
        return None


# ---- the processes -------------------------------------------------------------------------------

def alive(beat: dict | None, now: datetime) -> bool:
    """The process's lease holds now (no skew margin: what its owner itself believes)."""
    return beat is not None and not claims.lease_expired(beat, now, 0.0)


def process_of(beat: dict) -> str:
    return str(beat.get("_id", ""))[len(claims.HEARTBEAT_PREFIX):]


def gone_words(beat: dict, now: datetime) -> str:
    """'stopped 2 days ago' or 'stopped renewing its lease 5 min ago'."""
    if beat.get("stopped"):
        return f"stopped {relative(beat.get('expires_at') or beat.get('beat_at'), now)}"
    return f"stopped renewing its lease {relative(beat.get('beat_at'), now)}"


def no_live_process(worker: str, beats: list[dict], now: datetime) -> str:
    if not beats:
        return (f"no process of worker `{worker}` has a heartbeat in this database: none runs, or none "
                f"has run yet (after start {worker})")
    last = max(beats, key=lambda b: (str(b.get("beat_at", "")), str(b.get("_id", ""))))
    return (f"no live process of worker `{worker}` (the last one, on {last.get('host', '?')}, "
            f"{gone_words(last, now)})")


# ---- the sentences -------------------------------------------------------------------------------

def explain(doc: dict, heartbeats: list[dict], design: dict | None, jobs: dict | None,
            now: datetime) -> list[str]:
    """Sentences saying what the worker will do with the task and why (module docstring)."""
    worker = str(doc.get("worker"))
    beats = claims.heartbeats_of(worker, [b for b in heartbeats if isinstance(b, dict)])
    live = [b for b in beats if alive(b, now)]
    owner = claims.owner_of(doc)
    owner_beat = next((b for b in beats if process_of(b) == owner), None) if owner else None
    try:
        status = normalize_status(doc.get("status"))
    except TaskError as e:
        return [f"refused: {e}: a process of worker `{worker}` ends it as error"]
    out = []
    if design is None:
        out.append("this database has no _design/after: nothing validates its tasks, and no worker "
                   "(nor after init) has prepared it")
    if status in FINAL:
        out.append(final_sentence(doc, status))
        if status == "error":   # a failure may come from a job file that cannot be loaded
            out.extend(job_sentences(doc, beats, live, jobs))
        return out
    problem = unusable(doc)
    if problem is not None:
        out.append(f"refused: {problem}: a process of worker `{worker}` will end it as error")
        return out
    out.extend(status_sentences(doc, status, worker, beats, live, owner, owner_beat, now))
    out.extend(schedule_sentences(doc))
    out.extend(skipped_sentences(doc))
    out.extend(last_run_sentences(doc))
    out.extend(job_sentences(doc, beats, live, jobs))
    conflicts = doc.get("_conflicts")
    if isinstance(conflicts, list) and conflicts:
        out.append(f"the document has {len(conflicts)} conflicting revision{'s' if len(conflicts) != 1 else ''} "
                   "(copies on a cluster's nodes disagreed, or a write quorum was not reached): "
                   "the worker resolves them when it reads it")
    return out


def unusable(doc: dict) -> str | None:
    """Why a worker would refuse the document (task.parse_task), or None."""
    try:
        parse_task(doc)
    except TaskError as e:
        return str(e)
    return None


def final_sentence(doc: dict, status: str) -> str:
    ended = doc.get("finished_at")
    when = f" at {at(ended)}" if ended else ""
    if status == "done":
        runs = doc.get("runs")
        ran = f"it ran {runs} time{'s' if runs != 1 else ''} and " if isinstance(runs, int) and runs else ""
        return f"done{when}: {ran}will not run again"
    if status == "canceled":
        return f"canceled{when} by a user: it will not run again"
    err = doc.get("error") if isinstance(doc.get("error"), dict) else {}
    if err.get("type") == "InvalidTask":
        return f"refused{when}: {err.get('message')}"
    what = f"{err.get('type')}: {err.get('message')}" if err.get("type") else str(err.get("message", "no reason recorded"))
    return f"failed{when}: {what}; it will not run again"


ASKED = {"pause": "pause it", "resume": "resume it", "run": "run it now, once", "cancel": "cancel it",
         "reschedule": "move it to "}


def status_sentences(doc, status, worker, beats, live, owner, owner_beat, now) -> list[str]:
    date = doc.get("date")
    out = []
    # Who acts: the owner, when its lease holds; else any live process of the worker.
    if owner and alive(owner_beat, now):
        actor = owner_beat
        held = decide.Held(doc.get("_rev"), "running") if status == "running" else None
        action = decide.decide(doc, held, me=owner, worker=worker).kind
        where = f"on process {owner}, alive (lease renewed {relative(owner_beat.get('beat_at'), now)})"
    else:
        actor = live[0] if live else None
        action = decide.CLAIM
        if owner:
            takeover = claims.takeover(status, date_or_none(date) or now, owner_beat, None, now)
            action = decide.RECOVER if takeover == claims.INTERRUPTED else decide.CLAIM
        where = None
    if status == "paused":
        since = doc.get("paused_at")
        out.append(f"paused since {at(since)} ({relative(since, now)}) by a user: no process arms it "
                   f"until it is resumed (after resume ID)" if since else
                   "paused by a user: no process arms it until it is resumed (after resume ID)")
    elif status == "running":
        started = (doc.get("running") or {}).get("started_at") if isinstance(doc.get("running"), dict) else None
        started = started or doc.get("started_at")
        out.append(f"running since {at(started)} ({relative(started, now)})" + (f", {where}" if where else ""))
    elif status in ("pause", "resume", "run", "cancel", "reschedule"):
        wish = ASKED[status] + (at(date) if status == "reschedule" else "")
        out.append(f"a user asked to {wish}; " + (f"process {process_of(actor)} does so as it reads it"
                                                  if actor else "no process has done so yet"))
    elif status in ("scheduled", "waiting"):
        due = date_or_none(date)
        if due is not None and due > now:
            verb = "runs next" if where or actor else "due"
            out.append(f"{verb} at {at(date)} ({relative(date, now)})" + (f", {where}" if where else ""))
        else:
            out.append(f"was due at {at(date)} ({relative(date, now)})" + (f", {where}" if where else ""))
        if status == "waiting":
            out.append(f"waiting for a process of worker `{worker}` to take it" +
                       (f": {process_of(actor)} is alive" if actor else ""))
    # Whose hands it is in.
    if owner and not alive(owner_beat, now):
        if owner_beat is None:
            out.append(f"its process {owner} has no heartbeat any more")
        else:
            out.append(f"its process {owner} (on {owner_beat.get('host', '?')}) {gone_words(owner_beat, now)}")
    if not live:
        out.append(no_live_process(worker, beats, now))
    elif owner and not alive(owner_beat, now):
        out.append(f"process {process_of(actor)} of worker `{worker}` is alive: it takes the task over")
    # What the acting process does, by the worker's rules.
    if action == decide.RECOVER and not (owner and alive(owner_beat, now)):
        # claims.takeover: the run may have begun before the lease ended; nobody knows how it went.
        out.append("its run may have begun before its process went away: the process that takes it "
                   "over ends that run as error (Interrupted), or runs it again if its retry allows")
    elif status in ("scheduled", "waiting", "resume") and action in (decide.ARM, decide.CLAIM):
        skip = missed_fields(doc, now, GRACE_S if status != "resume" else 0.0)
        due = date_or_none(date)
        note = skipped_note(doc, skip, now) if skip is not None else None
        if note is not None:
            why = note["why"]
            out.append(f"its date passed {span((now - due).total_seconds())} ago with no run: {why}, so "
                       f"the process that arms it skips the missed occurrences and waits for the next")
        elif due is not None and due <= now and (actor or status == "waiting"):
            out.append("it runs as soon as a process of its worker arms it")
    return out


def schedule_sentences(doc: dict) -> list[str]:
    """A cron repeat in words (cron.describe; the page's cronWords says the same)."""
    from afterd import cron

    rep = doc.get("repeat")
    if not isinstance(rep, dict) or not isinstance(rep.get("cron"), str):
        return []
    try:
        return [f"it repeats {cron.describe(rep['cron'], rep.get('tz'))} ({rep['cron']})"]
    except cron.CronError:
        return []


def skipped_sentences(doc: dict) -> list[str]:
    """The worker's note of occurrences it skipped (outcome.skipped_note), unless a run came since."""
    note = doc.get("skipped")
    if not isinstance(note, dict) or date_or_none(note.get("at")) is None:
        return []
    history = doc.get("history") if isinstance(doc.get("history"), list) else []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    if date_or_none(last.get("start")) and date_or_none(last["start"]) > date_or_none(note["at"]):
        return []
    first, count = note.get("first"), note.get("count")
    down = span((date_or_none(note["at"]) - date_or_none(first)).total_seconds()) if date_or_none(first) else "?"
    what = (f"the {at(first)} occurrence was" if count == 1 else
            f"{count} occurrences from {at(first)} were")
    return [f"{what} skipped at {at(note['at'])}: {note.get('why')} after {down} of downtime"]


def last_run_sentences(doc: dict) -> list[str]:
    history = doc.get("history") if isinstance(doc.get("history"), list) else []
    last = history[-1] if history and isinstance(history[-1], dict) else None
    if last is None or last.get("status") in (None, "done"):
        return []
    err = last.get("error") if isinstance(last.get("error"), dict) else {}
    what = f"{err.get('type')}: {err.get('message')}" if err.get("type") else str(err.get("message", ""))
    return [f"its last run (started {at(last.get('start'))}) ended {last.get('status')}" +
            (f": {what}" if what else "")]


def job_sentences(doc: dict, beats: list[dict], live: list[dict], jobs: dict | None) -> list[str]:
    job = (doc.get("job") or {}).get("name") if isinstance(doc.get("job"), dict) else None
    out = []
    latest = sorted(beats, key=lambda b: (str(b.get("beat_at", "")), str(b.get("_id", ""))))[-1:]
    for beat in (live or latest):
        metrics = beat.get("metrics") if isinstance(beat.get("metrics"), dict) else {}
        broken = metrics.get("jobs_broken") if isinstance(metrics.get("jobs_broken"), dict) else {}
        failing = metrics.get("jobs_failing") if isinstance(metrics.get("jobs_failing"), list) else []
        host = beat.get("host", "?")
        if job in broken:
            out.append(f"job `{job}` cannot be loaded on {host}: {broken[job]} (reported by its heartbeat)")
        elif job in failing:
            out.append(f"job `{job}` could not be loaded by its latest run on {host} (reported by its heartbeat)")
    if jobs is not None:
        state = jobs.get(job)
        if state is None:
            out.append(f"there is no job `{job}` in this machine's jobs folder")
        elif state != "ok":
            out.append(f"in this machine's jobs folder, job `{job}` cannot run: {state}")
    return out


def sentence(text: str) -> str:
    """As printed: a capital and a full stop (console-lib.mjs: sentence)."""
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else text
