"""The layering, read from the source: the core imports no SDK, and one module builds clients.

- No module under shared/jobs, shared/analysis, shared/checks (or shared/core) imports `azure`,
  nor anything under shared/adapters, directly or through the modules it imports: the data
  types the ports speak in are the core's (shared/core, shared/inventory), not an adapter's.
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


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _reached(tree: ast.AST) -> set[str]:
    """Module names this module imports: `from a import b` also names a.b (b may be a module),
    and every import names its parent packages (importing a.b runs a/__init__.py)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    for n in list(names):
        parts = n.split(".")
        names |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return names


def _transitive(start: Path) -> dict[str, str]:
    """Every module `start` reaches through imports -> the module that imports it (shared.*
    followed into its source; azure.* and other outside modules recorded, not followed)."""
    via: dict[str, str] = {}
    todo = [start]
    seen = {start}
    while todo:
        p = todo.pop()
        for name in sorted(_reached(ast.parse(p.read_text()))):
            if name in via:
                continue
            head = name.split(".")[0]
            if head not in ("shared", "azure"):
                continue
            via[name] = _rel(p) if p.is_relative_to(ROOT) else p.name
            f = _module_file(name) if head == "shared" else None
            if f is not None and f not in seen:
                seen.add(f)
                todo.append(f)
    return via


def _outside_the_core(via: dict[str, str]) -> dict[str, str]:
    return {
        n: by
        for n, by in via.items()
        if n.split(".")[0] == "azure" or n.startswith("shared.adapters")
    }


def test_the_core_reaches_no_adapter_and_no_azure_through_its_imports() -> None:
    offenders: dict[str, dict[str, str]] = {}
    walked: set[str] = set()
    for p in _modules(*CORE):
        via = _transitive(p)
        walked |= set(via)
        if bad := _outside_the_core(via):
            offenders[_rel(p)] = bad
    assert offenders == {}
    # the walk followed the imports (the jobs reach the core's records and the inventory model)
    assert {"shared.core.records", "shared.inventory.model", "shared.analysis.findings"} <= walked


def test_the_transitive_walk_sees_an_adapter_two_imports_away(tmp_path: Path) -> None:
    # the control: an adapter imported by a module the checked one imports is found, and so
    # is azure behind it (shared/compose.py imports adapters, which import the SDK)
    start = tmp_path / "job.py"
    start.write_text("from shared import compose\n")
    bad = _outside_the_core(_transitive(start))
    assert "shared.adapters.clients" in bad
    assert any(n.startswith("azure") for n in bad)


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
