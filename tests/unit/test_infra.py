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
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.adapters.tables.keys import TableNames
from shared.config import SETTINGS, TRIGGER_STORAGE, Setting, Settings
from shared.errors import ConfigError
from tests.skips import cannot_run

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
MODULES = INFRA / "modules"
PARAMETERS = INFRA / "main.parameters.json"
AZURE_YAML = ROOT / "azure.yaml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
FUNCIGNORE = ROOT / ".funcignore"
MAKEFILE = ROOT / "Makefile"

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
# The node probe role's actions, checked against Microsoft's resource provider operations list
# (learn.microsoft.com/azure/role-based-access-control/permissions/compute): exactly what
# Reader lacks for a probe. Every read the worker does (the cluster, scale sets, instances with
# their instance view) comes from Reader on the subscription.
NODE_PROBE_ACTIONS = [
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action",
    "Microsoft.Compute/locations/operations/read",
]
# privatelink zones of the vnetEnabled option, per private endpoint sub-resource.
STORAGE_ZONES = {
    "blob": "'privatelink.blob.${environment().suffixes.storage}'",
    "queue": "'privatelink.queue.${environment().suffixes.storage}'",
    "table": "'privatelink.table.${environment().suffixes.storage}'",
}
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
        pattern = r"(?m)^module\s+(\w+)\s+'([^']+)'\s*=\s*(?:if\s*\([^)]*\)\s*)?\{"
        for m in re.finditer(pattern, self.text):
            found[m.group(1)] = (
                (self.path.parent / m.group(2)).resolve(),
                balanced(self.text, m.end() - 1),
            )
        return found

    @property
    def module_conditions(self) -> dict[str, str]:
        """The `if (...)` condition of every module, '' when unconditional."""
        pattern = r"(?m)^module\s+(\w+)\s+'[^']+'\s*=\s*(?:if\s*\(([^)]*)\)\s*)?\{"
        return {m.group(1): (m.group(2) or "").strip() for m in re.finditer(pattern, self.text)}


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
        "OPEN_AFTER",
        "RESOLVE_AFTER",
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


def test_storage_connection_allows_only_what_the_triggers_read(main: Bicep) -> None:
    # the app refuses any other STORAGE_CONNECTION at start; the template refuses it first
    allowed = _allowed_strings(main.params["storageConnection"])
    assert allowed == [TRIGGER_STORAGE]
    assert all(_accepts("STORAGE_CONNECTION", value) for value in allowed)
    assert not _accepts("STORAGE_CONNECTION", "OtherStorage")


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


def _allowed(param: Param) -> list[int]:
    (decorator,) = [d for d in param.decorators if d.startswith("@allowed(")]
    return [int(v) for v in re.findall(r"\d+", decorator)]


def test_flex_instance_sizes_include_512_mb(main: Bicep) -> None:
    app = Bicep.load(MODULES / "functionapp.bicep")
    for bicep in (main, app):
        param = bicep.params["instanceMemoryMB"]
        assert _allowed(param) == [512, 2048, 4096], bicep.path.name
        assert param.default == "2048"


def test_funcignore_keeps_what_is_not_the_app_out_of_the_package() -> None:
    ignored = {line.strip().rstrip("/") for line in FUNCIGNORE.read_text().splitlines()}
    for name in (
        "package.json",
        "package-lock.json",
        "node_modules",
        "docs",
        "tests",
        "bench",
        "examples",
        ".venv",
    ):
        assert name in ignored, name
    # what the app runs stays in
    for name in ("function_app.py", "host.json", "requirements.txt", "functions", "shared"):
        assert name not in ignored, name


# ---- private networking (vnetEnabled, inboundPrivateEndpoint) ------------------------------


def _module_params(main: Bicep, name: str) -> dict[str, str]:
    _, body = main.modules[name]
    return top_level_entries(balanced(body, body.index("{", body.index("params"))))


