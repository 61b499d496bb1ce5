"""What the WATS server's answers mean: the `Outcome` of one request, and the `ServerState`
those answers leave uploading in, with its transitions written once. Shared by the service, the
one-shot commands, the library fronts and the HTTP status views; imports nothing.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    """What an attempt means for the report and for the uploader."""

    STORED = "stored"  # 200/201
    REJECTED = "rejected"  # 400/413/422: report is bad, do not retry
    AUTH = "auth"  # 401/403, and 404 on the submit route: configuration problem, pause
    TRANSIENT = "transient"  # 408/429/5xx, read timeout or reset after the body was sent
    OFFLINE = "offline"  # connect error, DNS, TLS handshake, connect timeout


class ServerState(str, enum.Enum):
    """How the server stands for uploading, as its last answer left it. Its text is what
    status.json, /status, /metrics and the commands show.

    Transitions (`after()`; nothing goes back to UNKNOWN)::

        (start)  -> UNKNOWN   nothing answered yet
        any      -> ONLINE    an upload stored, or a probe answered (Outcome.STORED)
        any      -> PAUSED    credentials or server_url refused (Outcome.AUTH: 401/403, a
                              redirect, no WATS API at the address); waits for a fix
        any      -> OFFLINE   no connection (Outcome.OFFLINE); for a probe also a server
                              error or timeout (Outcome.TRANSIENT)
        same                  an upload REJECTED or TRANSIENT: that is about the report, not
                              the server (a run of them holds uploads off: the dispatcher)

    While OFFLINE or PAUSED nothing is sent: the server is probed every queue.probe_interval,
    and at once when the server settings change.
    """

    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def can_send(self) -> bool:
        """False while uploads wait for the server (offline) or for a fix (paused)."""
        return self not in (ServerState.OFFLINE, ServerState.PAUSED)

    @staticmethod
    def after(outcome: Outcome, *, probe: bool = False) -> ServerState | None:
        """The state an answer moves the server to; None: the answer says nothing about the
        server (see the transitions above)."""
        return (_AFTER_PROBE if probe else _AFTER_UPLOAD).get(outcome)


_AFTER_UPLOAD = {
    Outcome.STORED: ServerState.ONLINE,
    Outcome.AUTH: ServerState.PAUSED,
    Outcome.OFFLINE: ServerState.OFFLINE,
}
_AFTER_PROBE = {**_AFTER_UPLOAD, Outcome.TRANSIENT: ServerState.OFFLINE}
