"""What a worker process did and how it is doing, for Prometheus and the heartbeat (design §8b).

No port of our own: every few seconds, and at stop, the process writes its metrics
in Prometheus text format into the node exporter's textfile folder
(Debian: /var/lib/prometheus/node-exporter, setting `metrics_dir`), which the node
exporter serves with the host's own metrics. Nothing is written when that folder
does not exist. The file is replaced atomically (a temporary file in the same
folder, then rename), so the node exporter never reads half of it.

`Metrics` is fed by the worker loop only (one thread): counters and histograms by
`run_ended()`, CouchDB health by `problem()`/`couchdb_answered()`, and the gauges
that describe the state at one instant by `set_state()` just before each write.
Every time is passed in (`now_s` epoch, `now_m` monotonic). `render()` is pure.
The heartbeat thread reads `heartbeat_fields()`: a copy of the counters.

docs/metrics.md lists each metric.
"""

import logging
import math
import os
from pathlib import Path

log = logging.getLogger("after.metrics")

OUTCOMES = ("done", "error", "timeout", "interrupted", "canceled")
# Seconds, from a fork-ahead start's lateness (tenths of a millisecond) and a no-op job
# (about a millisecond) to a nightly batch (hours).
BUCKETS_S = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
WRITE_EVERY_S = 5.0
# Error types meaning the job's module could not be loaded: no code of the job ran.
LOAD_ERRORS = frozenset({"JobNotFound", "JobRefused", "SyntaxError"})
# Error types meaning the run's end is unknown (the process running it died).
INTERRUPTED_ERRORS = frozenset({"Interrupted", "Lost"})
# The worker's problem sources that are CouchDB requests failing (notify STATUS keeps the same).
COUCH_SOURCES = ("feed", "writer", "lease")


def outcome_kind(ok: bool, error_type: str | None, canceled: bool = False) -> str:
    """The outcome label of a run: done, error, timeout, interrupted or canceled."""
    if canceled or error_type == "Canceled":
        return "canceled"
    if ok:
        return "done"
    if error_type == "Timeout":
        return "timeout"
    if error_type in INTERRUPTED_ERRORS:
        return "interrupted"
    return "error"


class Histogram:
    """Cumulative buckets as Prometheus wants them: counts[i] = observations <= BUCKETS_S[i]."""

    __slots__ = ("counts", "count", "sum")

    def __init__(self):
        self.counts = [0] * len(BUCKETS_S)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float):
        value = max(0.0, float(value))
        self.count += 1
        self.sum += value
        for i, bound in enumerate(BUCKETS_S):
            if value <= bound:
                self.counts[i] += 1


class Metrics:
    def __init__(self, folder, *, worker: str, host: str, slot: int, started_s: float, now_m: float):
        self.folder = Path(folder) if folder else None
        self.worker, self.host, self.slot = worker, host, slot
        self.started_s = started_s
        self.runs = {kind: 0 for kind in OUTCOMES}   # every key exists: a reader's copy never races a resize
        self.duration = Histogram()
        self.lateness = Histogram()
        # Replaced, never changed in place: the heartbeat thread reads it while the loop runs.
        self.failing_jobs: frozenset[str] = frozenset()
        self._problems: set[str] = set()
        self._last_good_m = now_m          # start-up talked to CouchDB before we exist
        self._feed_down_since_m: float | None = None
        self.up = 1
        self.state: dict = {}              # gauges of one instant, from set_state()
        self._next_write_m = 0.0
        self._warned = False
        self._swept = False

    # -- fed by the worker loop ---------------------------------------------------------

    def run_ended(self, kind: str, duration_s: float | None = None, lateness_s: float | None = None,
                  job: str | None = None, error_type: str | None = None):
        """A run is over (kind: one of OUTCOMES); None for what is not known."""
        self.runs[kind if kind in self.runs else "error"] += 1
        if duration_s is not None:
            self.duration.observe(duration_s)
        if lateness_s is not None:
            self.lateness.observe(lateness_s)
        if job:
            if error_type in LOAD_ERRORS:
                self.failing_jobs = self.failing_jobs | {job}
            elif kind != "interrupted" and job in self.failing_jobs:
                self.failing_jobs = self.failing_jobs - {job}   # it loaded this time

    def problem(self, source: str, bad: bool, now_m: float):
        """The worker's problem `source` started (bad) or ended; CouchDB ones count for couchdb_up."""
        if source not in COUCH_SOURCES:
            return
        if bad:
            self._problems.add(source)
            if source == "feed" and self._feed_down_since_m is None:
                self._feed_down_since_m = now_m
        else:
            self._problems.discard(source)
            if source == "feed":
                self._feed_down_since_m = None
            self._last_good_m = now_m

    def couchdb_answered(self, now_m: float):
        """A request to CouchDB succeeded (the heartbeat's renewal, every lease_s / 4)."""
        self._last_good_m = now_m

    def set_state(self, *, now_s: float, now_m: float, scheduled: int, running: int, held: int,
                  next_due_s: float | None, lease_until_m: float | None, journal_pending: int):
        """The gauges of this instant (called just before a write)."""
        self.state = {
            "now_s": now_s,
            "scheduled": scheduled, "running": running, "other": max(0, held - scheduled - running),
            "next_due_s": next_due_s,
            "feed_lag_s": 0.0 if self._feed_down_since_m is None else max(0.0, now_m - self._feed_down_since_m),
            "couchdb_up": 0 if self._problems else 1,
            "since_good_s": max(0.0, now_m - self._last_good_m),
            "lease_remaining_s": (lease_until_m - now_m) if lease_until_m is not None else 0.0,
            "journal_pending": journal_pending,
        }

    def heartbeat_fields(self) -> dict:
        """The counters, compact, for the heartbeat document (read from the heartbeat thread)."""
        fields = {"runs": dict(self.runs), "run_s": round(self.duration.sum, 3),
                  "late_s": round(self.lateness.sum, 3)}
        if self.failing_jobs:
            fields["jobs_failing"] = sorted(self.failing_jobs)
        return fields

    # -- the file -------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"after_{self.worker}_{self.slot}.prom"

    def due(self, now_m: float) -> bool:
        return now_m >= self._next_write_m

    def write(self, now_m: float) -> Path | None:
        """Replace our file in the folder (if the folder exists); the path written, or None."""
        self._next_write_m = now_m + WRITE_EVERY_S
        path = self.path
        if path is None or not self.folder.is_dir():
            return None   # no node exporter here: create nothing
        text = render(self, self.worker, self.host, slot=self.slot)
        if not self._swept:
            self._swept = True
            # Temporaries of a predecessor in this slot killed between write and rename.
            for stale in self.folder.glob(f".{path.name}.*.tmp"):
                try:
                    stale.unlink()
                except OSError:
                    pass
        try:
            write_atomic(path, text)
        except OSError as e:
            if not self._warned:   # once: it would say the same every few seconds
                log.warning("cannot write metrics to %s: %s", path, e.strerror or e)
                self._warned = True
            return None
        self._warned = False
        return path


