"""Bench job for a repeating task: like stamp.py, with the occurrence's own date as `at`.

arguments: {"out": <file>}
"""

import os
import time


def run(task):
    started = time.time()
    line = f"{task.id} {task.date.timestamp()!r} {started!r}\n".encode()
    fd = os.open(task.arguments["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
