"""`tunnelwatch scan`: the subscription scan from a terminal, the same job the timer function runs.

With `az login` (or any DefaultAzureCredential source) it scans real Azure; `--arm-endpoint`
and `--ca-bundle` point it at a sovereign cloud or a private rig. Without a storage connection
it only prints; with one it records findings and history like the Functions app does.
"""

# The handler imports the Azure SDKs itself: main() registers this command for every call, and
# `tunnelwatch analyze` must not pay for those imports.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import Any

from shared.analysis.findings import Finding, Kind
from shared.cli.common import CommandResult, ExitCode, add_json_flag
from shared.config import SETTINGS
from shared.errors import InputError, StorageError
from shared.redaction import redact

__all__ = ["register"]

_DEFAULTS = {s.key: s.default or "" for s in SETTINGS}


def register(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "scan",
        help="scan every AKS cluster of the given subscriptions (NSG and SNAT checks)",
        description="Scan every AKS cluster of the given subscriptions: NSG paths of the "
        "tunnel (cause 1), egress to the API server (cause 4, ours for 443) and SNAT "
        "(cause 5). Exit 0 no problem, 1 problems, 3 only inconclusive or coverage gaps.",
    )
    p.add_argument(
        "--subscription", action="append", default=[], metavar="ID",
        help="subscription id (repeatable; default: TUNNELWATCH_SUBSCRIPTIONS)",
    )  # fmt: skip
    p.add_argument("--arm-endpoint", default=_DEFAULTS["ARM_ENDPOINT"], metavar="URL")
    p.add_argument("--ca-bundle", metavar="FILE", help="extra CA bundle for the ARM endpoint")
    p.add_argument(
        "--metrics-endpoint", metavar="URL",
        help="Azure Monitor batch metrics endpoint ({region} is replaced); default: derived "
        "from the ARM endpoint's cloud (https://{region}.metrics.monitor.azure.com)",
    )  # fmt: skip
    p.add_argument(
        "--access-token-file", metavar="FILE",
        help="use this bearer token instead of DefaultAzureCredential (never logged)",
    )  # fmt: skip
    p.add_argument(
        "--resolve", action="append", default=[], metavar="NAME=IP",
        help="use this address for an API server name (like curl --resolve); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--no-dns", action="store_true",
        help="resolve API server names only from --resolve (offline scans)",
    )  # fmt: skip
    p.add_argument(
        "--storage-connection-string", metavar="CONN",
        help="record findings in Table Storage (default: $AzureWebJobsStorage if set with "
        "--record); never printed",
    )  # fmt: skip
    p.add_argument("--record", action="store_true", help="record findings and queue probes")
    p.add_argument("--snat-threshold", type=int, default=int(_DEFAULTS["SNAT_THRESHOLD_PERCENT"]))
    p.add_argument("--snat-window", type=int, default=int(_DEFAULTS["SNAT_WINDOW_MINUTES"]))
    p.add_argument("--snat-min-bad", type=int, default=int(_DEFAULTS["SNAT_MIN_BAD_POINTS"]))
    p.add_argument("--probe-budget", type=int, default=int(_DEFAULTS["PROBE_BUDGET"]))
    p.add_argument("--check-legacy-ports", action="store_true", help="also TCP 9000 / UDP 1194")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_json_flag(p)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> CommandResult:
    from shared.adapters.credentials import StaticTokenCredential
    from shared.adapters.tables import FindingStore
    from shared.compose import (
        dns_resolver,
        make_credential,
        scan_deps,
        scan_options,
        static_resolver,
        storage_clients,
    )
    from shared.config import Settings
    from shared.jobs.scan import run_scan

    subs = args.subscription or [
        s for s in os.environ.get("TUNNELWATCH_SUBSCRIPTIONS", "").split(",") if s.strip()
    ]
    env = {
        "TUNNELWATCH_SUBSCRIPTIONS": ",".join(subs),
        "SNAT_THRESHOLD_PERCENT": str(args.snat_threshold),
        "SNAT_WINDOW_MINUTES": str(args.snat_window),
        "SNAT_MIN_BAD_POINTS": str(args.snat_min_bad),
        "PROBE_BUDGET": str(args.probe_budget),
        "ARM_ENDPOINT": args.arm_endpoint,
        "CHECK_LEGACY_TUNNEL_PORTS": "true" if args.check_legacy_ports else "false",
    }
    settings = Settings.from_env(env)  # the same validation as the app; ConfigError -> exit 2
    overrides = {}
    for item in args.resolve:
        name, sep, ip = item.partition("=")
        if not sep or not name or not ip:
            raise InputError("--resolve", f"{item!r} is not NAME=IP")
        overrides[name.strip()] = ip.strip()
    resolver = static_resolver(overrides, None if args.no_dns else dns_resolver)
    credential = (
        StaticTokenCredential.from_file(args.access_token_file)
        if args.access_token_file
        else make_credential(settings.arm_endpoint)
    )
    store = queue = None
    if args.record:
        conn = args.storage_connection_string or os.environ.get("AzureWebJobsStorage", "")  # noqa: SIM112 (the host's name)
        if not conn:
            raise InputError("--record", "needs --storage-connection-string or AzureWebJobsStorage")
        name = (
            "--storage-connection-string"
            if args.storage_connection_string
            else "AzureWebJobsStorage"
        )
        tables, queue = storage_clients({name: conn}, name, settings.probe_queue)
        store = FindingStore(tables, prefix=settings.table_prefix, damping=settings.damping)
        for ensure in (store.ensure_tables, queue.ensure):
            try:
                ensure()
            except StorageError as exc:
                # Scan anyway: its findings are still printed; its first write fails and
                # says so (exit 4).
                print(redact(f"tunnelwatch: warning: {exc}"), file=sys.stderr)
    progress = None if args.quiet or args.json else _progress
    deps = scan_deps(
        credential, arm_endpoint=settings.arm_endpoint, ca_bundle=args.ca_bundle,
        resolver=resolver, store=store, queue=queue, progress=progress,
        metrics_endpoint=args.metrics_endpoint,
    )  # fmt: skip
    outcome = run_scan(scan_options(settings), deps)  # the timer's options, from Settings
    if progress:
        sys.stderr.write("\n")
    findings = outcome.findings
    kinds = Counter(f.kind for f in findings)
    if outcome.storage_error:
        message = (
            f"{outcome.storage_error}; the scan ran and its findings are printed, but they "
            "were not all recorded (exit 4)"
        )
        return CommandResult(ExitCode.STORAGE, _document(outcome), _text(outcome), message)
    if kinds[Kind.PROBLEM]:
        code = ExitCode.PROBLEM
    elif findings or outcome.run.errors or outcome.run.clusters_failed:
        code = ExitCode.INCONCLUSIVE
    else:
        code = ExitCode.OK
    return CommandResult(code, _document(outcome), _text(outcome))


