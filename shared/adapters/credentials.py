"""Credentials for the CLI: Azure's default chain, or a bearer token the user already has.

`--access-token-file` serves environments where the scanning machine cannot log in itself
(the token comes from `az account get-access-token --query accessToken -o tsv` elsewhere) and
private test rigs. The token is read once and never logged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken

from shared.errors import InputError

__all__ = ["StaticTokenCredential"]


class StaticTokenCredential:
    """A TokenCredential that always returns one token (ARM checks it; we cannot refresh it)."""

    def __init__(self, token: str) -> None:
        if not token or any(c.isspace() for c in token):
            raise InputError("access token", "empty, or contains white space")
        self._token = token

    @classmethod
    def from_file(cls, path: str) -> StaticTokenCredential:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(path, f"cannot read the access token: {exc.strerror or exc}") from None
        return cls(text)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:
        return "StaticTokenCredential(<redacted>)"
