"""The Debian package: `make deb` builds it, lintian accepts it, and it installs,
upgrades and purges cleanly in a real Debian bookworm booted with systemd.

The build runs once per module (about 15 s); the install tests share one container
with the package installed and run in file order (the purge test comes last).
"""

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

import afterd
from afterd import config
from helpers import require_tool
from helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
VERSION = f"{afterd.__version__}-1"
DEB_NAME = f"after_{VERSION}_all.deb"
DEB_IN_BOX = f"/tmp/{DEB_NAME}"
BUILD_TIMEOUT_S = 900
APT_TIMEOUT_S = 300
DEBIAN_DEPENDS = ("python3-requests", "python3-watchdog", "python3-dateutil", "python3-sdnotify")

pytestmark = pytest.mark.deb


def can_build() -> bool:
    """dpkg-buildpackage is here, or `make deb` can install it (root with apt)."""
    return bool(shutil.which("dpkg-buildpackage") or (os.geteuid() == 0 and shutil.which("apt-get")))


@pytest.fixture(scope="module")
def build():
    """`make deb` from the checkout: (path of the .deb, the make output)."""
    require_tool(can_build(), "dpkg-buildpackage (or root to install it)")
    parent_before = build_results_in(ROOT.parent)
    proc = subprocess.run(["make", "-C", str(ROOT), "deb"], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"make deb failed ({proc.returncode}):\n{output[-4000:]}")
    return {"deb": ROOT / "dist" / DEB_NAME, "output": output, "parent_before": parent_before}


def build_results_in(folder: Path) -> list[str]:
    """What dpkg-buildpackage would leave there: after_*.deb, .buildinfo, .changes."""
    return sorted(p.name for p in folder.glob("after_*"))


