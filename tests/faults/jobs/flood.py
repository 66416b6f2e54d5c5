"""Hostile job: writes 100 MB to stdout, then returns normally."""

import os


def run(task):
    chunk = b"x" * (1 << 20)
    for _ in range(int(task.arguments.get("mb", 100))):
        os.write(1, chunk)
    return "flooded"
