"""The client side of a peer: `python -m bench.peers.enqueue PEER SPEC.json` enqueues the
tasks SPEC lists and prints JSON {"cpu_s", "wall_s"}: this process's CPU, counted in the
peer's cost (for Huey it is where the store's writes happen, as the server's are for after).

SPEC: {"out": file the job stamps, "tasks": [[key, at], ...]}; `at` is the task's eta
(epoch seconds), 0 for "now" (no eta).
"""

import json
import os
import sys
import time
from datetime import datetime, timezone


def enqueue(peer: str, spec: dict) -> None:
    out = spec["out"]
    if peer == "huey":
        from bench.peers.huey_app import stamp
        for key, at in spec["tasks"]:
            if at:
                stamp.schedule(args=(out, key, at), eta=datetime.fromtimestamp(at, timezone.utc))
            else:
                stamp(out, key, at)
    elif peer == "celery":
        from bench.peers.celery_app import stamp
        for key, at in spec["tasks"]:
            eta = datetime.fromtimestamp(at, timezone.utc) if at else None
            stamp.apply_async(args=(out, key, at), eta=eta)
    else:
        raise SystemExit(f"unknown peer {peer!r}")


def main(peer: str, spec_path: str) -> dict:
    t0, w0 = os.times(), time.perf_counter()
    enqueue(peer, json.loads(open(spec_path).read()))
    t1 = os.times()
    return {"cpu_s": (t1.user + t1.system) - (t0.user + t0.system), "wall_s": time.perf_counter() - w0}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
