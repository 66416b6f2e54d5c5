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

from console_harness import ADMIN_PASSWORD, CHROMEDRIVER, CHROMIUM, USERS, admin_url, after_cli  # noqa: E402
from couchdb_server import PouchServer  # noqa: E402
from helpers import EXTERNAL_URL, require_tool  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A pouchdb-server of this module's own, with an admin and two console users."""
    if EXTERNAL_URL:
        pytest.skip("the console tests start their own server, with a known admin and users")
    srv = PouchServer(tmp_path_factory.mktemp("console-couch"), admins={"admin": ADMIN_PASSWORD}).start()
    for name, (password, roles) in USERS.items():
        r = requests.put(f"{srv.url}/_users/org.couchdb.user:{name}", auth=("admin", ADMIN_PASSWORD), timeout=10,
                         json={"name": name, "password": password, "roles": roles, "type": "user"})
        assert r.status_code in (201, 202), r.text
    yield srv
    srv.remove()


@pytest.fixture
def database(server):
    """A fresh tasks database set up by `after init` (design, console, _security)."""
    name = "tasks-" + uuid.uuid4().hex[:8]
    result = after_cli("init", url=admin_url(server), database=name)
    assert result.returncode == 0, result.stderr
    return name


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
