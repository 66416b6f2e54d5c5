"""A real systemd for tests: a debootstrapped Debian rootfs booted with systemd-nspawn.

The test machines' PID 1 is not systemd, so unit files are tested in a container
whose PID 1 is. Usage (as root):

    rootfs = build_rootfs()                    # once per machine, cached outside the checkout
    with Container(rootfs, "units", binds_ro={checkout: "/src"}) as box:   # boots, stops on exit
        box.write("/etc/systemd/system/x.service", text)
        box.run(["systemctl", "start", "x"])   # -> CompletedProcess, raises on non-zero
        print(box.journal("x"))

What keeps the container off the host (each point measured, see the project's notes):
- --volatile=overlay: every write lands in a tmpfs, the cached rootfs stays clean and
  each boot starts fresh;
- nspawn runs inside `unshare --mount --propagation private` with a private tmpfs on
  /run/systemd (nspawn keeps lock directories there) and cgroup2 mounted on
  /sys/fs/cgroup after the process moved into a child cgroup of its own: the container
  touches only that cgroup, and teardown is `cgroup.kill`, never a kill by name;
- --register=no --keep-unit: no machined or D-Bus on the host needed;
- every host-side command runs under `timeout -k`, so nothing can hang a test run.
The network is shared with the host: the container reaches servers on 127.0.0.1.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

SUITE = "bookworm"
INCLUDE = ("systemd", "systemd-sysv", "dbus", "python3", "procps", "python3-requests",
           "python3-watchdog", "python3-dateutil", "python3-sdnotify", "ca-certificates")
# Timers and gettys that would wake apt/dpkg or fight for the console during tests.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
                "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "man-db.timer",
                "console-getty.service", "getty@.service")
# Bump when the recipe below changes, so a stale cached rootfs is not reused.
RECIPE_VERSION = "1"
CACHE_DIR = Path(os.environ.get("AFTER_TEST_ROOTFS_CACHE", "/var/tmp"))
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEBOOTSTRAP_TIMEOUT_S = 1200
BOOT_TIMEOUT_S = 90
HALT_TIMEOUT_S = 20
# Upper bound on a container's life, so one leaked by a crashed test run dies on its own.
MAX_LIFE_S = 3 * 3600


class HarnessError(RuntimeError):
    """The container could not be built, booted or reached; the message says why."""


def missing_requirements() -> str | None:
    """What this machine lacks to boot containers, or None when it has everything."""
    if os.geteuid() != 0:
        return "root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "unshare", "timeout"):
        if shutil.which(tool) is None:
            return tool
    try:
        cgroup2_mount()
    except HarnessError:
        return "a cgroup2 hierarchy"
    return None


# --- the rootfs ---------------------------------------------------------------------------

def rootfs_path(include=INCLUDE, suite=SUITE) -> Path:
    key = hashlib.sha256(f"{RECIPE_VERSION} {suite} {','.join(sorted(include))}".encode()).hexdigest()[:12]
    return CACHE_DIR / f"after-test-rootfs-{key}"


def _apt_targets() -> list[tuple[str, str, str]]:
    """(site, release, component) rows of the host's own apt configuration."""
    out = subprocess.run(["apt-get", "indextargets", "--format", "$(SITE) $(RELEASE) $(COMPONENT)"],
                         capture_output=True, text=True, timeout=60).stdout
    return [tuple(line.split()) for line in out.splitlines() if len(line.split()) == 3]


def apt_mirror(suite=SUITE) -> str:
    """The Debian mirror the host's apt uses for `suite`: never a hard-coded host."""
    for site, release, _ in _apt_targets():
        if release == suite:
            return site
    raise HarnessError(f"no apt source for {suite} in the host's apt configuration (run apt-get update)")


