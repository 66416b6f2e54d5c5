"""Fixtures for the fault suite: real workers, a jobs folder with the hostile jobs, records."""

import shutil
from pathlib import Path

import pytest

from workers import ENGINE_JOBS, WorkerProcess

FAULT_JOBS = Path(__file__).resolve().parent / "jobs"


@pytest.fixture
def jobs_dir(tmp_path):
    """The engine's record job plus this suite's jobs, in a folder owned by us (trust checks)."""
    path = tmp_path / "jobs"
    path.mkdir(mode=0o755)
    for source in [ENGINE_JOBS / "record.py", *sorted(FAULT_JOBS.glob("*.py"))]:
        shutil.copy(source, path / source.name)
    return path


@pytest.fixture
def spawn(tmp_path, jobs_dir):
    """spawn(name, couch_url, database, state=..., **env) -> a WorkerProcess killed at teardown."""
    started = []

    def make(name, couch_url, database, state="state", **env):
        w = WorkerProcess(name, couch_url, database, tmp_path / state, jobs_dir=jobs_dir,
                          env={k.upper(): str(v) for k, v in env.items()})
        started.append(w)
        return w
    yield make
    for w in started:
        w.kill()
