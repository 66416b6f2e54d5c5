"""What the console's tests share (a module of its own: `conftest` is ambiguous once
tests/faults is collected too): users, the admin URL, `after` as a process,
screenshots, and `after console`'s server in a thread."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"
ADMIN_PASSWORD = "console-admin-pw"
USERS = {"operator": ("op-pw", ["after"]), "viewer": ("view-pw", ["after_reader"])}
CHROMIUM = shutil.which("chromium")          # Debian's chromium and chromium-driver
CHROMEDRIVER = shutil.which("chromedriver")


def admin_url(server) -> str:
    return f"http://admin:{ADMIN_PASSWORD}@{server.host}:{server.port}"


def after_cli(*args, url, database, env=None):
    return subprocess.run([sys.executable, "-m", "afterd", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60,
                          env={**os.environ, "AFTER_COUCHDB_URL": url, "AFTER_CONFIG": os.devnull,
                               "AFTER_DATABASE": database, **(env or {})})


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


class ProxyThread:
    """`after console`'s server in a thread of the test, on a free loopback port."""

    def __init__(self, couchdb_url: str, database: str):
        from afterd.console.serve import make_server

        self.server = make_server(couchdb_url, database, port=0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.server

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
