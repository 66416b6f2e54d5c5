"""Bench job: note the time at its first line, so lateness is measured by the job's own clock.

arguments: {"out": <file>, "at": <the task's date as epoch seconds>}
"""

import os
import time


def run(task):
    started = time.time()
    args = task.arguments
    line = f"{task.id} {args['at']!r} {started!r}\n".encode()
    fd = os.open(args["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)   # one write(2) with O_APPEND: lines from parallel runs never mix
    finally:
        os.close(fd)