def test_private_networking_is_opt_in(main: Bicep) -> None:
    assert main.params["vnetEnabled"].default == "false"
    assert main.params["inboundPrivateEndpoint"].default == "false"
    assert re.search(r"(?m)^var inboundPrivate = vnetEnabled && inboundPrivateEndpoint$", main.text)
    conditions = main.module_conditions
    assert conditions["network"] == "vnetEnabled"
    assert conditions["appPrivateEndpoint"] == "inboundPrivate"
    unconditional = {"identity", "storage", "monitoring", "appRoles", "subscriptionRoles"}
    assert {m for m, c in conditions.items() if not c} == unconditional | {"functionApp"}
    parameters = json.loads(PARAMETERS.read_text())["parameters"]
    assert parameters["vnetEnabled"]["value"] == "${TUNNELWATCH_VNET_ENABLED=false}"
    assert (
        parameters["inboundPrivateEndpoint"]["value"]
        == "${TUNNELWATCH_INBOUND_PRIVATE_ENDPOINT=false}"
    )


def test_blob_queue_and_table_each_get_a_private_endpoint_and_zone(main: Bicep) -> None:
    endpoint_modules = {
        name: _module_params(main, name)
        for name, (path, _) in main.modules.items()
        if path.name == "private-endpoint.bicep"
    }
    storage = {
        p["groupId"].strip("'"): (name, p)
        for name, p in endpoint_modules.items()
        if p["targetId"] == "storage.outputs.id"
    }
    assert set(storage) == set(STORAGE_ZONES)  # all three: the app uses queues and tables too
    conditions = main.module_conditions
    for service, (name, params) in storage.items():
        assert conditions[name] == "vnetEnabled", name
        assert params["dnsZoneName"] == STORAGE_ZONES[service], name
        assert params["subnetId"] == "network.outputs.privateEndpointSubnetId", name
        assert params["vnetId"] == "network.outputs.id", name
    (app,) = [p for p in endpoint_modules.values() if p["targetId"] == "functionApp.outputs.id"]
    assert app["groupId"] == "'sites'" and app["dnsZoneName"] == "appPrivateDnsZoneName"
    assert main.params["appPrivateDnsZoneName"].default == "'privatelink.azurewebsites.net'"
    # the host needs its storage endpoints before it starts
    _, body = main.modules["functionApp"]
    depends = balanced(body, body.index("[", body.index("dependsOn")))
    for name, _ in storage.values():
        assert name in depends, name


