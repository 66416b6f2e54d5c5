"""The process floors of a run, measured in a process shaped like the zygote.

`python -m bench.floors N [TARGET_RSS_BYTES]` prints JSON. The process imports what the
zygote imports (afterd.zygote), grows to TARGET_RSS_BYTES if it is smaller (the live
zygote's VmRSS, read by the bench during the throughput run), then times, N times each:

- `fork_exit_reap`: fork; the child calls os._exit(0) at once; the parent waits for it.
  What any process-per-run design pays, whatever the child does: the page tables copied
  and torn down, the process made and reaped. Its cost grows with the parent's size.
- `child_start_exit`: fork; the child calls a no-op job function already imported, writes
  its outcome ("null") to a pipe and leaves through os._exit; the parent reads the pipe
  and waits. Minus fork_exit_reap, it is the least a child that runs Python code costs:
  the copy-on-write faults of an interpreter touching its objects, a write, an exit.

Figures are CPU milliseconds (user + system, this process and its reaped children) per
fork, the unit of cost_per_run_ms; wall milliseconds too. On a busy machine wall time
includes waiting for a core, CPU time hardly does.
"""

import gc
import json
import os
import sys
import time

import afterd.zygote  # noqa: F401 - the zygote's imports, so this process maps what it maps


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def noop_job(task):
    return None


def time_forks(n: int, child) -> dict:
    gc.collect()
    c0, w0 = cpu_s(), time.perf_counter()
    for _ in range(n):
        child()
    return {"cpu_ms": (cpu_s() - c0) / n * 1000, "wall_ms": (time.perf_counter() - w0) / n * 1000}


def bare():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def with_job():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            result = noop_job({"id": "floor"})
            os.write(w, json.dumps(result).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(w)
    while os.read(r, 64):
        pass
    os.close(r)
    os.waitpid(pid, 0)


def main(n: int, target_rss: int) -> dict:
    natural = rss_bytes()
    pad = None
    if target_rss > natural:
        # Touch every page, as the zygote's own heap is touched: RSS, not just address space.
        pad = bytearray(target_rss - natural)
        for i in range(0, len(pad), 4096):
            pad[i] = 1
    gc.freeze()   # as the zygote's children do: the collector does not walk the inherited heap
    size = rss_bytes()
    bare_t = time_forks(n, bare)
    job_t = time_forks(n, with_job)
    del pad
    return {"n": n, "natural_rss_bytes": natural, "rss_bytes": size,
            "fork_exit_reap_ms": bare_t["cpu_ms"], "fork_exit_reap_wall_ms": bare_t["wall_ms"],
            "child_start_exit_ms": max(0.0, job_t["cpu_ms"] - bare_t["cpu_ms"]),
            "child_start_exit_wall_ms": max(0.0, job_t["wall_ms"] - bare_t["wall_ms"])}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)))
