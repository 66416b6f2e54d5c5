"""`after explain ID`: why the task is where it is and what its worker does next (afterd/explain.py)."""

from afterd.cli import UserError, open_couch
from afterd.config import Settings
from afterd.exits import EXIT_FAILURE, EXIT_OK


def cmd_explain(args, settings: Settings) -> int:
    from afterd import clock
    from afterd.claims import heartbeat_prefix
    from afterd.couch import NotFound
    from afterd.design import DESIGN_ID
    from afterd.explain import explain, sentence

    couch = open_couch(settings)
    doc = couch.get_conflicted(args.id)
    if doc is None:
        raise UserError(f"no task with id {args.id!r} in database {couch.database}", EXIT_FAILURE)
    worker = doc.get("worker")
    beats = couch.docs_with_prefix(heartbeat_prefix(worker)) if isinstance(worker, str) else []
    try:
        design = couch.get(DESIGN_ID)
    except NotFound:
        design = None
    lines = explain(doc, beats, design, local_jobs(settings.jobs_dir), clock.now())
    job = doc.get("job", {}).get("name") if isinstance(doc.get("job"), dict) else None
    print(f"task {args.id} (job {job}, worker {worker}, status {doc.get('status')}):")
    for line in lines:
        print("  " + sentence(line))
    return EXIT_OK


def local_jobs(jobs_dir) -> dict | None:
    """{job: 'ok' or why not} of this machine's jobs folder; None when there is none here."""
    import os

    from afterd.jobs import job_names, job_state

    if not os.path.isdir(jobs_dir):
        return None
    return {name: job_state(jobs_dir, name) for name in job_names(jobs_dir)}
