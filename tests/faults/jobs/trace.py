"""Fault-test job: like engine_jobs/record.py, and also says which host ran it.

arguments: {"dir": <folder>, "sleep_s": <seconds>}
Appends {"event": "start"/"end", "task", "date", "t", "pid", "host"} lines to
<dir>/runs.jsonl; "host" is the AFTER_HOST the worker was started with (the
zygote's children inherit the worker's environment), so a test with several
simulated hosts can tell who ran what.
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
    who = {"task": task.id, "date": task.doc["date"], "pid": os.getpid(),
           "host": os.environ.get("AFTER_HOST")}
    _append(path, {"event": "start", "t": started, **who})
    if args.get("sleep_s"):
        time.sleep(args["sleep_s"])
    _append(path, {"event": "end", "t": time.time(), **who})
    return {"started": started}
