"""The scan part of `make demo`: Azurite and the ARM simulator with the bundled demo estate, then
the real `tunnelwatch scan` command against them, recording into Table Storage.

The simulator (tests/armsim) speaks ARM over HTTPS with its own throwaway CA; the scan trusts
it through --ca-bundle and authenticates with a dummy token file, exactly as it would with a
token from `az account get-access-token`. API server names do not resolve offline, so the
demo passes them with --resolve (public names -> a public address, private names -> the
private endpoint's address in the estate).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient

from shared.adapters.tables import FindingStore
from tests.armsim import SCENARIOS, ArmSimulator, load_estate
from tests.azurite import AzuriteUnavailable, running_azurite

SCENARIO = SCENARIOS / "demo.json"


def _resolve_args(estate: Any) -> list[str]:
    docs = list(estate.docs.values())
    pe_ips = {}
    for d in docs:
        if d.get("type") == "Microsoft.Network/networkInterfaces" and d["name"].startswith(
            "kube-apiserver.nic."
        ):
            rg = d["id"].split("/")[4].lower()
            pe_ips[rg] = d["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
    args: list[str] = []
    n = 0
    for d in docs:
        if str(d.get("type", "")).lower() != "microsoft.containerservice/managedclusters":
            continue
        props = d["properties"]
        n += 1
        if props.get("fqdn"):
            args += ["--resolve", f"{props['fqdn']}=20.61.14.{n + 1}"]
        private = props.get("privateFQDN")
        ip = pe_ips.get(str(props.get("nodeResourceGroup", "")).lower())
        if private and ip:
            args += ["--resolve", f"{private}={ip}"]
    return args


def run(exe: Path) -> tuple[int, str]:
    """Runs the scan; returns (exit code, a one-line summary for the demo's table)."""
    estate = load_estate(SCENARIO)
    subscription = next(iter(estate.subscriptions.values()))
    with contextlib.ExitStack() as stack:
        try:
            endpoints = stack.enter_context(running_azurite())
        except AzuriteUnavailable as exc:
            print(f"(skipped: Azurite is not available here: {exc}; `make demo` installs it)")
            return 0, "skipped (no Azurite)"
        sim = stack.enter_context(ArmSimulator(estate))
        token = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "token"
        token.write_text("demo-token-not-a-secret\n")
        argv = [
            "scan", "--subscription", subscription, "--arm-endpoint", sim.endpoint,
            "--ca-bundle", sim.ca_path, "--metrics-endpoint", sim.endpoint,
            "--access-token-file", str(token), "--no-dns",
            *_resolve_args(estate), "--record", "--quiet",
        ]  # fmt: skip
        shown = "tunnelwatch " + shlex.join(argv)
        print(f"$ {shown[:300]} ...", flush=True)
        env = {**os.environ, "AzureWebJobsStorage": endpoints.connection_string}
        proc = subprocess.run(
            [str(exe), *argv], capture_output=True, text=True, timeout=300, env=env, check=False
        )
        print(proc.stdout, end="")
        if proc.stderr:
            print(proc.stderr, end="")
        tables = TableServiceClient.from_connection_string(endpoints.connection_string)
        stored = FindingStore(tables).open_findings(subscription=subscription)
        print(
            f"simulator served {sim.total_calls()} ARM call(s); "
            f"{len(stored)} open finding(s) recorded in Table Storage (Azurite)"
        )
        return proc.returncode, f"{len(stored)} findings, {sim.total_calls()} ARM calls"
