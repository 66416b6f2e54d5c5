"""sd_notify for the worker: READY, STATUS, WATCHDOG, RELOADING, STOPPING (design §7).

Everything is a no-op when NOTIFY_SOCKET is unset (not run by systemd, or a unit that
is not Type=notify), so the worker calls these unconditionally.
"""

import logging
import os
from datetime import datetime, timezone

import sdnotify

from afterd import clock

log = logging.getLogger("after.notify")


class Notifier:
    """Sends sd_notify messages through python3-sdnotify (bookworm: 0.3.2), never blocking.

    sdnotify connects once, at construction, to $NOTIFY_SOCKET (an abstract socket
    when it starts with "@"). Its socket is made non-blocking: a datagram socket
    queues only net.unix.max_dgram_qlen messages (10 by default), and when whoever
    owns NOTIFY_SOCKET does not read for a while (a busy PID 1, a test harness), a
    blocking send would hang the worker's main loop for good: no run, no cancel, no
    SIGTERM. sd_notify(3) is best-effort, and so is this: a message that finds the
    queue full is dropped, logged once per stall, and the state it carried (READY,
    STOPPING, the latest STATUS) is sent again on the next call that finds room.
    """

    def __init__(self):
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sd = None
        if self.enabled:
            self._sd = sdnotify.SystemdNotifier(debug=False)
            if self._sd.socket is not None:
                self._sd.socket.setblocking(False)
            else:
                self._sd = None
        self._last_status = None
        self._unsent: dict[str, str] = {}   # key -> message still owed (latest wins)
        self._stalled = False

    def _send(self, message: str, key: str | None = None) -> bool:
        """Send now or drop; a keyed message that was dropped is owed and retried."""
        if self._sd is None:
            return True
        if key is not None and key != "retry":
            self._unsent.pop(key, None)   # this message supersedes the one owed
            if self._unsent:
                self._retry()
        try:
            self._sd.socket.send(message.encode())
        except (BlockingIOError, InterruptedError):
            if not self._stalled:
                self._stalled = True
                log.warning("the sd_notify socket is full (nobody reads it): dropping messages "
                            "until it has room again")
            if key is not None and key != "retry":
                self._unsent[key] = message
            return False
        except OSError:
            return True   # no systemd listening any more: as sd_notify(3), not our problem
        if self._stalled and not self._unsent:
            self._stalled = False
            log.info("the sd_notify socket takes messages again")
        return True

    def _retry(self):
        for key, message in list(self._unsent.items()):
            if not self._send(message, "retry"):
                return
            del self._unsent[key]
        if self._stalled:
            self._stalled = False
            log.info("the sd_notify socket takes messages again")

    def ready(self):
        """Start-up (or a reload) is complete: `systemctl start` returns now."""
        self._send("READY=1", "state")

    def status(self, text: str):
        """The one-line STATUS= shown by `systemctl status`; sent only when it changed."""
        text = " ".join(text.split())   # a newline would end the STATUS= field early
        if text != self._last_status:
            self._last_status = text
            self._send(f"STATUS={text}", "status")
        elif self._unsent:
            self._retry()   # called every loop turn: the owed STATUS goes out when there is room

    def watchdog(self):
        """The main loop is alive; WatchdogSec= restarts the unit when this stops coming."""
        self._send("WATCHDOG=1")

    def reloading(self):
        """A reload started; send ready() when it is done.

        MONOTONIC_USEC is what systemd >= 253 wants with RELOADING=1 (Type=notify-reload);
        older versions ignore the field.
        """
        self._send(f"RELOADING=1\nMONOTONIC_USEC={int(clock.monotonic_s() * 1_000_000)}", "state")

    def stopping(self):
        """Shutdown began (SIGTERM): `systemctl status` shows "deactivating"."""
        self._send("STOPPING=1", "state")

    def watchdog_interval_s(self) -> float | None:
        """How often to call watchdog(): half of WatchdogSec, as sd_watchdog_enabled(3) advises.

        None when the watchdog is off or meant for another process (WATCHDOG_PID is set
        and not ours, e.g. inherited by a child).
        """
        return watchdog_interval_s(os.environ, os.getpid())


def watchdog_interval_s(env, pid: int) -> float | None:
    """Pure part of Notifier.watchdog_interval_s: env is a mapping like os.environ."""
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def status_line(scheduled: int, running: int, next_due: datetime | None, problem: str | None) -> str:
    """The STATUS= text: "12 scheduled, 1 running, next 2026-12-01T03:00:00Z".

    A problem comes first, because it is what an operator must see:
    "CouchDB unreachable, retrying in 8s; 12 scheduled, 1 running".
    """
    line = f"{scheduled} scheduled, {running} running"
    if next_due is not None:
        due = next_due.astimezone(timezone.utc).replace(microsecond=0, tzinfo=None)
        line += f", next {due.isoformat()}Z"
    if problem:
        line = f"{problem}; {line}"
    return line