def test_private_endpoint_module_links_its_zone_and_registers_the_address() -> None:
    pe = Bicep.load(MODULES / "private-endpoint.bicep")
    assert _allowed_strings(pe.params["groupId"]) == ["blob", "queue", "table", "sites"]
    (zone,) = pe.resources("Microsoft.Network/privateDnsZones")
    assert top_level_entries(zone[2])["location"] == "'global'"
    (link,) = pe.resources("Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert top_level_entries(link[2])["parent"] == "zone"
    link_props = top_level_entries(link[2][link[2].index("{", link[2].index("properties")) :])
    assert link_props["registrationEnabled"] == "false"
    assert re.search(r"virtualNetwork:\s*\{\s*id: vnetId\s*\}", link[2])
    (endpoint,) = pe.resources("Microsoft.Network/privateEndpoints")
    body = endpoint[2]
    assert re.search(r"privateLinkServiceId: targetId", body)
    assert re.search(r"groupIds: \[\s*groupId\s*\]", body)
    assert re.search(r"subnet: \{\s*id: subnetId\s*\}", body)
    assert "resource dnsGroup 'privateDnsZoneGroups'" in body
    assert "privateDnsZoneId: zone.id" in body


def _allowed_strings(param: Param) -> list[str]:
    (decorator,) = [d for d in param.decorators if d.startswith("@allowed(")]
    return re.findall(r"'([^']*)'", decorator)


def test_app_subnet_is_delegated_for_flex_consumption() -> None:
    net = Bicep.load(MODULES / "network.bicep")
    (vnet,) = net.resources("Microsoft.Network/virtualNetworks")
    delegations = re.findall(r"serviceName: '([^']+)'", vnet[2])
    # Flex Consumption integrates through Microsoft.App/environments, not Microsoft.Web/serverFarms
    assert delegations == ["Microsoft.App/environments"]
    assert "privateEndpointNetworkPolicies: 'Disabled'" in vnet[2]
    assert set(net.outputs) >= {"id", "appSubnetId", "privateEndpointSubnetId"}


def test_storage_public_access_off_with_vnet(main: Bicep) -> None:
    assert _module_params(main, "storage")["privateOnly"] == "vnetEnabled"
    storage = Bicep.load(MODULES / "storage.bicep")
    assert storage.params["privateOnly"].default == "false"
    props = top_level_entries(storage.block_after(r"properties\s*:"))
    assert props["publicNetworkAccess"] == "privateOnly ? 'Disabled' : 'Enabled'"
    acls = top_level_entries(storage.block_after(r"networkAcls\s*:"))
    assert acls["defaultAction"] == "privateOnly ? 'Deny' : 'Allow'"


def test_app_is_integrated_and_its_inbound_stays_public_unless_asked(main: Bicep) -> None:
    params = _module_params(main, "functionApp")
    assert params["virtualNetworkSubnetId"] == "vnetEnabled ? network.outputs.appSubnetId : ''"
    assert params["inboundPrivateOnly"] == "inboundPrivate"
    app = Bicep.load(MODULES / "functionapp.bicep")
    assert app.params["inboundPrivateOnly"].default == "false"
    site = app.resources("Microsoft.Web/sites")[0][2]
    props = top_level_entries(balanced(site, site.index("{", site.index("properties"))))
    assert props["virtualNetworkSubnetId"] == (
        "empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId"
    )
    assert props["publicNetworkAccess"] == "inboundPrivateOnly ? 'Disabled' : 'Enabled'"


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


def _node_probe_role() -> tuple[Bicep, str, str]:
    subs = Bicep.load(MODULES / "roles-subscription.bicep")
    roles = subs.resources("Microsoft.Authorization/roleDefinitions")
    assert len(roles) == 1
    _, condition, body = roles[0]
    return subs, condition, body


def test_run_command_only_when_node_probes_are_enabled(main: Bicep) -> None:
    assert main.params["enableNodeProbes"].default == "false"
    subs, condition, body = _node_probe_role()
    assert subs.params["enableNodeProbes"].default == "false"
    # created only when probes are on and no administrator-made role is given
    assert condition.strip() == "createNodeProbeRole"
    assert re.search(
        r"(?m)^var createNodeProbeRole = enableNodeProbes && empty\(nodeProbeRoleDefinitionId\)$",
        subs.text,
    )
    assert "notActions: []" in body and "dataActions: []" in body
    probe = [a for a in _role_assignments() if "nodeProbeRoleId" in a[2]]
    assert len(probe) == 1 and probe[0][1].strip() == "enableNodeProbes"
    # every other assignment is unconditional and built-in
    assert all(not c for w, c, b, _ in _role_assignments() if "nodeProbeRoleId" not in b)


def test_node_probe_role_holds_exactly_what_reader_lacks() -> None:
    _, _, body = _node_probe_role()
    actions = re.findall(
        r"'(Microsoft\.[^']+)'", balanced(body, body.index("[", body.index("actions")))
    )
    assert actions == NODE_PROBE_ACTIONS
    # the reads come from Reader, which the same module always assigns
    reader = [a for a in _role_assignments() if "reader)" in a[2]]
    assert [(a[1], a[3]) for a in reader] == [("", "roles-subscription.bicep")]
    # the comment no longer claims the role works without Reader
    raw = (MODULES / "roles-subscription.bicep").read_text()
    assert "narrowed" not in raw and "does not work without it" in raw


def test_node_probe_role_is_assigned_by_its_own_id() -> None:
    subs, _, _ = _node_probe_role()
    assert subs.params["nodeProbeRoleDefinitionId"].default == "''"
    assert re.search(
        r"(?m)^var nodeProbeRoleId = createNodeProbeRole \? nodeProbeRole\.id : givenNodeProbeRoleId$",
        subs.text,
    )
    # an administrator's role: a full id as `az role definition create` prints it, or its GUID
    given = re.search(r"(?m)^var givenNodeProbeRoleId = (.+)$", subs.text)
    assert given
    assert given.group(1) == (
        "contains(nodeProbeRoleDefinitionId, '/') ? nodeProbeRoleDefinitionId : "
        "'${subscription().id}/providers/Microsoft.Authorization/roleDefinitions/"
        "${nodeProbeRoleDefinitionId}'"
    )
    (probe,) = [a for a in _role_assignments() if "nodeProbeRoleId" in a[2]]
    props = top_level_entries(balanced(probe[2], probe[2].index("{", probe[2].index("properties"))))
    assert props["roleDefinitionId"] == "nodeProbeRoleId"  # not a recomputed resource id
    assert re.search(r"dependsOn:\s*\[\s*nodeProbeRole\s*\]", probe[2])


def test_main_passes_the_administrators_role_through(main: Bicep) -> None:
    assert main.params["nodeProbeRoleDefinitionId"].default == "''"
    _, body = main.modules["subscriptionRoles"]
    params = top_level_entries(balanced(body, body.index("{", body.index("params"))))
    assert params["nodeProbeRoleDefinitionId"] == "nodeProbeRoleDefinitionId"
    parameters = json.loads(PARAMETERS.read_text())["parameters"]
    assert parameters["nodeProbeRoleDefinitionId"]["value"] == "${TUNNELWATCH_NODE_PROBE_ROLE_ID=}"


def test_scopes(main: Bicep) -> None:
    assert re.search(r"(?m)^targetScope = 'subscription'$", main.text)
    subs = Bicep.load(MODULES / "roles-subscription.bicep")
    assert re.search(r"(?m)^targetScope = 'subscription'$", subs.text)
    reader = [a for a in _role_assignments() if "acdd72a7" in a[2] or "reader)" in a[2]]
    assert [a[3] for a in reader] == ["roles-subscription.bicep"]


# ---- modules, outputs, parameters file ------------------------------------------------------


def test_module_parameters_and_outputs_line_up(main: Bicep) -> None:
    modules = main.modules
    # identity, storage, monitoring, two role modules, the app; network and four private
    # endpoints (blob, queue, table, the app's inbound one)
    assert len(modules) == 11
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


def _make_target(name: str) -> tuple[str, str]:
    """(prerequisites, recipe) of a Makefile target."""
    text = MAKEFILE.read_text()
    m = re.search(rf"(?m)^{re.escape(name)}:(.*)\n((?:\t.*\n)*)", text)
    assert m, f"Makefile has no target {name}"
    return m.group(1), m.group(2)


def test_infra_check_builds_and_what_ifs_but_is_not_part_of_make_test() -> None:
    _, recipe = _make_target("infra-check")
    assert "az bicep build -f infra/main.bicep" in recipe
    assert "az deployment sub what-if" in recipe and "az account show" in recipe
    test_deps, _ = _make_target("test")
    assert "infra-check" not in test_deps
    assert "infra-check" not in _make_target("pytest")[1]


def test_infra_check_says_what_is_missing_without_az(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        cannot_run("make is not installed")
    # a PATH with make's shell and nothing else: no az on it
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "echo"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    done = subprocess.run(
        [make, "-s", "infra-check"],
        cwd=ROOT,
        env={"PATH": str(bindir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "needs the Azure CLI (az)" in done.stderr
    assert "az bicep install" in done.stderr


def test_deploy_doc_covers_roles_networking_and_the_check() -> None:
    doc = DEPLOY_DOC.read_text()
    # who can deploy node probes, and the way without that right
    assert "Microsoft.Authorization/roleDefinitions/write" in doc
    assert "User Access Administrator" in doc
    assert "nodeProbeRoleDefinitionId" in doc and "TUNNELWATCH_NODE_PROBE_ROLE_ID" in doc
    for action in NODE_PROBE_ACTIONS:
        assert action in doc, action
    assert "instanceView/read" not in doc
    assert "RoleDefinitionDoesNotExist" in doc  # the replication retry
    # private networking
    for word in ("vnetEnabled", "inboundPrivateEndpoint", "Microsoft.App/environments"):
        assert word in doc, word
    for zone in ("blob", "queue", "table"):
        assert f"privatelink.{zone}.core.windows.net" in doc, zone
    assert "privatelink.azurewebsites.net" in doc
    assert "make infra-check" in doc
    assert doc.index("make infra-check") < doc.index("## Deploy with `azd up`")
    # stale text is gone
    assert "when it lands" not in doc
    assert "node probe permission there too" not in doc
    assert "512" in doc


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
