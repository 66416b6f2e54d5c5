"""What the console's tests share (a module of its own: `conftest` is ambiguous once
tests/faults is collected too): users, the admin URL, `after` as a process,
screenshots, and `after console`'s server in a thread."""

import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

from helpers import EXTERNAL_URL, wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"
# Against a real CouchDB (AFTER_TEST_COUCHDB_URL), its admin; else the admin of the
# pouchdb-server the fixtures start.
_external = urlsplit(EXTERNAL_URL) if EXTERNAL_URL else None
ADMIN_USER = unquote(_external.username) if _external and _external.username else "admin"
ADMIN_PASSWORD = unquote(_external.password) if _external and _external.password else "console-admin-pw"
ADMIN = (ADMIN_USER, ADMIN_PASSWORD)
USERS = {"operator": ("op-pw", ["after"]), "viewer": ("view-pw", ["after_reader"])}
CHROMIUM = shutil.which("chromium")          # Debian's chromium and chromium-driver
CHROMEDRIVER = shutil.which("chromedriver")


def admin_url(server) -> str:
    return f"http://{ADMIN_USER}:{ADMIN_PASSWORD}@{server.host}:{server.port}"


class ExternalCouch:
    """A real Apache CouchDB given by AFTER_TEST_COUCHDB_URL (not started or stopped here)."""

    kind = "couchdb"

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 5984
        self.url = f"{parts.scheme}://{self.host}:{self.port}"


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


# ---- the page: what a test does in the browser ------------------------------------------

HOSTILE = "<img src=x onerror=window.__pwned=1>"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def soon(seconds: float) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(seconds=seconds))


def post_task(server, database, doc, auth=ADMIN) -> str:
    r = requests.post(f"{server.url}/{database}", json=doc, auth=auth, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def get_doc(server, database, doc_id) -> dict:
    return requests.get(f"{server.url}/{database}/{doc_id}", auth=ADMIN, timeout=10).json()


def record_task(worker, records, date, **args):
    return {"worker": worker, "date": date, "status": "waiting",
            "job": {"name": "record", "arguments": {"dir": str(records), **args}}}


def open_attached(driver, server, database, user="operator", hash_=""):
    """Log in as `user` (a CouchDB session cookie), then open the attached console."""
    password = USERS[user][0]
    r = requests.post(f"{server.url}/_session", json={"name": user, "password": password}, timeout=10)
    assert r.ok, r.text
    driver.get(f"{server.url}/_session")           # same origin, to set the cookie on
    driver.add_cookie({"name": "AuthSession", "value": r.cookies["AuthSession"], "path": "/"})
    driver.get(f"{server.url}/{database}/_design/after/console.html{hash_}")
    wait_visible(driver, "nav")


def by_css(driver, css):
    return driver.find_elements("css selector", css)


def text_of(driver, css="main") -> str:
    # One script call: the live page may rebuild its view between two WebDriver calls.
    return driver.execute_script(
        "const n = document.querySelector(arguments[0]); return n ? n.innerText : ''", css) or ""


def wait_visible(driver, element_id, timeout_s=15):
    return wait_for(lambda: driver.execute_script(
        "const n = document.getElementById(arguments[0]); return !!n && n.offsetParent !== null", element_id),
        timeout_s, f"#{element_id} to show; page says: {text_of(driver, 'body')[:500]}")


def wait_text(driver, needle, css="main", timeout_s=20):
    return wait_for(lambda: needle in text_of(driver, css), timeout_s,
                    f"{needle!r} in {css}; it says: {text_of(driver, css)[:800]}")


def go(driver, hash_):
    driver.execute_script("location.hash = arguments[0]", hash_)


def row_of(driver, doc_id) -> str:
    return driver.execute_script(
        "for (const r of document.querySelectorAll('main tbody tr'))"
        "  if (r.innerText.includes(arguments[0])) return r.innerText;"
        "return ''", doc_id) or ""


def follow_link(driver, css, timeout_s=15):
    """Click a link until the page's hash changes: a live refresh may replace the link
    between finding it and clicking it, and a click on a detached link does nothing."""
    from selenium.common.exceptions import StaleElementReferenceException

    before = driver.execute_script("return location.hash")

    def attempt():
        try:
            driver.find_element("css selector", css).click()
        except StaleElementReferenceException:
            return False
        try:
            return wait_for(lambda: driver.execute_script("return location.hash") != before, 2, "hash")
        except AssertionError:
            return False
    wait_for(attempt, timeout_s, f"following {css}")


def click(driver, element_id, timeout_s=15):
    """Click by id, again if the live page rebuilt the view under the click."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt():
        try:
            driver.find_element("id", element_id).click()
            return True
        except StaleElementReferenceException:
            return False
    wait_for(attempt, timeout_s, f"a click on #{element_id}")


def init_says(server, database, *flags) -> str:
    """What `after init` prints (it is idempotent: the database is set up already)."""
    result = after_cli("init", *flags, url=admin_url(server), database=database)
    assert result.returncode == 0, result.stderr
    return result.stdout


def server_console_address(init_output: str) -> str:
    """The address `after init` prints for the console on the server itself."""
    for line in init_output.splitlines():
        if line.startswith("console on the server itself: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"after init printed no console address on the server:\n{init_output}")


def log_in_with_form(driver, user, password=None):
    """The console's own login form: a user and a password, then its button."""
    wait_visible(driver, "login-name")
    name = driver.find_element("id", "login-name")
    name.clear()
    name.send_keys(user)
    field = driver.find_element("id", "login-password")
    field.clear()
    field.send_keys(USERS[user][0] if password is None else password)
    click(driver, "login-submit")