def build_rootfs(include=INCLUDE, suite=SUITE) -> Path:
    """Debootstrap the rootfs once into the cache; later calls (and other processes) reuse it.

    Built in a temporary directory and renamed into place, so an interrupted build never
    leaves a half rootfs behind under the final name.
    """
    path = rootfs_path(include, suite)
    if (path / "lib/systemd/systemd").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / (path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # a concurrent test session waits for our build
        if (path / "lib/systemd/systemd").exists():
            return path
        tmp = path.parent / f"{path.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(
            ["timeout", "-k", "10", str(DEBOOTSTRAP_TIMEOUT_S), "debootstrap", "--variant=minbase",
             f"--include={','.join(include)}", suite, str(tmp), apt_mirror(suite)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise HarnessError(f"debootstrap failed ({proc.returncode}): {' | '.join(tail)}")
        _configure_rootfs(tmp, suite)
        tmp.rename(path)
    return path


def _configure_rootfs(root: Path, suite: str):
    # apt inside uses the same sites as the host (for installing a .deb's dependencies).
    sources = sorted({f"deb {site} {rel} {comp}\n" for site, rel, comp in _apt_targets()
                      if rel in (suite, f"{suite}-updates", f"{suite}-security")})
    (root / "etc/apt/sources.list").write_text("".join(sources))
    (root / "etc/hostname").unlink(missing_ok=True)   # the hostname is nspawn's machine name
    # Empty, not absent: each boot gets a fresh transient machine id.
    (root / "etc/machine-id").write_text("")
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")


# --- cgroups ------------------------------------------------------------------------------

def cgroup2_mount() -> Path:
    """Where the host mounts cgroup2: /sys/fs/cgroup (pure v2) or /sys/fs/cgroup/unified."""
    for path in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (path / "cgroup.procs").exists() and (path / "cgroup.controllers").exists():
            return path
    raise HarnessError("no cgroup2 hierarchy mounted (a pure cgroup v1 host is not supported)")


def _own_cgroup2() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise HarnessError("this process has no cgroup2 membership")


def _kill_cgroup(cg: Path, timeout_s=10.0):
    if not cg.exists():
        return
    if (cg / "cgroup.kill").exists():
        (cg / "cgroup.kill").write_text("1")       # kills the whole subtree
    else:                                          # kernels before 5.14
        for procs in cg.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    deadline = time.monotonic() + timeout_s
    while any(p.read_text().strip() for p in cg.rglob("cgroup.procs")) and time.monotonic() < deadline:
        time.sleep(0.05)
    for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        cg.rmdir()
    except OSError:
        pass


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# --- the container ------------------------------------------------------------------------

class Container:
    """One booted systemd-nspawn container. API: boot, run, write, push, journal, stop.

    binds_ro / binds map host paths to container paths (nspawn --bind-ro / --bind).
    Also a context manager: `with Container(...) as box:` boots and always stops.
    """

    def __init__(self, rootfs: Path, name: str = "test", *, binds_ro: dict | None = None,
                 binds: dict | None = None):
        self.rootfs = Path(rootfs)
        self.machine = f"after-{name}-{uuid.uuid4().hex[:6]}"
        self.binds_ro = dict(binds_ro or {})
        self.binds = dict(binds or {})
        self.cgroup = cgroup2_mount() / _own_cgroup2().lstrip("/") / self.machine
        self.state_dir = Path(f"/run/{self.machine}")   # host side: pid file and console log
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None                  # host PID of the container's PID 1

    def __enter__(self):
        self.boot()
        return self

    def __exit__(self, *exc):
        self.stop()

    def boot(self, timeout_s: float = BOOT_TIMEOUT_S):
        """Start the container and return once `systemctl is-system-running` says running."""
        self.state_dir.mkdir(parents=True)
        self.cgroup.mkdir()
        pid_file = self.state_dir / "nspawn.pid"
        nspawn = ["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--link-journal=no",
                  "--console=passive", f"--directory={self.rootfs}", "--volatile=overlay",
                  f"--machine={self.machine}"]
        nspawn += [f"--bind-ro={src}:{dest}" for src, dest in self.binds_ro.items()]
        nspawn += [f"--bind={src}:{dest}" for src, dest in self.binds.items()]
        nspawn += ["--boot"]
        # The mount namespace gets a private /run/systemd and a cgroup2 view in which our
        # own cgroup is the only one nspawn will touch.
        inner = ("mkdir -p /run/systemd && mount -t tmpfs -o mode=755,size=16m after-test /run/systemd"
                 " && mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup"
                 ' && echo $$ > "$0" && exec "$@"')
        outer = 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"'
        argv = ["sh", "-c", outer, str(self.cgroup), "_",
                "timeout", "-k", "15", str(MAX_LIFE_S),
                "unshare", "--mount", "--propagation", "private",
                "sh", "-c", inner, str(pid_file), *nspawn]
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        console = open(self.state_dir / "console.log", "wb")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=console,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        console.close()
        try:
            self._wait_booted(pid_file, timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_booted(self, pid_file: Path, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while self.leader is None:
            if self.proc.poll() is not None:
                raise HarnessError(f"systemd-nspawn exited ({self.proc.returncode}): {self.console()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"container PID 1 did not appear in {timeout_s}s: {self.console()}")
            if pid_file.exists() and pid_file.read_text().strip():
                nspawn_pid = int(pid_file.read_text())
                self.leader = next((p for p in _children(nspawn_pid) if _comm(p) == "systemd"), None)
            time.sleep(0.05)
        # PID 1 needs a moment before its bus answers ("Failed to connect to bus"): retry.
        state = ""
        while time.monotonic() < deadline:
            left_s = max(1.0, deadline - time.monotonic())
            state = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                             timeout_s=left_s).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        if state not in ("running", "degraded"):
            raise HarnessError(f"boot did not finish in {timeout_s}s (state {state!r}): {self.console()}")
        if state == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
            raise HarnessError(f"container booted degraded: {failed.strip()}")
        # Belt and braces: make sure commands really land inside, not on the host.
        if self.run(["cat", "/run/systemd/container"], check=False).stdout.strip() != "systemd-nspawn":
            raise HarnessError("commands do not reach the container (no /run/systemd/container)")

    def console(self, n_chars=2000) -> str:
        try:
            return (self.state_dir / "console.log").read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def run(self, cmd, check: bool = True, timeout_s: float = 60, input: str | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
        """Run `cmd` (a list, or a string for `sh -c`) inside the container as root.

        Returns the CompletedProcess (text stdout/stderr). check=True raises HarnessError
        with the command's output when it exits non-zero; timeout_s bounds it in any case.
        """
        if self.leader is None:
            raise HarnessError("the container is not booted")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        inner_env = {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
                     "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", **(env or {})}
        full = ["timeout", "-k", "5", str(timeout_s),
                "nsenter", f"--target={self.leader}", "--all", "--root", "--wd",
                "env", "-i", *(f"{k}={v}" for k, v in inner_env.items()), *argv]
        proc = subprocess.run(full, input=input, capture_output=True, text=True)
        if proc.returncode == 124:
            raise HarnessError(f"timed out after {timeout_s}s in the container: {argv}")
        if check and proc.returncode != 0:
            raise HarnessError(f"{argv} exited {proc.returncode} in the container:\n"
                               f"{proc.stdout}{proc.stderr}".rstrip())
        return proc

    def write(self, dest: str, text: str, mode: str = "0644"):
        """Create the file `dest` (and its folder) inside the container with `text`."""
        self.run(['sh', '-c', 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"',
                  "_", dest, mode], input=text)

    def push(self, src, dest: str, mode: str | None = None):
        """Copy the host file `src` to `dest` (a full file path) inside the container."""
        src = Path(src)
        mode = mode or oct(src.stat().st_mode & 0o7777)[2:]
        # Bytes, not text: a .deb goes through here too.
        proc = subprocess.run(
            ["timeout", "-k", "5", "120", "nsenter", f"--target={self.leader}", "--all", "--root",
             "--wd", "env", "-i", f"PATH={CONTAINER_PATH}", "sh", "-c",
             'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"', "_", dest, mode],
            input=src.read_bytes(), capture_output=True)
        if proc.returncode != 0:
            raise HarnessError(f"push {src} -> {dest} failed: {proc.stderr.decode(errors='replace')}")

    def journal(self, unit: str, *args: str) -> str:
        """The journal of `unit` (extra journalctl arguments allowed, e.g. "-p", "warning").

        journald receives lines asynchronously: poll with a deadline for what you expect.
        """
        return self.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit, *args],
                        check=False).stdout

    def stop(self):
        """Halt the container cleanly, then kill whatever is left in its cgroup."""
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM to `timeout` reaches nspawn, which asks PID 1 for an orderly halt.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(HALT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        _kill_cgroup(self.cgroup)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.leader = None
