"""Test job: records when it ran, by the job's own clock, before doing anything else.

arguments: {"dir": <folder>, "sleep_s": <seconds to run>, "fail": <bool>}
Appends one line to <dir>/runs.jsonl at its first line and one when it ends,
so a test can count runs per occurrence from the job's own records.
"""

import json
import os
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
                   "pid": os.getpid()})
    if args.get("sleep_s"):
        time.sleep(args["sleep_s"])
    _append(path, {"event": "end", "task": task.id, "date": task.doc["date"], "t": time.time()})
    if args.get("fail"):
        raise RuntimeError("failing on purpose")
    return {"started": started}
