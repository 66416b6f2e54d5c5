"""Fixtures: a real CouchDB-API server for the whole session, a fresh database per test.

AFTER_TEST_COUCHDB_URL=http://admin:pw@host:5984 runs the same suite against a real
Apache CouchDB 3.x instead of the pinned pouchdb-server.
"""

import uuid

import pytest
import requests

from couchdb_server import PouchServer
from helpers import EXTERNAL_URL


def pytest_addoption(parser):
    parser.addoption("--run-soak", action="store_true", help="run the long soak tests (make soak)")


# Under pytest-xdist (`make test` runs two processes, --dist loadgroup), the tests of one
# group run in the same process, one after another: those that boot a container or build
# the .deb share one rootfs, one dist/ and one build/ (and booting two at once would
# double the heaviest load), and the browser tests share one Chromium.
XDIST_GROUPS = {"test_deb.py": "systemd", "test_systemd.py": "systemd", "browser": "browser"}


@pytest.hookimpl(tryfirst=True)   # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        for part, group in XDIST_GROUPS.items():
            if part in item.path.parts:
                item.add_marker(pytest.mark.xdist_group(group))
    if config.getoption("--run-soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with `make soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


class ExternalServer:
    """A server we did not start (AFTER_TEST_COUCHDB_URL): it cannot be stopped for outage tests."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def alive(self):
        return True

    def stop(self):
        pytest.skip("outage tests need the server the fixtures start")

    start = stop


@pytest.fixture(scope="session")
def couch_server(tmp_path_factory):
    if EXTERNAL_URL:
        yield ExternalServer(EXTERNAL_URL)
        return
    server = PouchServer(tmp_path_factory.mktemp("couchdb"))
    server.start()
    yield server
    server.remove()


@pytest.fixture
def private_couch_server(tmp_path):
    """A server of this test's own, for tests that stop and restart it (outages)."""
    if EXTERNAL_URL:
        pytest.skip("outage tests need the server the fixtures start")
    server = PouchServer(tmp_path / "couchdb")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def couch_url(couch_server):
    if not couch_server.alive():
        # Say so here rather than letting every later test time out.
        pytest.fail(f"the CouchDB test server died: {couch_server.tail()}")
    return couch_server.url


@pytest.fixture
def db_name(couch_url):
    name = "test-" + uuid.uuid4().hex[:12]
    yield name
    # Always delete with the database name only; pouchdb-server has crashed on refused deletes.
    try:
        requests.delete(f"{couch_url}/{name}", timeout=10)
    except requests.RequestException:
        pass


@pytest.fixture
def couch(couch_url, db_name):
    from afterd.couch import Couch

    db = Couch(couch_url, db_name)
    db.ensure_database()
    return db


@pytest.fixture
def records(tmp_path):
    """The folder where test jobs (tests/engine_jobs/record.py and kin) record their runs."""
    path = tmp_path / "records"
    path.mkdir()
    return path
