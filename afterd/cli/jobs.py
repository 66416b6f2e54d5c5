"""`after jobs`: the job files in the jobs folder, and why any of them cannot run."""

from afterd.cli import UserError
from afterd.cli.show import print_table
from afterd.config import Settings
from afterd.exits import EXIT_FAILURE, EXIT_OK


def cmd_jobs(args, settings: Settings) -> int:
    found = job_report(settings.jobs_dir)
    if not found:
        print(f"no jobs in {settings.jobs_dir}")
        return EXIT_OK
    print_table(("JOB", "STATE"), found)
    return EXIT_OK if all(state == "ok" for _name, state in found) else EXIT_FAILURE


def job_report(jobs_dir) -> list[tuple[str, str]]:
    """(name, 'ok' or why it cannot run) for every job file in the folder (afterd/jobs.py)."""
    from pathlib import Path

    from afterd.jobs import job_names, job_state

    root = Path(jobs_dir)
    if not root.is_dir():
        raise UserError(f"jobs folder {root} does not exist (set jobs_dir or AFTER_JOBS_DIR)", EXIT_FAILURE)
    return [(name, job_state(root, name)) for name in job_names(root)]
