"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1) without libsystemd.

A datagram to the socket named by ``$NOTIFY_SOCKET``; a no-op when it is not set
(not run by systemd, or ``Type=simple``).
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends notify messages to systemd, if it is listening."""

    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET", "")
        self._addr = ("\0" + addr[1:]) if addr.startswith("@") else addr
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        #: Seconds between WATCHDOG=1 pings (half systemd's timeout), or None.
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and ours else None

    @property
    def enabled(self) -> bool:
        """True when run by systemd with a notify socket."""
        return bool(self._addr)

    def send(self, message: str) -> None:
        """Send ``message`` (e.g. ``READY=1``); errors are ignored, as systemd may be gone."""
        if not self._addr:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self._addr)
                s.sendall(message.encode())
        except OSError:
            pass
