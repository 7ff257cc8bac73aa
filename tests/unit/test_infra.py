"""Checks of the deployment files (infra/, azure.yaml, docs/deploy.md) that need no Bicep compiler.

No Bicep compiler can be installed on these machines, so these tests read the .bicep files as
text, with a small reader for the subset of the language they use (one declaration per line,
`{ key: value }` blocks), and check what ties them to the product: every key of
shared/config.py SETTINGS is an app setting with the same default and range, module parameters
and outputs match their callers, role ids are known built-in roles, role assignments are
named guid(scope, principal, role), the parameters file and azure.yaml agree with main.bicep,
and nothing secret-looking is written down.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.adapters.tables.keys import TableNames
from shared.config import SETTINGS, Setting, Settings
from shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
MODULES = INFRA / "modules"
PARAMETERS = INFRA / "main.parameters.json"
AZURE_YAML = ROOT / "azure.yaml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# Built-in role definition ids this project may use, with their names, from Microsoft's
# "Azure built-in roles" pages (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BUILTIN_ROLES = {
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
}
# What the template grants (Monitoring Reader is not needed: Reader's */read covers metrics).
EXPECTED_ROLES = {
    "Reader",
    "Monitoring Metrics Publisher",
    "Storage Blob Data Owner",
    "Storage Queue Data Contributor",
    "Storage Table Data Contributor",
}
# Settings whose Bicep default is not the SETTINGS default, and why (docs/deploy.md says so).
DEFAULT_EXCEPTIONS = {
    # required in the app; the template fills in the deployment's own subscription
    "TUNNELWATCH_SUBSCRIPTIONS": "subscription().subscriptionId",
    # the cloud deployed to (https://management.azure.com in the public cloud)
    "ARM_ENDPOINT": "cloudArmEndpoint",
}
# App settings Flex Consumption deprecates (functions-app-settings.md, "Flex Consumption plan
# deprecations"): runtime and deployment live in functionAppConfig instead.
FLEX_DEPRECATED = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
)
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
A_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


# ---- a reader for the Bicep subset used in infra/ -------------------------------------------


def strip_comments(text: str) -> str:
    """Drop // comments, keeping string literals (which may hold '//', as in URLs)."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif ch == "'":
                in_string = False
        elif ch == "'":
            in_string = True
            out.append(ch)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def balanced(text: str, start: int) -> str:
    """The text from the bracket at `start` to its matching bracket, both included."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[text[start]]]
    in_string = False
    for i in range(start + 1, len(text)):
        ch = text[i]
        if in_string:
            if ch == "'" and text[i - 1] != "\\":
                in_string = False
        elif ch == "'":
            in_string = True
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}])":
            assert ch == stack.pop(), f"unbalanced {ch!r} at {i}"
            if not stack:
                return text[start : i + 1]
    raise AssertionError(f"no closing bracket for {text[start]!r} at {start}")


def top_level_entries(block: str) -> dict[str, str]:
    """`key: value` entries at the first level of a `{ ... }` block (keys unquoted or quoted)."""
    inner = block[1:-1]
    entries: dict[str, str] = {}
    depth = 0
    for line in inner.splitlines():
        stripped = line.strip()
        if depth == 0:
            m = re.match(r"^('[^']*'|[A-Za-z_][\w-]*)\s*:\s*(.*)$", stripped)
            if m:
                entries[m.group(1).strip("'")] = m.group(2).strip()
        depth += sum(stripped.count(c) for c in "{[(") - sum(stripped.count(c) for c in "}])")
    return entries


def split_args(call: str) -> list[str]:
    """The top-level arguments of `name(a, b(c, d), e)`."""
    inner = balanced(call, call.index("("))[1:-1]
    args, depth, current = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        current += ch
    args.append(current.strip())
    return args


@dataclass
class Param:
    name: str
    type: str
    default: str | None
    decorators: list[str] = field(default_factory=list)

    def decorator_int(self, name: str) -> int | None:
        for d in self.decorators:
            m = re.fullmatch(rf"@{name}\((-?\d+)\)", d)
            if m:
                return int(m.group(1))
        return None


@dataclass
class Bicep:
    path: Path
    text: str  # without comments

    @classmethod
    def load(cls, path: Path) -> Bicep:
        return cls(path, strip_comments(path.read_text()))

    @property
    def params(self) -> dict[str, Param]:
        found: dict[str, Param] = {}
        pending: list[str] = []
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if line.startswith("@"):
                decorator = line
                while decorator.count("(") > decorator.count(")"):
                    i += 1
                    decorator += " " + lines[i].strip()
                pending.append(decorator)
            elif m := re.match(r"^param\s+(\w+)\s+(\w+)(?:\s*=\s*(.+))?$", line):
                found[m.group(1)] = Param(m.group(1), m.group(2), m.group(3), pending)
                pending = []
            elif line:
                pending = []
            i += 1
        return found

    @property
    def outputs(self) -> dict[str, str]:
        return dict(re.findall(r"(?m)^output\s+(\w+)\s+(\w+)\s*=", self.text))

    def block_after(self, pattern: str) -> str:
        m = re.search(pattern, self.text)
        assert m, f"{self.path.name}: nothing matches {pattern!r}"
        return balanced(self.text, self.text.index("{", m.start()))

    def resources(self, type_prefix: str) -> list[tuple[str, str, str]]:
        """(symbolic name, condition or '', body) of every resource of a type."""
        found = []
        pattern = rf"(?m)^\s*resource\s+(\w+)\s+'{re.escape(type_prefix)}@[\w-]+'\s*=\s*(if\s*\(([^)]*)\)\s*)?\{{"
        for m in re.finditer(pattern, self.text):
            body = balanced(self.text, m.end() - 1)
            found.append((m.group(1), m.group(3) or "", body))
        return found

    @property
    def modules(self) -> dict[str, tuple[Path, str]]:
        found = {}
        for m in re.finditer(r"(?m)^module\s+(\w+)\s+'([^']+)'\s*=\s*\{", self.text):
            found[m.group(1)] = (
                (self.path.parent / m.group(2)).resolve(),
                balanced(self.text, m.end() - 1),
            )
        return found


def camel(key: str) -> str:
    first, *rest = key.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)


def bicep_files() -> list[Path]:
    return [MAIN, *sorted(MODULES.glob("*.bicep"))]


@pytest.fixture(scope="module")
def main() -> Bicep:
    return Bicep.load(MAIN)


@pytest.fixture(scope="module")
def settings_block(main: Bicep) -> dict[str, str]:
    return top_level_entries(main.block_after(r"var tunnelwatchSettings\s*="))


# ---- the reader itself (so the checks below cannot pass by reading nothing) ----------------


def test_reader_finds_what_is_there() -> None:
    sample = Bicep(
        Path("x.bicep"),
        strip_comments(
            "@minValue(1) // low\n@maxValue(9)\nparam n int = 3\nparam u string = 'https://a' "
            "// c\nvar v = {\n  A: n\n  'B__x': f(1, g(2, 3))\n  C: {\n    D: 1\n  }\n}\n"
        ),
    )
    assert sample.params["n"].decorator_int("minValue") == 1
    assert sample.params["n"].decorator_int("maxValue") == 9
    assert sample.params["u"].default == "'https://a'"
    entries = top_level_entries(sample.block_after(r"var v\s*="))
    assert entries == {"A": "n", "B__x": "f(1, g(2, 3))", "C": "{"}
    assert split_args("guid(a.id, f(b, c), d)") == ["a.id", "f(b, c)", "d"]


# ---- settings: every key of shared/config.py is an app setting with the same default --------


def test_every_setting_is_an_app_setting(settings_block: dict[str, str]) -> None:
    assert set(settings_block) == {s.key for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_setting_has_a_parameter_with_the_same_default(
    setting: Setting, main: Bicep, settings_block: dict[str, str]
) -> None:
    key = setting.key
    param = main.params.get(camel(key))
    assert param is not None, f"main.bicep has no parameter {camel(key)} for {key}"
    assert param.name in settings_block[key], f"{key} does not use parameter {param.name}"
    assert param.default is not None
    if key in DEFAULT_EXCEPTIONS:
        assert param.default == "''"
        assert DEFAULT_EXCEPTIONS[key] in settings_block[key]
        return
    expected = setting.default
    assert expected is not None
    assert param.default.strip("'") == (expected.lower() if param.type == "bool" else expected)


def test_defaults_the_template_sends_pass_the_app_validation(main: Bicep) -> None:
    env = {"TUNNELWATCH_SUBSCRIPTIONS": A_SUBSCRIPTION}
    for s in SETTINGS:
        default = main.params[camel(s.key)].default
        if s.key not in DEFAULT_EXCEPTIONS and default is not None:
            env[s.key] = default.strip("'")
    env["ARM_ENDPOINT"] = "https://management.azure.com"  # environment().resourceManager, trimmed
    settings = Settings.from_env(env)
    assert settings.scan_schedule == "0 */5 * * * *"


def test_cloud_arm_endpoint_comes_from_the_deployment_cloud(main: Bicep) -> None:
    assert "environment().resourceManager" in main.text
    assert re.search(r"var cloudArmEndpoint = endsWith\(resourceManager, '/'\)", main.text)


def test_no_probe_budget_without_the_run_command_role(settings_block: dict[str, str]) -> None:
    assert settings_block["PROBE_BUDGET"] == "string(enableNodeProbes ? probeBudget : 0)"


def _int_params(main: Bicep) -> list[tuple[str, int, int]]:
    keys = {camel(s.key): s.key for s in SETTINGS}
    found = []
    for p in main.params.values():
        low, high = p.decorator_int("minValue"), p.decorator_int("maxValue")
        if p.name in keys and low is not None and high is not None:
            found.append((keys[p.name], low, high))
    return found


def _accepts(key: str, value: str) -> bool:
    # A window wide enough (and a bad-point count low enough) that the cross-check between
    # SNAT_MIN_BAD_POINTS and SNAT_WINDOW_MINUTES never decides.
    env = {
        "TUNNELWATCH_SUBSCRIPTIONS": A_SUBSCRIPTION,
        "SNAT_WINDOW_MINUTES": "60",
        "SNAT_MIN_BAD_POINTS": "1",
        key: value,
    }
    try:
        Settings.from_env(env)
    except ConfigError:
        return False
    return True


def test_integer_ranges_match_the_app_validation(main: Bicep) -> None:
    ranges = _int_params(main)
    assert {k for k, _, _ in ranges} == {
        "PROBE_BUDGET",
        "SNAT_THRESHOLD_PERCENT",
        "SNAT_WINDOW_MINUTES",
        "SNAT_MIN_BAD_POINTS",
        "SERVICE_TAGS_CACHE_HOURS",
    }
    for key, low, high in ranges:
        assert _accepts(key, str(low)) and _accepts(key, str(high)), key
        assert not _accepts(key, str(low - 1)) and not _accepts(key, str(high + 1)), key


def test_string_lengths_match_the_app_validation(main: Bicep) -> None:
    checked = 0
    for s in SETTINGS:
        p = main.params[camel(s.key)]
        low, high = p.decorator_int("minLength"), p.decorator_int("maxLength")
        if low is None or high is None:
            continue
        checked += 1
        assert _accepts(s.key, "a" * low) and _accepts(s.key, "a" * high), s.key
        assert not _accepts(s.key, "a" * (high + 1)), s.key
        assert low == 1 or not _accepts(s.key, "a" * (low - 1)), s.key
    assert checked == 2  # PROBE_QUEUE, TABLE_PREFIX


# ---- the function app ------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311() -> None:
    app = Bicep.load(MODULES / "functionapp.bicep")
    runtime = top_level_entries(app.block_after(r"runtime\s*:"))
    assert runtime == {"name": "'python'", "version": "'3.11'"}
    assert "3.11" in (ROOT / "pyproject.toml").read_text()  # the version the code is checked for
    sku = top_level_entries(app.block_after(r"sku\s*:"))
    assert sku == {"name": "'FC1'", "tier": "'FlexConsumption'"}
    auth = top_level_entries(app.block_after(r"authentication\s*:"))
    assert auth == {
        "type": "'UserAssignedIdentity'",
        "userAssignedIdentityResourceId": "identityId",
    }


def test_identity_based_storage_and_telemetry_settings() -> None:
    app = Bicep.load(MODULES / "functionapp.bicep")
    host = top_level_entries(app.block_after(r"var hostStorageSettings\s*="))
    assert host == {
        "AzureWebJobsStorage__credential": "'managedidentity'",
        "AzureWebJobsStorage__clientId": "identityClientId",
        "AzureWebJobsStorage__blobServiceUri": "blobEndpoint",
        "AzureWebJobsStorage__queueServiceUri": "queueEndpoint",
        "AzureWebJobsStorage__tableServiceUri": "tableEndpoint",
    }
    # the same connection under STORAGE_CONNECTION, which shared/compose.py reads
    app_storage = top_level_entries(app.block_after(r"var appStorageSettings\s*="))
    assert {k.replace("${storageConnection}", "AzureWebJobsStorage") for k in app_storage} == set(
        host
    )
    settings = app.block_after(r"resource settings 'config'")
    for name in ("appSettings", "appStorageSettings", "hostStorageSettings"):
        assert name in settings
    extra = top_level_entries(
        settings[settings.index("{", settings.index("hostStorageSettings")) :]
    )
    assert extra["AZURE_CLIENT_ID"] == "identityClientId"
    assert extra["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"
    assert "Authorization=AAD" in extra["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_no_setting_flex_consumption_deprecates() -> None:
    for path in bicep_files():
        text = Bicep.load(path).text
        for name in FLEX_DEPRECATED:
            assert name not in text, f"{path.name} sets {name}"


def test_storage_is_identity_only() -> None:
    storage = top_level_entries(
        Bicep.load(MODULES / "storage.bicep").block_after(r"properties\s*:")
    )
    assert storage["allowSharedKeyAccess"] == "false"
    assert storage["allowBlobPublicAccess"] == "false"
    assert storage["minimumTlsVersion"] == "'TLS1_2'"
    assert storage["supportsHttpsTrafficOnly"] == "true"


# ---- roles -----------------------------------------------------------------------------------


def test_every_role_id_is_a_known_builtin_named_for_its_role() -> None:
    used = set()
    for path in bicep_files():
        text = Bicep.load(path).text
        for guid in GUID.findall(text):
            assert guid.lower() in BUILTIN_ROLES, f"{path.name}: unknown role id {guid}"
            used.add(BUILTIN_ROLES[guid.lower()])
        # each literal sits in a variable named after its role (catches a swapped id)
        for var, guid in re.findall(rf"(?m)^var\s+(\w+)\s*=\s*'({GUID.pattern})'", text):
            assert var == camel(BUILTIN_ROLES[guid.lower()].replace(" ", "_")), var
    assert used == EXPECTED_ROLES


def _role_assignments() -> list[tuple[str, str, str, str]]:
    found = []
    for path in bicep_files():
        for name, condition, body in Bicep.load(path).resources(
            "Microsoft.Authorization/roleAssignments"
        ):
            found.append((f"{path.name}:{name}", condition, body, path.name))
    return found


def test_role_assignments_are_named_scope_principal_role() -> None:
    assignments = _role_assignments()
    assert len(assignments) == 6  # 3 storage, telemetry, Reader, node probe
    for where, _, body, _ in assignments:
        entries = top_level_entries(body)
        props = top_level_entries(balanced(body, body.index("{", body.index("properties"))))
        assert entries["name"].startswith("guid("), where
        scope, principal, role = split_args(entries["name"])
        expected_scope = f"{entries['scope']}.id" if "scope" in entries else "subscription().id"
        assert scope == expected_scope, where
        assert principal == "principalId" == props["principalId"], where
        assert role in props["roleDefinitionId"], where
        assert props["principalType"] == "'ServicePrincipal'", where


def test_run_command_only_when_node_probes_are_enabled(main: Bicep) -> None:
    assert main.params["enableNodeProbes"].default == "false"
    subs = Bicep.load(MODULES / "roles-subscription.bicep")
    assert subs.params["enableNodeProbes"].default == "false"
    roles = subs.resources("Microsoft.Authorization/roleDefinitions")
    assert len(roles) == 1
    _, condition, body = roles[0]
    assert condition.strip() == "enableNodeProbes"
    actions = re.findall(
        r"'(Microsoft\.[^']+)'", balanced(body, body.index("[", body.index("actions")))
    )
    changing = [a for a in actions if not a.endswith("/read")]
    assert changing == [
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action"
    ]
    assert "notActions: []" in body and "dataActions: []" in body
    probe = [a for a in _role_assignments() if "nodeProbeRoleName" in a[2]]
    assert len(probe) == 1 and probe[0][1].strip() == "enableNodeProbes"
    # every other assignment is unconditional and built-in
    assert all(not c for w, c, b, _ in _role_assignments() if "nodeProbeRoleName" not in b)


def test_scopes(main: Bicep) -> None:
    assert re.search(r"(?m)^targetScope = 'subscription'$", main.text)
    subs = Bicep.load(MODULES / "roles-subscription.bicep")
    assert re.search(r"(?m)^targetScope = 'subscription'$", subs.text)
    reader = [a for a in _role_assignments() if "acdd72a7" in a[2] or "reader)" in a[2]]
    assert [a[3] for a in reader] == ["roles-subscription.bicep"]


# ---- modules, outputs, parameters file ------------------------------------------------------


def test_module_parameters_and_outputs_line_up(main: Bicep) -> None:
    modules = main.modules
    assert len(modules) == 6
    for name, (path, body) in modules.items():
        assert path.is_file(), f"module {name}: {path} missing"
        module = Bicep.load(path)
        passed = set(top_level_entries(balanced(body, body.index("{", body.index("params")))))
        declared = module.params
        assert passed <= set(declared), f"{name} passes unknown {passed - set(declared)}"
        required = {p for p, d in declared.items() if d.default is None}
        assert required <= passed, f"{name} misses {required - passed}"
        for used in re.findall(rf"\b{name}\.outputs\.(\w+)", main.text):
            assert used in module.outputs, f"{name}.outputs.{used} is not declared"


def test_outputs_are_upper_snake_for_azd(main: Bicep) -> None:
    outputs = main.outputs
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", o) for o in outputs), outputs
    assert {
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_IDENTITY_CLIENT_ID",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_RESOURCE_GROUP",
    } <= set(outputs)


def test_parameters_file_names_only_parameters_of_main(main: Bicep) -> None:
    parameters = json.loads(PARAMETERS.read_text())["parameters"]
    assert set(parameters) <= set(main.params)
    required = {p for p, d in main.params.items() if d.default is None}
    assert required <= set(parameters)
    # azd overrides use the app setting's own name, with the template's default
    by_param = {camel(s.key): s for s in SETTINGS}
    for name, entry in parameters.items():
        if name not in by_param:
            continue
        m = re.fullmatch(r"\$\{(\w+)=([^}]*)\}", entry["value"])
        assert m, f"{name}: {entry['value']!r}"
        assert m.group(1) == by_param[name].key
        assert m.group(2) == (main.params[name].default or "").strip("'"), name
    assert set(by_param) <= set(parameters)


def _yaml_mapping(text: str) -> dict[str, object]:
    """The nested mappings of scalars azure.yaml uses (no lists, no flow style)."""
    root: dict[str, object] = {}
    stack: list[tuple[int, dict[str, object]]] = [(-1, root)]
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value.strip():
            parent[key] = value.strip()
        else:
            child: dict[str, object] = {}
            parent[key] = child
            stack.append((indent, child))
    return root


def test_azure_yaml_deploys_the_python_function_service(main: Bicep) -> None:
    doc = _yaml_mapping(AZURE_YAML.read_text())
    assert doc["services"] == {
        "tunnelwatch": {"project": ".", "language": "python", "host": "function"}
    }
    assert doc["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    # azd finds the app by its azd-service-name tag, which main.bicep sets to the service name
    _, body = main.modules["functionApp"]
    assert (
        top_level_entries(balanced(body, body.index("{", body.index("params"))))["serviceName"]
        == "'tunnelwatch'"
    )
    assert "'azd-service-name': serviceName" in Bicep.load(MODULES / "functionapp.bicep").text


def test_no_secret_looking_literal() -> None:
    forbidden = re.compile(
        r"AccountKey=|SharedAccessSignature|SharedAccessKey|sig=|listKeys\(|"
        r"InstrumentationKey=|DefaultEndpointsProtocol|password|secret\s*:",
        re.I,
    )
    files = [*INFRA.rglob("*"), AZURE_YAML]
    checked = [p for p in files if p.is_file()]
    assert len(checked) >= 9
    for path in checked:
        hit = forbidden.search(path.read_text())
        assert hit is None, f"{path.relative_to(ROOT)}: {hit.group(0) if hit else ''}"


# ---- docs/deploy.md --------------------------------------------------------------------------


def test_deploy_doc_states_status_and_names_real_tables_and_parameters(main: Bicep) -> None:
    doc = DEPLOY_DOC.read_text()
    head = doc[: doc.index("\n## ")]
    assert "Status" in head and "Bicep compiler" in head
    for table in TableNames().all():
        assert table in doc, table
    assert "az storage entity query" in doc and "--auth-mode login" in doc
    for s in SETTINGS:
        assert f"`{camel(s.key)}`" in doc and f"`{s.key}`" in doc, s.key
    assert "enableNodeProbes" in doc and "az deployment sub create" in doc and "azd up" in doc
