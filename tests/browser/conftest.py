"""Browser tests: the console in a real headless Chromium (Debian's chromium and
chromium-driver, installed by `scripts/install-deps test`), driven by selenium, against a
pouchdb-server with an admin and real users, and a real worker.

Locally they skip when Chromium is missing; with CI set, a missing browser is a failure.
Each test saves screenshots under build/screenshots/ (not committed; docs/ holds a few).
"""

import sys
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/: couchdb_server, helpers, workers

from console_harness import (ADMIN, ADMIN_PASSWORD, CHROMEDRIVER, CHROMIUM, USERS, ExternalCouch,  # noqa: E402
                             admin_url, after_cli)
from couchdb_server import PouchServer  # noqa: E402
from helpers import EXTERNAL_URL, require_tool  # noqa: E402

CSP_PATH = "/_node/_local/_config/csp/attachments_header_value"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server, with an admin and two console users: a pouchdb-server of this module's
    own, or the real CouchDB of AFTER_TEST_COUCHDB_URL. There the attached pages need
    scripts, so the module runs with the console's CSP (`after init --console-csp`) and
    puts back what the server had when it ends; tests of a server at its defaults take
    `sandboxed` too."""
    if EXTERNAL_URL:
        srv = ExternalCouch(EXTERNAL_URL)
        before = requests.get(srv.url + CSP_PATH, auth=ADMIN, timeout=10)
        set_csp(srv, console_csp())
    else:
        srv = PouchServer(tmp_path_factory.mktemp("console-couch"), admins={"admin": ADMIN_PASSWORD}).start()
        srv.kind = "pouchdb-server"
    for name, (password, roles) in USERS.items():
        url = f"{srv.url}/_users/org.couchdb.user:{name}"
        doc = {"name": name, "password": password, "roles": roles, "type": "user"}
        old = requests.get(url, auth=ADMIN, timeout=10)
        if old.ok:   # a real server keeps its users from run to run
            doc["_rev"] = old.json()["_rev"]
        r = requests.put(url, auth=ADMIN, timeout=10, json=doc)
        assert r.status_code in (201, 202), r.text
    yield srv
    if EXTERNAL_URL:
        set_csp(srv, before.json() if before.ok else None)
    else:
        srv.remove()


def console_csp() -> str:
    from afterd.console.install import CONSOLE_CSP

    return CONSOLE_CSP


def set_csp(server, value):
    """Set CouchDB's attachment CSP (None: back to its default sandbox)."""
    if value is None:
        r = requests.delete(server.url + CSP_PATH, auth=ADMIN, timeout=10)
        assert r.status_code in (200, 404), r.text
    else:
        r = requests.put(server.url + CSP_PATH, json=value, auth=ADMIN, timeout=10)
        assert r.ok, r.text


@pytest.fixture
def sandboxed(server):
    """A server left at its defaults: on CouchDB, attachments sandboxed (no script)."""
    if server.kind != "couchdb":
        yield server
        return
    set_csp(server, None)
    yield server
    set_csp(server, console_csp())


@pytest.fixture
def database(server):
    """A fresh tasks database set up by `after init` (design, console, _security)."""
    name = "console-tasks-" + uuid.uuid4().hex[:8]   # "console-": on a shared server, ours
    result = after_cli("init", url=admin_url(server), database=name)
    assert result.returncode == 0, result.stderr
    yield name
    if server.kind == "couchdb":
        requests.delete(f"{server.url}/{name}", auth=ADMIN, timeout=30)


@pytest.fixture(scope="module")
def browser():
    ok = bool(CHROMIUM and CHROMEDRIVER)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        ok = False
    require_tool(ok, "headless Chromium with chromedriver and selenium (scripts/install-deps test)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=en-US", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit chromedriver: selenium never goes looking for (or downloading) one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser):
    """The browser with no cookies left from the previous test, at desktop width."""
    # Every cookie of every host (delete_all_cookies only clears the current page's).
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.set_window_size(1280, 1000)
    yield browser
    try:
        browser.get("about:blank")
    except Exception:
        pass
