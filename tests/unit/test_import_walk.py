"""The layering, read from the source: the core imports no SDK, and one module builds clients.

- No module under shared/jobs, shared/analysis, shared/checks (or shared/core) imports `azure`.
- SDK clients and credentials are constructed only by the composition root (shared/compose.py)
  and the construction helpers of shared/adapters/clients.py; the ARM, metrics and credential
  helpers are called by the root alone (`queue_clients` by ProbeQueue's named constructors,
  which the root calls, so a sibling queue of the same account gets its client the same way).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ("shared/jobs", "shared/analysis", "shared/checks", "shared/core")
PRODUCT = ("shared", "functions", "function_app.py")
BUILDERS = {"shared/compose.py", "shared/adapters/clients.py"}
HELPERS = {
    "default_credential",
    "build_clients",
    "build_monitor_client",
    "build_metrics_batch_client",
}


def _modules(*roots: str) -> list[Path]:
    out: list[Path] = []
    for r in roots:
        p = ROOT / r
        out += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return out


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _sdk_names(tree: ast.AST) -> set[str]:
    """Names bound in this module to classes of azure.* SDKs that are clients or credentials."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("azure"):
            for a in node.names:
                if a.name.endswith(("Client", "Credential")):
                    bound.add(a.asname or a.name)
    return bound


def _constructions(tree: ast.AST) -> list[str]:
    """SDK client/credential classes called (constructor or from_* classmethod) here."""
    sdk = _sdk_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in sdk:
            found.append(f.id)
        elif (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and f.value.id in sdk
            and f.attr.startswith("from_")
        ):
            found.append(f"{f.value.id}.{f.attr}")
    return found


def _helper_calls(tree: ast.AST) -> list[str]:
    return [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in HELPERS
    ]


def test_the_core_imports_no_azure() -> None:
    offenders = {
        _rel(p): [m for m in _imports(ast.parse(p.read_text())) if m.split(".")[0] == "azure"]
        for p in _modules(*CORE)
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) > 20  # the walk saw the modules (shared/jobs alone has several)


def test_only_the_composition_root_builds_sdk_clients() -> None:
    built: dict[str, list[str]] = {}
    helpers: dict[str, list[str]] = {}
    for p in _modules(*PRODUCT):
        tree = ast.parse(p.read_text())
        if calls := _constructions(tree):
            built[_rel(p)] = calls
        if (calls := _helper_calls(tree)) and _rel(p) not in BUILDERS:
            helpers[_rel(p)] = calls
    assert set(built) - BUILDERS == set(), built
    assert helpers == {}  # the helpers of clients.py are called by the root alone
    assert set(built) == BUILDERS, built  # the walk saw both
    assert {"QueueClient", "QueueClient.from_connection_string"} <= set(
        built["shared/adapters/clients.py"]
    )


def test_the_walk_sees_a_client_built_elsewhere() -> None:
    # the control: the walk recognises a construction the way the product writes them
    tree = ast.parse(
        "from azure.data.tables import TableServiceClient\n"
        "from azure.identity import DefaultAzureCredential as D\n"
        "TableServiceClient.from_connection_string('x')\nD()\n"
        "from shared.adapters.clients import build_clients\nbuild_clients(c, 's')\n"
    )
    assert _constructions(tree) == ["TableServiceClient.from_connection_string", "D"]
    assert _helper_calls(tree) == ["build_clients"]