def deb_listing(deb: Path) -> dict[str, str]:
    """path (without the leading '.') -> mode string, from dpkg-deb -c."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                         check=True).stdout
    listing = {}
    for line in out.splitlines():
        fields = line.split(maxsplit=5)
        listing[fields[5].split(" -> ")[0].lstrip(".")] = fields[0]
    return listing


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


# --- the build ---------------------------------------------------------------------------

def test_make_deb_puts_the_package_in_dist_and_leaves_nothing_behind(build):
    assert build["deb"].is_file()
    # dpkg-buildpackage writes next to the source: that must be a scratch copy, not ..
    assert build_results_in(ROOT.parent) == build["parent_before"]
    assert not (ROOT / "build" / "deb").exists()
    assert not (ROOT / "debian" / "after").exists()


def test_lintian_reports_no_error_and_no_unexplained_warning(build):
    # make deb runs lintian with --fail-on error,warning; check its verdict is in the output.
    tags = [line for line in build["output"].splitlines() if re.match(r"^[EW]: after", line)]
    assert tags == []
    assert "lintian --fail-on error,warning" in build["output"]


def test_package_installs_the_command_units_config_docs_and_examples(build):
    listing = deb_listing(build["deb"])
    for path in ("/usr/bin/after",
                 "/usr/lib/python3/dist-packages/afterd/__init__.py",
                 "/usr/lib/python3/dist-packages/afterd/design/validate_doc_update.js",
                 "/lib/systemd/system/after@.service",
                 "/lib/systemd/system/after.target",
                 "/etc/after/after.conf",
                 "/usr/lib/sysusers.d/after.conf",
                 "/usr/lib/tmpfiles.d/after.conf",
                 "/usr/share/man/man1/after.1.gz",
                 "/usr/share/man/man5/after.conf.5.gz",
                 "/usr/share/bash-completion/completions/after",
                 "/usr/share/doc/after/copyright"):
        assert path in listing, path
    assert listing["/usr/bin/after"] == "-rwxr-xr-x"
    assert listing["/etc/after/after.conf"] == "-rw-r-----"
    examples = {Path(p).name for p in listing if p.startswith("/usr/share/after/jobs/")}
    assert {p.name for p in (ROOT / "jobs").glob("*.py")} <= examples
    # Debian policy: nothing shipped under /usr/local (the jobs folder is made by postinst).
    assert not [p for p in listing if p.startswith("/usr/local/")]


def test_control_fields_name_debian_packages_and_the_conffile(build):
    deb = build["deb"]
    assert deb_field(deb, "Version") == VERSION
    assert deb_field(deb, "Architecture") == "all"
    depends = {d.strip().split()[0] for d in deb_field(deb, "Depends").split(",")}
    assert set(DEBIAN_DEPENDS) <= depends
    assert deb_field(deb, "Recommends") == "couchdb, prometheus-node-exporter"
    conffiles = subprocess.run(["dpkg-deb", "--info", str(deb), "conffiles"], capture_output=True,
                               text=True, check=True).stdout.split()
    assert conffiles == ["/etc/after/after.conf"]


def test_config_template_documents_every_setting_with_a_valid_example(tmp_path):
    template = (ROOT / "packaging" / "after.conf").read_text()
    # As shipped, everything is commented out: the built-in defaults apply.
    shipped = tmp_path / "shipped.conf"
    shipped.write_text(template)
    assert config.read_config_file(shipped, required=True) == {}
    # Uncommenting every `#key = value` line gives a file after accepts, naming every setting.
    examples = "\n".join(line[1:] for line in template.splitlines()
                         if re.match(r"^#[a-z_]+ = ", line))
    uncommented = tmp_path / "uncommented.conf"
    uncommented.write_text(examples)
    assert set(config.read_config_file(uncommented, required=True)) == set(config.FIELD_NAMES)


# --- installed in a booted bookworm --------------------------------------------------------

@pytest.fixture(scope="module")
def box(build):
    """A booted bookworm with the package installed by apt from the .deb."""
    harness = pytest.importorskip("systemd_harness")
    missing = harness.missing_requirements()
    require_tool(missing is None, f"a systemd container ({missing})")
    container = harness.Container(harness.build_rootfs(), "deb")
    container.boot()
    try:
        # So that apt has a dependency to fetch from Debian, not only ones already there.
        container.run(["apt-get", "purge", "-y", "-q", "python3-sdnotify"], timeout_s=APT_TIMEOUT_S)
        container.push(build["deb"], DEB_IN_BOX)
        # --no-install-recommends: prometheus-node-exporter (recommended) would listen on the
        # host's port 9100 (the container shares its network); a stand-in tests the folder.
        container.install_output = container.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", DEB_IN_BOX], timeout_s=APT_TIMEOUT_S,
            env={"DEBIAN_FRONTEND": "noninteractive"}).stdout
        yield container
    finally:
        container.stop()


def sh(box, script: str) -> str:
    return box.run(script, check=False).stdout.strip()


@pytest.mark.systemd
def test_apt_pulls_dependencies_only_from_debian(box):
    new = re.search(r"NEW packages will be installed:\n((?:  .*\n)+)", box.install_output)
    assert new, box.install_output
    pulled = set(new.group(1).split()) - {"after"}
    assert "python3-sdnotify" in pulled
    for package in pulled:
        # Every dependency comes from the configured Debian archive.
        assert box.run(["apt-cache", "madison", package]).stdout.strip(), package


@pytest.mark.systemd
def test_after_command_runs(box):
    assert box.run(["after", "-V"]).stdout.strip() == f"after {afterd.__version__}"


@pytest.mark.systemd
def test_template_unit_is_installed_but_no_worker_is_enabled_or_running(box):
    assert "ExecStart=/usr/bin/after start %i" in box.run(["systemctl", "cat", "after@.service"]).stdout
    assert sh(box, "systemctl list-units --all --plain --no-legend 'after@*'") == ""
    assert sh(box, "ls /etc/systemd/system/after.target.wants 2>/dev/null") == ""
    # The target is what starts enabled workers at boot, so the package enables it.
    assert sh(box, "systemctl is-enabled after.target") == "enabled"


@pytest.mark.systemd
def test_config_is_readable_by_root_and_the_after_group_only(box):
    assert sh(box, "stat -c '%a %U %G' /etc/after/after.conf") == "640 root after"
    assert sh(box, "dpkg-query -W -f='${Conffiles}' after").split()[0] == "/etc/after/after.conf"


@pytest.mark.systemd
def test_after_is_a_system_user_without_login(box):
    name, _, uid, _, _, home, shell = sh(box, "getent passwd after").split(":")
    assert int(uid) < 1000
    assert home == "/var/lib/after"
    assert shell == "/usr/sbin/nologin"
    assert sh(box, "stat -c '%a %U %G' /var/lib/after") == "750 after after"


@pytest.mark.systemd
def test_jobs_folder_is_made_and_examples_are_shipped(box):
    assert sh(box, "stat -c '%a %U %G' /usr/local/etc/after") == "755 root root"
    assert "shell.py" in sh(box, "ls /usr/share/after/jobs")


PROBE_DROP_IN = """\
# Stands in for the worker: exercises only the package's restart/stop of instances.
[Service]
Type=simple
ExecStart=
ExecStart=/bin/sleep infinity
ExecReload=
WatchdogSec=0
"""


def main_pid(box, unit: str) -> str:
    return sh(box, f"systemctl show -p MainPID --value {unit}")


@pytest.mark.systemd
def test_upgrade_restarts_running_instances(box):
    # Given a running instance of the template
    box.write("/etc/systemd/system/after@probe.service.d/probe.conf", PROBE_DROP_IN)
    box.run("systemctl daemon-reload && systemctl start after@probe")
    before = main_pid(box, "after@probe")
    assert before != "0"
    # When the package is upgraded (a reinstall runs the same maintainer scripts)
    box.run(["dpkg", "-i", DEB_IN_BOX], timeout_s=APT_TIMEOUT_S)
    # Then the instance runs again, as a new process
    assert sh(box, "systemctl is-active after@probe") == "active"
    assert main_pid(box, "after@probe") not in ("0", before)


ECHO_JOB = """\
def run(task):
    return {"arguments": task.arguments}