def write_atomic(path: Path, text: str):
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")   # not *.prom: never read by the exporter
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)   # the node exporter runs as another user
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


# -- rendering ---------------------------------------------------------------------------

def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(base: dict, **more) -> str:
    items = {**base, **more}
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items.items()) + "}"


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _bound(bound: float) -> str:
    return repr(float(bound))   # "0.001", "1.0", "3600.0", as the Prometheus clients write `le`


def render(metrics: Metrics, worker: str, host: str, slot: int | None = None) -> str:
    """The Prometheus text exposition (format 0.0.4) of `metrics` (pure)."""
    base = {"worker": worker, "host": host}
    if slot is not None:
        base["slot"] = slot   # two processes of one worker on one host: two distinct series
    out: list[str] = []

    def family(name, kind, help_text, samples):
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            out.append(f"{name}{suffix}{_labels(base, **labels)} {_number(value)}")

    def histogram(name, help_text, h: Histogram):
        samples = [("_bucket", {"le": _bound(b)}, c) for b, c in zip(BUCKETS_S, h.counts)]
        samples += [("_bucket", {"le": "+Inf"}, h.count), ("_sum", {}, float(h.sum)), ("_count", {}, h.count)]
        family(name, "histogram", help_text, samples)

    st = metrics.state
    family("after_up", "gauge", "1 while the worker process runs, 0 once it stopped cleanly",
           [("", {}, metrics.up)])
    family("after_start_time_seconds", "gauge", "when this worker process started (Unix time)",
           [("", {}, float(metrics.started_s))])
    if "now_s" in st:
        family("after_metrics_updated_seconds", "gauge", "when this file was written (Unix time)",
               [("", {}, float(st["now_s"]))])
    family("after_runs_total", "counter", "runs that ended, by outcome",
           [("", {"outcome": kind}, metrics.runs[kind]) for kind in OUTCOMES])
    histogram("after_run_duration_seconds", "how long runs took, from the job's start to its end",
              metrics.duration)
    histogram("after_run_lateness_seconds", "how late runs started after their date (queued_ms)",
              metrics.lateness)
    if st:
        family("after_tasks", "gauge", "tasks held by this process, by status",
               [("", {"status": s}, st[s]) for s in ("scheduled", "running", "other")])
        if st["next_due_s"] is not None:
            family("after_next_due_seconds", "gauge", "date of the next armed task (Unix time)",
                   [("", {}, float(st["next_due_s"]))])
        family("after_feed_lag_seconds", "gauge",
               "0 while the change feed follows CouchDB; else seconds since it last did",
               [("", {}, float(st["feed_lag_s"]))])
        family("after_couchdb_up", "gauge", "1 when the last requests to CouchDB succeeded, else 0",
               [("", {}, st["couchdb_up"])])
        family("after_couchdb_last_success_age_seconds", "gauge",
               "seconds since a request to CouchDB last succeeded",
               [("", {}, float(st["since_good_s"]))])
        family("after_lease_remaining_seconds", "gauge",
               "seconds this process may still start runs before its lease must be renewed",
               [("", {}, float(st["lease_remaining_s"]))])
        family("after_journal_pending_writes", "gauge",
               "run outcomes in the journal that CouchDB does not have yet",
               [("", {}, st["journal_pending"])])
    family("after_jobs_failing_to_load", "gauge",
           "jobs whose latest run could not load their module (missing, refused, syntax error)",
           [("", {}, len(metrics.failing_jobs))])
    return "\n".join(out) + "\n"
