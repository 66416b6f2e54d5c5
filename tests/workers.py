"""Run `after start NAME` as a real process, as systemd or a user would, and watch it."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
ENGINE_JOBS = Path(__file__).resolve().parent / "engine_jobs"


class WorkerProcess:
    def __init__(self, name, couch_url, database, state_dir, jobs_dir=ENGINE_JOBS, env=None, log_path=None):
        self.name = name
        self.env = {**os.environ, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": database,
                    "AFTER_JOBS_DIR": str(jobs_dir), "AFTER_STATE_DIR": str(state_dir),
                    "AFTER_CONFIG": os.devnull, "PYTHONUNBUFFERED": "1",
                    # never into a node exporter folder this machine may have
                    "AFTER_METRICS_DIR": "none", **(env or {})}
        self.env.pop("NOTIFY_SOCKET", None)
        self.log_path = Path(log_path or Path(state_dir) / f"{name}-worker.log")
        self.proc = None
        self.starts = 0

    def start(self, wait_ready=True, timeout_s=30):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "afterd", "start", self.name],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ROOT)
        self.starts += 1
        if wait_ready:
            wait_for(lambda: self._ready(), timeout_s, f"worker {self.name} to be ready:\n{self.log_tail()}")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
        return "ready:" in self.log()[self._offset:]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=3000) -> str:
        return self.log()[-n:]

    def stop(self, timeout_s=60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self):
        """kill -9, and its zygote with it (as when systemd kills the whole unit)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def read_runs(record_dir) -> list[dict]:
    path = Path(record_dir) / "runs.jsonl"
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except ValueError:
            pass  # a line cut by a kill
    return runs


def starts_per_occurrence(record_dir) -> Counter:
    return Counter((r["task"], r["date"]) for r in read_runs(record_dir) if r["event"] == "start")
