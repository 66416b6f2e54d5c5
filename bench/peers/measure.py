"""Huey and Celery under after's workloads: the same stamp job, the same dates, measured alike.

Each peer runs as its users run it: its consumer (and Celery's Redis, and beat) as
processes of their own, started by the bench in a session of their own and stopped
after (the whole process group). Costs are CPU time read from /proc: the consumer and
every live descendant (Huey's process workers, Celery's prefork pool), Redis, beat, and
the client that enqueued (bench/peers/enqueue.py). A run is seen by its stamp line
(bench/peers/stamp.py), so a run lost or run twice is seen too.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.harness import ms_epoch, percentile
from bench.server import process_tree_cpu_s

ROOT = Path(__file__).resolve().parent.parent.parent
CPUS = os.cpu_count() or 1
LEAD_S = 2.0                 # head start before the first eta, plus per task enqueued:
ENQUEUE_S_PER_TASK = 0.002
STALL_S = 30.0               # give up when no run started for this long
PER_PROCESS_N = 300          # Celery with a process per task: its throughput run's N
QUIET_S = 10.0               # kill: after the last eta, a run not seen for this long is lost

# (settings name, what the bench passes): the peers' defaults first, then what their
# documentation recommends for this case. Huey: `huey_consumer` defaults to one worker
# thread; its docs run CPU-bound work in processes (`-k process -w N`). Celery: a prefork
# pool of CPU-count processes; for tasks that must survive a worker's crash its docs give
# task_acks_late with task_reject_on_worker_lost, and a prefetch multiplier of 1.
SETTINGS = {
    "huey": {
        "defaults": {"args": [], "text": "1 worker thread, SQLite (WAL), scheduler every 1 s"},
        "recommended": {"args": ["-k", "process", "-w", str(CPUS)],
                        "text": f"-k process -w {CPUS}, SQLite (WAL), scheduler every 1 s"},
    },
    "celery": {
        "defaults": {"args": [], "text": f"prefork x{CPUS}, acks early, prefetch 4 per process, Redis broker"},
        "recommended": {"args": [], "text": f"prefork x{CPUS}, task_acks_late + task_reject_on_worker_lost, "
                                            "prefetch multiplier 1, Redis broker"},
        # Not a recommendation: the recommended settings with a new process for every task,
        # as after runs each in a process of its own, to show what that costs Celery.
        # Only throughput and lateness: its pool replaces a child after each task at ~10 a
        # second here, so its N is capped (PER_PROCESS_N) and the crash cases are the
        # recommended settings' own.
        "process-per-run": {"args": ["--max-tasks-per-child", "1"], "steps": ("throughput", "paced"),
                            "text": "the recommended settings and --max-tasks-per-child 1 (a process per task, "
                                    "as after; throughput of at most %d tasks)" % PER_PROCESS_N},
    },
}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("huey", "celery", "kombu", "redis", "apscheduler"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    server = shutil.which("redis-server")
    if server:
        got = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
        out["redis-server"] = next((w.split("=", 1)[1] for w in got.split() if w.startswith("v=")), got.strip())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        return process_tree_cpu_s(pid)
    except OSError:
        return 0.0


class Proc:
    """A peer's process in a session of its own: stopped with its whole group."""

    def __init__(self, argv: list[str], env: dict, log: Path, cwd: Path = ROOT):
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid, self.log = self.p.pid, log

    def cpu_s(self) -> float:
        return cpu_of(self.pid)

    def kill_main(self) -> None:
        """kill -9 of the consumer's own process (not its children): a crash."""
        self.p.kill()
        self.p.wait(10)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the group (a warm shutdown), then SIGKILL to whatever is left of it."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and _group_alive(self.pid):
                if self.p.poll() is None:
                    try:
                        self.p.wait(0.1)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.1)
            if not _group_alive(self.pid):
                break
        if self.p.poll() is None:
            self.p.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class Redis:
    """Debian's redis-server on a loopback port of its own, its own defaults otherwise
    (RDB snapshots, no AOF), its files in the work folder."""

    def __init__(self, work: Path):
        server = shutil.which("redis-server")
        if not server:
            raise RuntimeError("redis-server is missing: `make bench` installs it (Debian's redis-server)")
        self.port = free_port()
        self.dir = work / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc([server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                          "--daemonize", "no", "--protected-mode", "yes"], dict(os.environ),
                         work / "redis.log", cwd=self.dir)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 20
        while self.command("PING") != "+PONG":
            if time.monotonic() > deadline or self.proc.p.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {(work / 'redis.log').read_text()[-500:]}")
            time.sleep(0.1)

    def command(self, *words: str) -> str:
        """One inline command over a socket of its own (the bench needs no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall((" ".join(words) + "\r\n").encode())
                return s.recv(65536).decode().strip()
        except OSError:
            return ""

    def flush(self) -> None:
        self.command("FLUSHALL")

    def unacked(self) -> int:
        """Messages a Celery worker reserved and never acknowledged (kombu's `unacked` hash):
        Redis hands them out again only after the visibility timeout (1 h by default)."""
        got = self.command("HLEN", "unacked")
        return int(got[1:]) if got.startswith(":") else 0

    def cpu_s(self) -> float:
        return self.proc.cpu_s()

    def close(self) -> None:
        self.proc.stop()


class Peer:
    """One peer with one of its settings: start consumers, enqueue, read the stamps."""

    def __init__(self, name: str, settings: str, work: Path, redis: Redis | None = None):
        self.name, self.settings, self.redis = name, settings, redis
        self.work = work / f"{name}-{settings}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.round = 0
        self.procs: list[Proc] = []

    def fresh(self, tag: str) -> Path:
        """A new store (Huey's database file; Redis emptied) and stamp file for one measurement."""
        self.round += 1
        self.tag = f"{tag}-{self.round}"
        if self.redis:
            self.redis.flush()
        return self.work / f"stamps-{self.tag}.txt"

    def env(self, **extra) -> dict:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_HUEY_DB": str(self.work / f"huey-{self.tag}.db"),
               "BENCH_CELERY_SETTINGS": self.settings, **{k: str(v) for k, v in extra.items()}}
        if self.redis:
            env["BENCH_REDIS_URL"] = self.redis.url
        return env

    def start_consumer(self, out: Path) -> Proc:
        args = SETTINGS[self.name][self.settings]["args"]
        if self.name == "huey":
            argv = [sys.executable, "-m", "huey.bin.huey_consumer", "bench.peers.huey_app.huey", *args]
        else:
            argv = [sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker", "-l", "WARNING",
                    "-n", f"bench-{self.tag}@%h", *args]
        proc = Proc(argv, self.env(), self.work / f"consumer-{self.tag}.log")
        self.procs.append(proc)
        # Ready when it has run a task given now (a probe, not counted).
        self.enqueue(out, [("probe", 0)])
        wait_lines(out, lambda lines: any(line.startswith("probe ") for line in lines), 60,
                   f"{self.name} consumer to run a first task", proc)
        return proc

    def start_beat(self, out: Path) -> Proc:
        argv = [sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "beat", "-l", "WARNING",
                "-s", str(self.work / f"beat-{self.tag}"), "--pidfile="]
        proc = Proc(argv, self.env(BENCH_TICK_OUT=out), self.work / f"beat-{self.tag}.log")
        self.procs.append(proc)
        return proc

    def enqueue(self, out: Path, tasks: list[tuple[str, float]]) -> dict:
        spec = self.work / f"spec-{self.tag}.json"
        spec.write_text(json.dumps({"out": str(out), "tasks": tasks}))
        got = subprocess.run([sys.executable, "-m", "bench.peers.enqueue", self.name, str(spec)], env=self.env(),
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
        if got.returncode != 0:
            raise RuntimeError(f"enqueue to {self.name} failed: {got.stderr[-1500:]}")
        return json.loads(got.stdout)

    def store_cpu_s(self) -> float:
        return self.redis.cpu_s() if self.redis else 0.0

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs = []


def read_stamps(out: Path) -> list[tuple[str, float, float]]:
    """(key, at, started) per line; the probe left out."""
    if not out.exists():
        return []
    rows = []
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] != "probe":
            rows.append((parts[0], float(parts[1]), float(parts[2])))
    return rows


def wait_lines(out: Path, done, timeout_s: float, what: str, proc: Proc | None = None) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = out.read_text().splitlines() if out.exists() else []
        if done(lines):
            return lines
        if proc is not None and proc.p.poll() is not None:
            raise RuntimeError(f"waiting for {what}: it exited ({proc.p.returncode}): {proc.log.read_text()[-1500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"waiting for {what}: not within {timeout_s:.0f}s")
        time.sleep(0.05)


def wait_runs(out: Path, n: int, until_s: float) -> list[tuple[str, float, float]]:
    """Wait while runs keep coming, until n have started; what started by then."""
    seen, stalled_at = -1, time.monotonic() + max(0.0, until_s - time.time())
    while time.monotonic() < stalled_at + STALL_S:
        rows = read_stamps(out)
        if len(rows) >= n:
            return rows
        if len(rows) > seen:
            seen, stalled_at = len(rows), max(stalled_at, time.monotonic())
        time.sleep(0.05)
    return read_stamps(out)


def lost_and_doubled(keys: list[str], rows: list[tuple[str, float, float]]) -> dict:
    """Of the tasks `keys`, how many never ran and how many ran more than once."""
    ran = Counter(k for k, _, _ in rows)
    return {"lost": sum(1 for k in keys if ran[k] == 0), "doubled": sum(1 for k in keys if ran[k] > 1)}


def periodic_gaps(starts: list[float], period_s: float = 1.0) -> dict:
    """Missed and doubled occurrences of a task due every period_s, from its runs' start
    times alone (works for a peer that does not tell the occurrence): two runs closer than
    half a period are one occurrence run twice; a gap of k periods (rounded) misses k - 1."""
    starts = sorted(starts)
    doubled = missed = 0
    for a, b in zip(starts, starts[1:]):
        gap = (b - a) / period_s
        if gap < 0.5:
            doubled += 1
        else:
            missed += max(0, round(gap) - 1)
    return {"runs": len(starts), "missed": missed, "doubled": doubled,
            "span_s": (starts[-1] - starts[0]) if len(starts) > 1 else 0.0}


def throughput(peer: Peer, n: int) -> dict:
    """n stamp tasks, all with the same eta: from that moment until all have run."""
    out = peer.fresh("throughput")
    try:
        consumer = peer.start_consumer(out)
        due_s = ms_epoch(time.time() + LEAD_S + n * ENQUEUE_S_PER_TASK)
        cpu0 = consumer.cpu_s() + peer.store_cpu_s()
        client = peer.enqueue(out, [(f"t{i}", due_s) for i in range(n)])
        before_due = time.time() < due_s
        time.sleep(max(0.0, due_s - time.time()))
        cpu_due = consumer.cpu_s() + peer.store_cpu_s()
        rows = wait_runs(out, n, due_s)
        done_s = time.time()
        cpu1 = consumer.cpu_s() + peer.store_cpu_s()
    finally:
        peer.stop()
    if len(rows) < n:
        raise RuntimeError(f"{peer.name} {peer.settings}: only {len(rows)} of {n} ran")
    last_s = max(started for _, _, started in rows)
    total_s = cpu1 - cpu0 + client["cpu_s"]
    return {"runs_per_s": n / (max(last_s, done_s - 0.05) - due_s), "enqueued_before_due": before_due,
            "cpu_ms_per_run": total_s / n * 1000, "run_cpu_ms_per_run": (cpu1 - cpu_due) / n * 1000,
            "client_cpu_ms_per_run": client["cpu_s"] / n * 1000,
            "runs_per_cpu_s": n / total_s if total_s > 0 else None, **lost_and_doubled([f"t{i}" for i in range(n)], rows)}


def lateness(peer: Peer, n: int, window_s: float) -> dict:
    """n stamp tasks with etas evenly across window_s (a rate the machine sustains):
    lateness = the job's first line minus its eta."""
    out = peer.fresh("paced")
    try:
        peer.start_consumer(out)
        first_s = ms_epoch(time.time() + LEAD_S + n * ENQUEUE_S_PER_TASK)
        tasks = [(f"p{i}", ms_epoch(first_s + i * window_s / n)) for i in range(n)]
        peer.enqueue(out, tasks)
        rows = wait_runs(out, n, first_s + window_s)
    finally:
        peer.stop()
    if len(rows) < n:
        raise RuntimeError(f"{peer.name} {peer.settings}: only {len(rows)} of {n} ran")
    late_ms = [(started - at) * 1000 for _, at, started in rows]
    return {"p50_ms": percentile(late_ms, 50), "p99_ms": percentile(late_ms, 99), "max_ms": max(late_ms),
            "early": sum(1 for x in late_ms if x < -1)}


def periodic(peer: Peer, window_s: float) -> dict:
    """A task every second for window_s, as the peer schedules periodic tasks (Celery: beat)."""
    if peer.name == "huey":
        return {"supported": False,
                "why": "periodic tasks are crontab()s, checked once a minute: one a minute at the finest"}
    out = peer.fresh("periodic")
    ticks = out.with_name(out.name.replace("stamps", "ticks"))
    try:
        peer.start_consumer(out)
        peer.start_beat(ticks)
        wait_lines(ticks, lambda lines: len(lines) >= 1, 60, "beat's first tick")
        time.sleep(window_s)
    finally:
        peer.stop()
    rows = read_stamps(ticks)
    first = rows[0][2] if rows else 0.0
    within = [started for _, _, started in rows if started <= first + window_s]
    return {"supported": True, "expected": int(window_s) + 1, **periodic_gaps(within)}


def kill(peer: Peer, n: int, window_s: float) -> dict:
    """n stamp tasks due across window_s; kill -9 of the consumer's main process halfway,
    another started at once with the same settings; runs lost and run twice."""
    out = peer.fresh("kill")
    keys = [f"k{i}" for i in range(n)]
    orphans = 0
    try:
        first = peer.start_consumer(out)
        first_s = ms_epoch(time.time() + LEAD_S + n * ENQUEUE_S_PER_TASK)
        peer.enqueue(out, [(k, ms_epoch(first_s + i * window_s / n)) for i, k in enumerate(keys)])
        time.sleep(max(0.0, first_s + window_s / 2 - time.time()))
        ran_before = len(read_stamps(out))
        first.kill_main()
        time.sleep(0.2)
        orphans = sum(1 for _ in _group_members(first.pid))
        peer.start_consumer(out)   # its probe: the new consumer runs
        deadline = time.monotonic() + max(0.0, first_s + window_s - time.time()) + QUIET_S
        while time.monotonic() < deadline and len({k for k, _, _ in read_stamps(out)}) < n:
            time.sleep(0.1)
        unacked = peer.redis.unacked() if peer.redis else None
    finally:
        peer.stop()
    got = lost_and_doubled(keys, read_stamps(out))
    return {**got, "ran_before_kill": ran_before, "orphans_left_running": orphans, "unacked_in_redis": unacked,
            "waited_after_last_eta_s": QUIET_S}


def _group_members(pgid: int):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == pgid:
                yield int(pid)
        except OSError:
            continue


def run_all(work: Path, sizes: dict, only: set[str] | None = None, log=print) -> dict:
    """Every peer, every setting, every workload; a failure is recorded and the rest go on."""
    results: dict = {"versions": versions(), "settings": {p: {s: v["text"] for s, v in d.items()}
                                                          for p, d in SETTINGS.items()}, "figures": {}}
    redis = None
    try:
        for name in ("huey", "celery"):
            if only and name not in only:
                continue
            if name == "celery" and redis is None:
                redis = Redis(work)
            for settings in SETTINGS[name]:
                peer = Peer(name, settings, work, redis if name == "celery" else None)
                got = results["figures"].setdefault(f"{name}/{settings}", {})
                setting = SETTINGS[name][settings]
                n = min(sizes["throughput_n"], PER_PROCESS_N) if "steps" in setting else sizes["throughput_n"]
                steps = [("throughput", lambda: throughput(peer, n)),
                         ("paced", lambda: lateness(peer, sizes["paced_n"], sizes["paced_window_s"])),
                         ("periodic", lambda: periodic(peer, sizes["periodic_s"])),
                         ("kill", lambda: kill(peer, sizes["kill_n"], sizes["kill_window_s"]))]
                for step, measure in steps:
                    if step not in setting.get("steps", (step,)):
                        continue
                    log(f"  {name} ({settings}): {step}", flush=True)
                    try:
                        got[step] = measure()
                    except Exception as e:  # noqa: BLE001 - one failure is a figure; the others still run
                        got[step] = {"error": f"{type(e).__name__}: {e}"}
                        log(f"  {name} ({settings}) {step}: failed: {e}")
                        peer.stop()
    finally:
        if redis:
            redis.close()
    return results
