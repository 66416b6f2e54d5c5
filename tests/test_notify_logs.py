"""sd_notify messages through a real datagram socket, and journald-aware log lines."""

import logging
import os
import socket
from datetime import datetime, timezone

import pytest

from afterd import logs, notify
from afterd.notify import Notifier, status_line


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A real AF_UNIX datagram socket standing where systemd's would be."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def received(sock) -> list[str]:
    """Every datagram waiting on the socket, in order."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return messages


def test_notifier_sends_the_exact_sd_notify_messages(notify_socket):
    n = Notifier()
    n.ready()
    n.watchdog()
    n.stopping()
    assert received(notify_socket) == ["READY=1", "WATCHDOG=1", "STOPPING=1"]


def test_reloading_then_ready_brackets_a_reload(notify_socket):
    n = Notifier()
    n.reloading()
    n.ready()
    reloading, ready = received(notify_socket)
    first, monotonic = reloading.split("\n")
    assert first == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=") and int(monotonic.split("=")[1]) > 0
    assert ready == "READY=1"


def test_status_is_sent_only_when_it_changes(notify_socket):
    n = Notifier()
    n.status("1 scheduled, 0 running")
    n.status("1 scheduled, 0 running")
    n.status("1 scheduled, 1 running")
    n.status("bad\nline")
    assert received(notify_socket) == ["STATUS=1 scheduled, 0 running",
                                       "STATUS=1 scheduled, 1 running", "STATUS=bad line"]


def test_abstract_socket_names_work(monkeypatch):
    name = f"after-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        Notifier().ready()
        assert sock.recv(4096) == b"READY=1"


def test_everything_is_a_no_op_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    n.ready(), n.status("x"), n.watchdog(), n.reloading(), n.stopping()   # no error


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),   # 4242 is "us" below
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),      # meant for another process
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec(env, expected):
    assert notify.watchdog_interval_s(env, 4242) == expected


def test_watchdog_interval_reads_our_own_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval_s() == 2.0


def test_status_line():
    due = datetime(2026, 12, 1, 3, 0, 0, 437000, tzinfo=timezone.utc)
    assert status_line(12, 1, due, None) == "12 scheduled, 1 running, next 2026-12-01T03:00:00Z"
    assert status_line(0, 0, None, None) == "0 scheduled, 0 running"
    assert (status_line(12, 1, due, "CouchDB unreachable, retrying in 8s")
            == "CouchDB unreachable, retrying in 8s; 12 scheduled, 1 running, next 2026-12-01T03:00:00Z")


# --- logs ----------------------------------------------------------------------------------

@pytest.fixture
def log_file(tmp_path):
    """A real file as stderr, so JOURNAL_STREAM can name its device and inode."""
    with open(tmp_path / "stderr", "w+") as f:
        yield f
    logging.getLogger().handlers[:] = [h for h in logging.getLogger().handlers
                                       if not getattr(h, "_after_handler", False)]


def journal_stream_of(f) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def emit_samples(f):
    log = logging.getLogger("afterd.test")
    log.debug("debug line")
    log.info("info line", extra={"task_id": "t1"})
    logs.for_task(log, "t2").warning("warning line")
    log.error("error line")
    f.flush()
    return f.seek(0) or f.read()


def test_journal_lines_carry_priority_prefix_and_no_timestamp(log_file, monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(log_file))
    # No journal socket: the stream lines (on a host with journald, its socket would take them).
    logs.setup_logging("debug", stream=log_file, journal_socket=str(tmp_path / "no-journal"))
    assert emit_samples(log_file).splitlines() == [
        "<7>debug line", "<6>[task t1] info line", "<4>[task t2] warning line", "<3>error line"]


def test_every_line_of_a_traceback_keeps_the_priority(log_file, monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(log_file))
    logs.setup_logging("info", stream=log_file, journal_socket=str(tmp_path / "no-journal"))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("afterd.test").exception("job failed")
    log_file.flush()
    lines = log_file.seek(0) or log_file.read().splitlines()
    assert lines[0] == "<3>job failed" and lines[-1] == "<3>RuntimeError: boom"
    assert all(line.startswith("<3>") for line in lines)


def test_plain_lines_outside_journald_have_timestamp_and_level(log_file, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logs.setup_logging("info", stream=log_file)
    lines = emit_samples(log_file).splitlines()
    assert len(lines) == 3   # debug filtered out at "info"
    assert lines[0].endswith(" INFO afterd.test: [task t1] info line")
    assert datetime.strptime(lines[0][:19], "%Y-%m-%d %H:%M:%S")
    assert not lines[0].startswith("<")


def test_journal_stream_of_another_file_means_plain_lines(log_file, monkeypatch):
    # stderr redirected away from journald (e.g. `after start x 2>file` inside a unit)
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    logs.setup_logging("info", stream=log_file)
    assert not emit_samples(log_file).startswith("<")


def test_bad_level_is_refused_and_changes_nothing(log_file):
    logs.setup_logging("warning", stream=log_file)
    with pytest.raises(ValueError, match="log level: 'loud'"):
        logs.setup_logging("loud", stream=log_file)
    assert logging.getLogger().level == logging.WARNING
    assert sum(getattr(h, "_after_handler", False) for h in logging.getLogger().handlers) == 1
