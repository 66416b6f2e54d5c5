"""The server under test: the bench's own pouchdb-server, or an external CouchDB.

`AFTER_BENCH_COUCHDB_URL=http://user:password@host:5984` runs the whole bench against
that server instead of starting a pouchdb-server. The URL may carry credentials; they
go to the workers and the bench's own client, and are never printed (`safe_url`).
The bench creates databases named `after-bench-*` there and deletes them at the end.

What a server costs is read from /proc: the pouchdb-server the bench started, or, for
an external server on this machine (a loopback URL), the process listening on its
port and all its descendants (CouchDB's beam.smp and its couchjs processes). A server
on another machine has no CPU figure: cost_per_run_ms then leaves it out and says so.
"""

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from afterd.couch import Couch, CouchError, mask_url, split_credentials

ENV_URL = "AFTER_BENCH_COUCHDB_URL"
# The processes whose CPU is the server's: CouchDB's Erlang VM, pouchdb-server's node.
SERVER_PROCESSES = {"beam.smp", "beam", "couchdb", "node"}
DB_PREFIX = "after-bench-"


def clk_tck() -> int:
    return os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and every live descendant, plus what its reaped children
    used (cutime/cstime): proc(5) fields 14-17."""
    total = 0
    for pid in [root, *descendants(root)]:
        try:
            f = _stat_fields(pid)
        except OSError:
            continue   # gone meanwhile: its time went to its parent's cutime, mostly
        total += int(f[11]) + int(f[12])
        if pid == root:
            total += int(f[13]) + int(f[14])
    return total / clk_tck()


def descendants(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for k in kids:
                out.append(int(k))
                todo.append(int(k))
    return out


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on a local TCP port, from /proc/net/tcp{,6}; None if
    it is not visible (another machine, another namespace, no permission)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:   # 0A: LISTEN
                inodes.add(cols[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return int(pid)
        except OSError:
            continue
    return None


def describe(info: dict) -> dict:
    """GET / -> {"kind", "version", "vendor"}: which server was measured."""
    if "couchdb" in info:
        vendor = (info.get("vendor") or {}).get("name", "")
        return {"kind": "couchdb", "version": str(info.get("version", "?")), "vendor": vendor}
    if "express-pouchdb" in info:
        return {"kind": "pouchdb-server", "version": str(info.get("version", "?")), "vendor": "PouchDB"}
    return {"kind": "unknown", "version": str(info.get("version", "?")), "vendor": ""}


class Server:
    """What the measurements need of a server: a URL (with credentials, for the workers),
    databases, which server it is, and its CPU time if it can be seen."""

    url: str            # may carry credentials: never print it
    safe_url: str
    info: dict
    pid: int | None

    def database(self, prefix: str) -> Couch:
        self._dbs += 1
        run = f"{self._run}-" if self._run else ""   # an external server: this run's own names
        name = f"{DB_PREFIX}{prefix}-{run}{self._dbs}"
        couch = Couch(self.url, name, timeout_s=120)
        couch.ensure_database()
        couch.ensure_design()
        self.created.append(name)
        return couch

    def drop(self, couch: Couch) -> None:
        """Delete a database the bench made (an external server keeps nothing of the bench)."""
        try:
            couch._request("DELETE", couch._db_path, what=f"delete database '{couch.database}'")
        except Exception:   # noqa: BLE001 - clean-up is best effort; close() tries again
            return
        if couch.database in self.created:
            self.created.remove(couch.database)

    def cpu_s(self) -> float | None:
        if self.pid is None:
            return None
        try:
            return process_tree_cpu_s(self.pid)
        except OSError:
            return None

    def _identify(self):
        self.info = describe(Couch(self.url, "_").info())
        self.info["url"] = self.safe_url
        self.info["cpu_measured"] = self.pid is not None


class OwnPouch(Server):
    """A pouchdb-server started for the run (LevelDB in the work folder)."""

    def __init__(self, work_dir: Path):
        from couchdb_server import PouchServer   # tests/ is on sys.path (bench.harness)

        self._pouch = PouchServer(Path(work_dir) / "couch").start()
        self.url = self.safe_url = self._pouch.url
        self.pid = self._pouch.proc.pid
        self._run, self._dbs, self.created = "", 0, []
        self._identify()

    def close(self, keep: bool = False):
        if keep:
            self._pouch.stop()   # its data stays in the work folder, with the logs
        else:
            self._pouch.remove()


class External(Server):
    """A CouchDB the user runs (AFTER_BENCH_COUCHDB_URL)."""

    def __init__(self, url: str):
        self.url = url
        base, _, _ = split_credentials(url)
        self.safe_url = mask_url(url.rstrip("/"))
        parts = urlsplit(base)
        self.pid, self.listener = None, None
        if parts.hostname in ("127.0.0.1", "localhost", "::1") or _is_local(parts.hostname):
            pid = listening_pid(parts.port or (443 if parts.scheme == "https" else 80))
            self.listener = _comm(pid) if pid else None
            # Only the server itself: a proxy in front of it (docker-proxy, a TLS
            # terminator) would give its own CPU for the server's.
            if self.listener in SERVER_PROCESSES:
                self.pid = pid
        self._run, self._dbs, self.created = uuid.uuid4().hex[:6], 0, []
        self._identify()
        if self.listener:
            self.info["listener"] = self.listener

    def close(self, keep: bool = False):
        if keep:
            return
        for name in list(self.created):
            self.drop(Couch(self.url, name))


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _is_local(host: str) -> bool:
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


def open_server(work_dir: Path) -> Server:
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        try:
            return External(url)
        except CouchError as e:   # its message never carries the password
            raise SystemExit(f"{ENV_URL}: {e}") from None
    return OwnPouch(work_dir)
