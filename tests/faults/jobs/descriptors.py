"""Hostile job: writes junk to every descriptor it inherited, then closes them all.

That includes 0, 1, 2 and whatever the worker left open for it (the result pipe,
the journal). The run may fail; nothing else may.
"""

import os


def run(task):
    junk = b"\x00garbage\n{\"t\": \"start\", \"run\": \"not-a-run\"}\n\xff\xfe not json \n"
    fds = [int(n) for n in os.listdir("/proc/self/fd")]
    for fd in fds:
        try:
            os.write(fd, junk)
        except OSError:
            pass
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    return "closed everything"
