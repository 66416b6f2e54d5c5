"""The peers' job: the same as bench/jobs/stamp.py, by the job's own clock at its first line.

One line per run, `key at started`, appended with one write(2) (O_APPEND: lines from
parallel runs never mix). A no-op but for that line, which is how the bench sees a run.
"""

import os
import time


def stamp(out: str, key: str, at: float) -> None:
    started = time.time()
    line = f"{key} {at!r} {started!r}\n".encode()
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
