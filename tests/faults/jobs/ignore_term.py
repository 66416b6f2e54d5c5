"""Hostile job: ignores SIGTERM and sleeps; only SIGKILL after the grace can end it."""

import os
import signal
import time


def run(task):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.path.join(task.arguments["dir"], "ignore_term.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)
