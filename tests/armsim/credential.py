"""A TokenCredential for the simulator: hands out a fixed bearer token, records the scopes asked."""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken

__all__ = ["StaticTokenCredential"]


class StaticTokenCredential:
    """Implements azure.core.credentials.TokenCredential without any identity service."""

    def __init__(self, token: str = "armsim-token", lifetime_s: int = 3600) -> None:  # noqa: S107
        self.token = token
        self.lifetime_s = lifetime_s
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + self.lifetime_s)

    def close(self) -> None:
        """Nothing to release; present because clients call it on exit."""