def _progress(line: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[Kscanning {line}")
    else:
        sys.stderr.write(f"scanning {line}\n")
    sys.stderr.flush()


def _document(outcome: Any) -> dict[str, Any]:
    run = outcome.run
    return {
        "run": {
            "id": run.run_id,
            "status": run.status.value,
            "started": run.started.isoformat(),
            "finished": run.finished.isoformat() if run.finished else None,
            "subscriptions": list(run.subscriptions),
            "clusters_scanned": run.clusters_scanned,
            "clusters_failed": list(run.clusters_failed),
            "arm_calls": run.arm_calls,
            "arm_calls_by_operation": dict(run.arm_calls_by_operation),
            "errors": list(run.errors),
            "storage_error": outcome.storage_error or None,
            "seconds": round(outcome.seconds, 3),
        },
        "clusters": [
            {
                "id": c.cluster.id,
                "name": c.cluster.name,
                "coverage": c.coverage.value,
                "notes": c.notes,
                "flows_evaluated": c.flows_evaluated,
                "findings": [f.to_json() for f in c.findings],
            }
            for c in outcome.clusters
        ],
        "probe_requests": [r.to_json() for r in outcome.probe_requests],
        "findings": [f.to_json() for f in outcome.findings],
    }


def _row(f: Finding, cluster: str) -> str:
    cause = "-" if f.cause is None else str(int(f.cause))
    pool = f.subject.node_pool or "-"
    return (
        f"  {f.severity.value:<8} {cause:<5} {f.kind.value:<12} {cluster:<16} {pool:<10} {f.title}"
    )


def _fix_lines(f: Finding) -> list[str]:
    """The whole fix under its finding: every command in order (a fix in two steps is
    numbered, since one step alone may fix nothing), then its notes."""
    rem = f.remediation
    if rem is None or not (rem.commands or rem.notes):
        return []
    lines = [f"      fix: {rem.summary}"]
    many = len(rem.commands) > 1
    for i, command in enumerate(rem.commands, 1):
        lines.append(f"        {f'{i}. ' if many else ''}$ {command}")
    lines += [f"        note: {n}" for n in rem.notes]
    return lines


def _text(outcome: Any) -> str:
    run = outcome.run
    lines = [
        f"tunnelwatch scan {run.run_id}: {run.clusters_scanned} cluster(s), "
        f"{len(run.clusters_failed)} failed, {len(outcome.findings)} finding(s), "
        f"{run.arm_calls} ARM call(s) in {outcome.seconds:.1f} s",
    ]
    if outcome.findings:
        lines.append(
            f"  {'SEVERITY':<8} {'CAUSE':<5} {'KIND':<12} {'CLUSTER':<16} {'POOL':<10} FINDING"
        )
    for c in outcome.clusters:
        for f in c.findings:
            lines.append(_row(f, c.cluster.name))
            lines += _fix_lines(f)
    notes = [(c.cluster.name, n) for c in outcome.clusters for n in c.notes]
    if notes:
        lines.append("notes:")
        lines += [f"  {name}: {note}" for name, note in notes]
    if run.errors:
        lines.append("errors:")
        lines += [f"  {e}" for e in run.errors]
    if outcome.probe_requests:
        lines.append(f"node probes requested: {len(outcome.probe_requests)}")
    if not outcome.findings:
        lines.append("no tunnel problem found")
    return "\n".join(lines)
