"""An opt-in record of every secret value the emulator handed out or checked, for leak scans.

With ``EmulatorConfig(record_secrets=True)`` the emulator notes each ARTC Token (and the token
inside it), AuthToken, CallLogUrl (whole, and its signature raw and URL-encoded) and the signature
of every Authorization header it received. A test then searches its logs, XCom values and the like
for :meth:`IceEmulator.secrets` (which adds the AccessKey secret and the STS token). Off by
default: it costs memory for every request.
"""

from __future__ import annotations

import threading


class SecretLedger:
    """``{secret value: kind}`` of what the emulator handed out or checked, when enabled.

    :param enabled: record (True) or ignore every :meth:`record` call (False).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, value: str, kind: str) -> None:
        if self.enabled and value:
            with self._lock:
                self._values[value] = kind

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
