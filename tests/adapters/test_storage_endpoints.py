"""Identity-based storage settings: the service URIs, or the account name the host also accepts."""

from __future__ import annotations

import pytest

from shared.adapters.storage_endpoints import service_uris
from shared.compose import storage_clients
from shared.errors import ConfigError

P = "AzureWebJobsStorage"


def test_the_account_name_form_gives_the_public_cloud_service_uris() -> None:
    env = {f"{P}__accountName": "twstore01"}
    assert service_uris(env, P) == (
        "https://twstore01.table.core.windows.net",
        "https://twstore01.queue.core.windows.net",
    )


def test_an_explicit_service_uri_wins_over_the_account_name() -> None:
    table = "https://twstore01.table.core.usgovcloudapi.net"
    env = {f"{P}__accountName": "twstore01", f"{P}__tableServiceUri": table}
    assert service_uris(env, P) == (table, "https://twstore01.queue.core.windows.net")


def test_the_service_uri_form_and_nothing_set() -> None:
    env = {
        f"{P}__tableServiceUri": "https://t.example",
        f"{P}__queueServiceUri": "https://q.example",
    }
    assert service_uris(env, P) == ("https://t.example", "https://q.example")
    assert service_uris({}, P) is None


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({f"{P}__accountName": "Not_An_Account"}, f"{P}__accountName"),
        ({f"{P}__accountName": "ab"}, f"{P}__accountName"),
        ({f"{P}__tableServiceUri": "https://t.example"}, f"{P}__queueServiceUri"),
    ],
)
def test_bad_or_half_settings_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        service_uris(env, P)
    (problem,) = info.value.problems
    assert problem.startswith(f"{key}: ")


def test_storage_clients_accept_the_account_name_form() -> None:
    env = {
        f"{P}__accountName": "twstore01",
        f"{P}__credential": "managedidentity",
        f"{P}__clientId": "00000000-0000-0000-0000-0000000000aa",
    }
    tables, queue = storage_clients(env, P, "probe-requests")
    assert tables.url.startswith("https://twstore01.table.core.windows.net")
    assert queue.sibling("probe-requests-poison").name == "probe-requests-poison"
    assert queue._client.url == "https://twstore01.queue.core.windows.net/probe-requests"


def test_storage_clients_without_any_form_say_what_to_set() -> None:
    with pytest.raises(ConfigError) as info:
        storage_clients({}, P, "probe-requests")
    (problem,) = info.value.problems
    assert f"{P}__accountName" in problem and f"{P}__tableServiceUri" in problem
