"""Journal fields per task through journald's native protocol, against a socket standing where
journald's would be (issue 14). The real journald is in tests/test_systemd.py."""

import array
import logging
import os
import socket
import struct

import pytest

from afterd import journald, jobapi, logs


def decode(data: bytes) -> dict:
    """Parse one native-protocol datagram (the inverse of journald.encode)."""
    fields, i = {}, 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = end + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", data[end + 1:end + 9])
            value = data[end + 9:end + 9 + size]
            assert data[end + 9 + size:end + 10 + size] == b"\n"
            i = end + 10 + size
        fields[key.decode()] = value.decode()
    return fields


@pytest.fixture
def journal(tmp_path):
    path = str(tmp_path / "journal-socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def receive(sock) -> dict:
    data, fds, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
    for level, kind, payload in fds:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            (fd,) = array.array("i", payload[:4])
            with os.fdopen(fd, "rb") as f:   # a large entry comes as a memfd (read it from its start)
                f.seek(0)
                data = f.read()
    return decode(data)


@pytest.fixture
def under_systemd(tmp_path, monkeypatch):
    """stderr is journald's stream: a file whose dev:ino JOURNAL_STREAM names."""
    f = open(tmp_path / "stderr", "w+")
    st = os.fstat(f.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    yield f
    f.close()
    logs.setup_logging("warning", stream=open(os.devnull, "w"))


def test_encode_uses_the_binary_form_for_values_with_newlines():
    data = journald.encode({"MESSAGE": "two\nlines", "PRIORITY": 3, "TASK_ID": "t1", "RUN_ID": None})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\nPRIORITY=3\nTASK_ID=t1\n"
    assert decode(data) == {"MESSAGE": "two\nlines", "PRIORITY": "3", "TASK_ID": "t1"}


def test_a_line_about_a_run_carries_task_job_worker_and_run_fields(journal, under_systemd):
    path, sock = journal
    logs.setup_logging("info", stream=under_systemd, fields={"WORKER": "manobi"}, journal_socket=path)
    log = logging.getLogger("after.worker")
    log.warning("job %s failed", "generate_billing",
                extra=logs.about("t-42", "generate_billing", "t-42@2026-12-01T03:00:00Z#0"))
    fields = receive(sock)
    assert fields["MESSAGE"] == "[task t-42] job generate_billing failed"   # the same text as the stream
    assert fields["PRIORITY"] == "4"
    assert fields["TASK_ID"] == "t-42" and fields["JOB"] == "generate_billing"
    assert fields["RUN_ID"] == "t-42@2026-12-01T03:00:00Z#0" and fields["WORKER"] == "manobi"
    assert fields["SYSLOG_IDENTIFIER"] == "after"
    under_systemd.seek(0)
    assert under_systemd.read() == ""   # nothing went to the stream
    # A line about no task stays on the stream: journald attributes a stream to the unit
    # for good, a datagram only while its sender lives (afterd/journald.py).
    log.info("worker stopped")
    under_systemd.seek(0)
    assert under_systemd.read() == "<6>worker stopped\n"


def test_in_text_lines_keep_their_text_and_gain_the_fields(journal, under_systemd):
    path, sock = journal
    logs.setup_logging("info", stream=under_systemd, journal_socket=path)
    logging.getLogger("after.worker").info("task %s: owner gone", "t7",
                                           extra=logs.about_doc({"_id": "t7", "job": {"name": "j"}}, in_text=True))
    fields = receive(sock)
    assert fields["MESSAGE"] == "task t7: owner gone" and fields["TASK_ID"] == "t7" and fields["JOB"] == "j"


def test_a_traceback_travels_whole_and_a_huge_entry_as_a_memfd(journal, under_systemd):
    path, sock = journal
    logs.setup_logging("info", stream=under_systemd, journal_socket=path)
    log = logging.getLogger("after.worker")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("run failed", extra=logs.about("t1"))
    fields = receive(sock)
    assert fields["MESSAGE"].startswith("[task t1] run failed\nTraceback")
    assert fields["MESSAGE"].endswith("RuntimeError: boom") and fields["PRIORITY"] == "3"
    big = "x" * (1 << 20)   # larger than a datagram the socket takes (net.core.wmem_default)
    logging.getLogger("after.worker.quiet").propagate = False   # keep a megabyte out of pytest's report
    quiet = logging.getLogger("after.worker.quiet")
    quiet.addHandler(logging.getLogger().handlers[-1])
    quiet.info("big %s", big, extra=logs.about("t2"))
    fields = receive(sock)
    assert len(fields["MESSAGE"]) == len(big) + 14 and fields["MESSAGE"].startswith("[task t2] big xxx")
    assert fields["TASK_ID"] == "t2"


def test_without_the_socket_lines_go_to_the_stream_as_before(tmp_path, under_systemd):
    logs.setup_logging("info", stream=under_systemd, journal_socket=str(tmp_path / "none"))
    logging.getLogger("after.worker").info("ran", extra=logs.about("t1", "j", "r1"))
    under_systemd.seek(0)
    assert under_systemd.read() == "<6>[task t1] ran\n"


def test_journald_going_away_falls_back_to_the_stream(journal, under_systemd):
    path, sock = journal
    logs.setup_logging("info", stream=under_systemd, journal_socket=path)
    sock.close()
    os.unlink(path)   # journald restarting: nobody at the socket
    logging.getLogger("after.worker").warning("still said", extra=logs.about("t1"))
    under_systemd.seek(0)
    assert under_systemd.read() == "<4>[task t1] still said\n"


def test_outside_systemd_the_text_is_unchanged_by_the_fields(tmp_path, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    with open(tmp_path / "log", "w+") as f:
        logs.setup_logging("info", stream=f, fields={"WORKER": "manobi"})
        log = logging.getLogger("after.worker")
        log.info("job hello done", extra=logs.about("t1", "hello", "r1"))
        log.info("task %s: owner gone", "t2", extra=logs.about("t2", in_text=True))
        f.seek(0)
        lines = f.read().splitlines()
    logs.setup_logging("warning", stream=open(os.devnull, "w"))
    assert lines[0].endswith(" INFO after.worker: [task t1] job hello done")
    assert lines[1].endswith(" INFO after.worker: task t2: owner gone")


def test_a_jobs_own_logger_lines_carry_the_fields(journal, under_systemd, monkeypatch):
    path, sock = journal
    monkeypatch.setattr(journald, "SOCKET_PATH", path)
    monkeypatch.setattr("sys.stderr", under_systemd)
    task = jobapi.JobTask({"id": "t9", "worker": "manobi", "arguments": []}, "generate_billing", "t9@d#0")
    task.logger.warning("billing %d", 1234)
    fields = receive(sock)
    assert fields["MESSAGE"] == "job generate_billing task t9: WARNING billing 1234"
    assert (fields["TASK_ID"], fields["JOB"], fields["WORKER"], fields["RUN_ID"]) == (
        "t9", "generate_billing", "manobi", "t9@d#0")
    assert fields["PRIORITY"] == "4"
