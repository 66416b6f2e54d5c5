"""Start and stop the CouchDB-API test server (pouchdb-server, pinned in pouchdb/).

Apache CouchDB is not in Debian; pouchdb-server is a real, independently written
server speaking the same HTTP API. The differences that matter are listed in
docs/couchdb-differences.md.
"""

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
POUCHDB_BIN = ROOT / "pouchdb" / "node_modules" / ".bin" / "pouchdb-server"


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PouchServer:
    """One pouchdb-server process on a loopback port; LevelDB data survives stop/start."""

    def __init__(self, data_dir: Path, port: int | None = None, host="127.0.0.1", admins=None):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.admins = admins or {}
        self.proc = None
        self.log_path = self.data_dir / "server.log"

    def start(self, timeout_s=30.0):
        if not POUCHDB_BIN.exists():
            raise RuntimeError(f"pouchdb-server is not installed: run `make deps` ({POUCHDB_BIN})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "config.json"
        if not config.exists():
            # -c always: without it pouchdb-server writes config.json and log.txt into the cwd.
            config.write_text(json.dumps({"admins": self.admins, "log": {"file": str(self.data_dir / "log.txt")}}))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(POUCHDB_BIN), "-o", self.host, "-p", str(self.port), "-d", f"{self.data_dir}/",
             "-c", str(config), "--no-color"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.data_dir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pouchdb-server exited with {self.proc.returncode}: {self.tail()}")
            try:
                requests.get(self.url + "/", timeout=1).raise_for_status()
                return self
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"pouchdb-server did not answer within {timeout_s}s: {self.tail()}")

    def stop(self):
        """Stop the server (an outage); data stays for the next start()."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n_bytes=2000) -> str:
        try:
            return self.log_path.read_bytes()[-n_bytes:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def remove(self):
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
