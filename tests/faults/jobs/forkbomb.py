"""Hostile job: a fork bomb, capped so it cannot hurt the shared test machine.

RLIMIT_NPROC is set first, as a job author limiting themselves would; it binds only
non-root users (root has CAP_SYS_RESOURCE), so the bomb also stops itself at
`cap` processes. Every process then sleeps: the task's timeout must end them all
(the zygote kills the job's whole process group). Writes its pid (= its process
group) to <dir>/forkbomb.pgid so the test can check nothing of it survives.
"""

import os
import resource
import time


def run(task):
    args = task.arguments
    cap = int(args.get("cap", 64))
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    limit = cap + 32 if hard == resource.RLIM_INFINITY else min(hard, cap + 32)
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, hard))
    except (ValueError, OSError):
        pass
    with open(os.path.join(args["dir"], "forkbomb.pgid"), "w") as f:
        f.write(str(os.getpgid(0)))
    made = 1
    while made < cap:            # doubling, as a bomb does, until the cap
        try:
            pid = os.fork()
        except OSError:
            break
        made *= 2
        if pid == 0:
            continue             # the child keeps forking too
    time.sleep(3600)
