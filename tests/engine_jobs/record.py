"""Test job: records when it ran, by the job's own clock, before doing anything else.

arguments: {"dir": <folder>, "sleep_s": <seconds to run>, "fail": <bool>, "say": <text>}
Appends one line to <dir>/runs.jsonl at its first line and one when it ends,
so a test can count runs per occurrence (or per run id) from the job's own records.
`say`: printed to stdout at the start and to stderr at the end (the run's output).
"""

import json
import os
import sys
import time


def _append(path, record):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def run(task):
    started = time.time()
    args = task.arguments
    path = os.path.join(args["dir"], "runs.jsonl")
    _append(path, {"event": "start", "task": task.id, "date": task.doc["date"], "t": started,
                   "pid": os.getpid(), "run": getattr(task, "run_id", None)})
    if args.get("say"):
        print(f"{args['say']} out {task.doc.get('runs', 0) + 1}", flush=True)
    if args.get("sleep_s"):
        time.sleep(args["sleep_s"])
    if args.get("say"):
        print(f"{args['say']} err {task.doc.get('runs', 0) + 1}", file=sys.stderr, flush=True)
    _append(path, {"event": "end", "task": task.id, "date": task.doc["date"], "t": time.time(),
                   "run": getattr(task, "run_id", None)})
    if args.get("fail"):
        raise RuntimeError("failing on purpose")
    return {"started": started}
