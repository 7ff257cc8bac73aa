"""The service URIs of an identity-based storage connection (`<prefix>__*` app settings).

The Functions host documents two forms for `AzureWebJobsStorage` without a connection string:
the service URIs (`__tableServiceUri`, `__queueServiceUri`, ...) and `__accountName`, from which
it derives `https://<account>.<service>.core.windows.net`. The host takes `__accountName` for the
public cloud only (not a sovereign cloud, not a custom DNS name), so this does too: elsewhere,
the service URIs are the form to set. A service URI set explicitly wins over the derived one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.errors import ConfigError

__all__ = ["PUBLIC_STORAGE_SUFFIX", "service_uris"]

PUBLIC_STORAGE_SUFFIX = "core.windows.net"
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")  # fullmatch only: storage account naming rules


def service_uris(environ: Mapping[str, str], prefix: str) -> tuple[str, str] | None:
    """(table service URI, queue service URI) of `prefix`'s identity-based connection, or None
    when no form of it is set. Raises ConfigError naming the key that is wrong or missing."""
    table = environ.get(f"{prefix}__tableServiceUri", "").strip()
    queue = environ.get(f"{prefix}__queueServiceUri", "").strip()
    account = environ.get(f"{prefix}__accountName", "").strip()
    if account:
        if not _ACCOUNT.fullmatch(account):
            raise ConfigError(
                [
                    f"{prefix}__accountName: not a storage account name "
                    "(3-24 lower-case letters and digits)"
                ]
            )
        table = table or f"https://{account}.table.{PUBLIC_STORAGE_SUFFIX}"
        queue = queue or f"https://{account}.queue.{PUBLIC_STORAGE_SUFFIX}"
    if not table and not queue:
        return None
    missing = [
        f"{prefix}__{key}" for key, uri in (("tableServiceUri", table), ("queueServiceUri", queue))
        if not uri
    ]  # fmt: skip
    if missing:
        raise ConfigError(
            [f"{key}: missing (or set {prefix}__accountName for both)" for key in missing]
        )
    return table, queue