"""


NODE_EXPORTER_DIR = "/var/lib/prometheus/node-exporter"
# Stands in for prometheus-node-exporter (whose service would listen on the host's port 9100:
# the container shares its network): a package that ships the textfile folder, root:root 0755.
FAKE_NODE_EXPORTER = """\
set -e
d=$(mktemp -d)
mkdir -p "$d/DEBIAN" "$d/var/lib/prometheus/node-exporter"
printf 'Package: fake-node-exporter\\nVersion: 1\\nArchitecture: all\\nMaintainer: t <t@t.invalid>\\nDescription: t\\n' > "$d/DEBIAN/control"
dpkg-deb -b --root-owner-group "$d" /root/fake-node-exporter.deb >/dev/null
dpkg -i /root/fake-node-exporter.deb >/dev/null
"""


@pytest.mark.systemd
def test_metrics_folder_nothing_made_without_the_node_exporter_writable_with_it(box):
    # Given the package installed where no node exporter is: nothing of it was made
    assert sh(box, "test -e /var/lib/prometheus && echo present") == ""
    # When the node exporter's package brings its textfile folder (root:root 0755)
    box.run(FAKE_NODE_EXPORTER)
    # Then our dpkg trigger gave the "after" user write access to it, and nobody else
    assert sh(box, f"stat -c '%U %G' {NODE_EXPORTER_DIR}") == "root root"
    box.run(["runuser", "-u", "after", "--", "touch", f"{NODE_EXPORTER_DIR}/probe.prom"])
    assert sh(box, f"runuser -u nobody -- touch {NODE_EXPORTER_DIR}/x 2>&1 || echo refused").endswith("refused")
    box.run(["rm", f"{NODE_EXPORTER_DIR}/probe.prom"])


@pytest.mark.systemd
def test_enabled_worker_runs_a_task_as_the_after_user(box, couch_url, db_name):
    # Given a database, a job, and the worker's settings in /etc/after/after.conf
    requests.put(f"{couch_url}/{db_name}", timeout=10).raise_for_status()
    box.write("/usr/local/etc/after/echo_arguments.py", ECHO_JOB, mode="0644")
    # `cat >` keeps the file's owner and group (root:after); the URL is the host's: the
    # container shares its network.
    box.write("/etc/after/after.conf",
              f'couchdb_url = "{couch_url}"\ndatabase = "{db_name}"\n', mode="0640")
    task_id = uuid.uuid4().hex
    task = {"worker": "manobi", "date": "2020-01-01T00:00:00Z", "status": "waiting",
            "job": {"name": "echo_arguments", "arguments": ["1234"]}}
    requests.put(f"{couch_url}/{db_name}/{task_id}", data=json.dumps(task),
                 headers={"Content-Type": "application/json"}, timeout=10).raise_for_status()
    # When the operator enables the worker
    box.run(["systemctl", "enable", "--now", "after@manobi"], timeout_s=120)
    # Then the overdue task runs at once and its outcome is written back
    def done():
        doc = requests.get(f"{couch_url}/{db_name}/{task_id}", timeout=10).json()
        return doc if doc.get("status") in ("done", "error") else None
    doc = wait_for(done, 60, f"task done; journal: {box.journal('after@manobi')[-2000:]}")
    assert doc["status"] == "done", doc
    assert doc["result"] == {"arguments": ["1234"]}
    assert sh(box, "systemctl is-enabled after@manobi") == "enabled"
    assert sh(box, "systemctl show -p User --value after@manobi") == "after"
    # and, the node exporter's folder being there (the test above), its metrics are in it,
    # through the sandbox (ReadWritePaths=) and the ACL of the package's tmpfiles entry.
    metrics = f"{NODE_EXPORTER_DIR}/after_manobi_0.prom"
    done_runs = f"grep '^after_runs_total{{' {metrics} | grep 'outcome=\"done\"'"
    wait_for(lambda: sh(box, done_runs).endswith(" 1"),
             30, f"the metrics file; journal: {box.journal('after@manobi')[-2000:]}")
    assert sh(box, f"stat -c '%U %a' {metrics}") == "after 644"
    box.run(["systemctl", "disable", "--now", "after@manobi"], timeout_s=120)
    assert 'after_up{worker="manobi"' in sh(box, f"grep ^after_up {metrics}")
    assert sh(box, f"grep ^after_up {metrics}").endswith(" 0")


@pytest.mark.systemd
def test_purge_stops_instances_removes_config_and_state_but_keeps_jobs(box):
    # Given a job of the administrator's and a running instance
    box.write("/usr/local/etc/after/mine.py", ECHO_JOB, mode="0644")
    box.run("systemctl daemon-reload && systemctl start after@probe")
    # When the package is purged
    box.run(["apt-get", "purge", "-y", "-q", "after"], timeout_s=APT_TIMEOUT_S,
            env={"DEBIAN_FRONTEND": "noninteractive"})
    # Then the instance is stopped, the config and state are gone, the job stays
    assert sh(box, "systemctl is-active after@probe") in ("inactive", "failed")
    for gone in ("/etc/after", "/var/lib/after", "/usr/bin/after"):
        assert sh(box, f"test -e {gone} && echo present") == "", gone
    assert sh(box, "cat /usr/local/etc/after/mine.py") == ECHO_JOB.strip()
