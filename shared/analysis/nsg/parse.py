"""Reading NSG documents into the one rule model, whatever shape they arrive in.

Shapes recognised (detected, not declared):
- ARM REST: `{"id", "name", "properties": {"securityRules": [{"name", "properties": {...}}],
  "defaultSecurityRules": [...]}}`;
- `az network nsg show -o json`: rule fields at the top level of each rule and
  `securityRules` / `defaultSecurityRules` at the top of the NSG (plus `resourceGroup`);
- a bare list of rules (`az network nsg rule list`), or ARM's `{"value": [rules]}`;
- one entry of the effective-rules API (`{"networkSecurityGroup": {"id"},
  "effectiveSecurityRules": [...]}`, or `{"value": [that]}` with exactly one entry), whose
  rules say `All` for any protocol and carry `expanded...AddressPrefix` lists for tags.

Azure's six default rules are added for any (direction, priority) slot the input leaves
empty, since ARM always applies them. Anything malformed raises InputError naming the input,
the rule (name and position) and the field.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

from shared.analysis.nsg.index import build_index
from shared.analysis.nsg.model import (
    ALL_PORTS,
    Access,
    AddressSpec,
    Direction,
    IpRange,
    Nsg,
    PortRange,
    Protocol,
    RangeSet,
    Rule,
)
from shared.errors import InputError, excerpt

__all__ = ["DEFAULT_RULES", "parse_nsg", "parse_nsg_text", "parse_resource_id"]

_PORT = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?", re.ASCII)
_TAG = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*", re.ASCII)
_ANY = frozenset({"*", "any"})
_PROTOCOLS = {
    "tcp": Protocol.TCP,
    "udp": Protocol.UDP,
    "icmp": Protocol.ICMP,
    "esp": Protocol.ESP,
    "ah": Protocol.AH,
    "*": Protocol.ANY,
    "any": Protocol.ANY,
    "all": Protocol.ANY,  # the effective-rules API spells Any this way
}


def _spec(text: tuple[str, ...], *, any_: bool = False, tags: tuple[str, ...] = ()) -> AddressSpec:
    return AddressSpec(any=any_, tags=tags, text=text)


def _default(
    name: str, priority: int, direction: Direction, access: Access, src: str, dst: str
) -> Rule:
    def side(word: str) -> AddressSpec:
        return _spec((word,), any_=True) if word == "*" else _spec((word,), tags=(word,))

    return Rule(
        name=name,
        priority=priority,
        direction=direction,
        access=access,
        protocol=Protocol.ANY,
        source=side(src),
        destination=side(dst),
        source_ports=ALL_PORTS,
        destination_ports=ALL_PORTS,
        default=True,
    )


_IN, _OUT, _OK, _NO = Direction.INBOUND, Direction.OUTBOUND, Access.ALLOW, Access.DENY
# network-security-groups-overview.md, "Default security rules".
DEFAULT_RULES: tuple[Rule, ...] = (
    _default("AllowVnetInBound", 65000, _IN, _OK, "VirtualNetwork", "VirtualNetwork"),
    _default("AllowAzureLoadBalancerInBound", 65001, _IN, _OK, "AzureLoadBalancer", "*"),
    _default("DenyAllInBound", 65500, _IN, _NO, "*", "*"),
    _default("AllowVnetOutBound", 65000, _OUT, _OK, "VirtualNetwork", "VirtualNetwork"),
    _default("AllowInternetOutBound", 65001, _OUT, _OK, "*", "Internet"),
    _default("DenyAllOutBound", 65500, _OUT, _NO, "*", "*"),
)


def parse_resource_id(resource_id: str) -> tuple[str, str]:
    """(resource group, NSG name) from an NSG or NSG-rule resource id; "" where absent."""
    parts = [p for p in resource_id.split("/") if p]
    lower = [p.lower() for p in parts]
    group = name = ""
    for i, part in enumerate(lower[:-1]):
        if part == "resourcegroups":
            group = parts[i + 1]
        elif part == "networksecuritygroups":
            name = parts[i + 1]
    return group, name


def parse_nsg_text(text: str, source: str) -> Nsg:
    """parse_nsg on JSON text; JSON errors become InputError with the line."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:  # over-long integers, absurd nesting
        raise InputError(source, f"not valid JSON: {exc}") from None
    return parse_nsg(doc, source)


def parse_nsg(doc: object, source: str) -> Nsg:
    """One NSG from any of the shapes in the module docstring."""
    meta_id = meta_name = meta_group = ""
    defaults: list[Any] = []
    if isinstance(doc, list):
        rules_raw: list[Any] = doc
        where = "rule list"
    elif isinstance(doc, dict):
        props = doc.get("properties")
        nsg_type = str(doc.get("type", "")).lower()
        if isinstance(props, dict) and (
            "securityRules" in props
            or "defaultSecurityRules" in props
            or nsg_type == "microsoft.network/networksecuritygroups"
        ):
            rules_raw = _list(props.get("securityRules"), source, "properties.securityRules")
            defaults = _list(
                props.get("defaultSecurityRules"), source, "properties.defaultSecurityRules"
            )
            where = "securityRules"
        elif "securityRules" in doc or "defaultSecurityRules" in doc:
            rules_raw = _list(doc.get("securityRules"), source, "securityRules")
            defaults = _list(doc.get("defaultSecurityRules"), source, "defaultSecurityRules")
            where = "securityRules"
            meta_group = _opt_str(doc.get("resourceGroup"))
        elif "effectiveSecurityRules" in doc or isinstance(doc.get("value"), list):
            doc, rules_raw = _effective_or_value(doc, source)
            where = "effectiveSecurityRules" if "effectiveSecurityRules" in doc else "value"
            nsg_ref = doc.get("networkSecurityGroup")
            if isinstance(nsg_ref, dict):
                meta_id = _opt_str(nsg_ref.get("id"))
        else:
            raise InputError(
                source,
                "not an NSG document: expected an NSG (ARM or `az network nsg show` JSON), "
                "a list of rules, or effective security rules",
            )
        if not meta_id and isinstance(doc.get("id"), str) and where == "securityRules":
            meta_id = doc["id"]
        if where == "securityRules":
            meta_name = _opt_str(doc.get("name"))
    else:
        raise InputError(source, f"not an NSG document: top level is {type(doc).__name__}")

    rules = [_parse_rule(raw, i, where, source) for i, raw in enumerate(rules_raw)]
    rules += [
        _parse_rule(raw, i, "defaultSecurityRules", source, True) for i, raw in enumerate(defaults)
    ]
    if not meta_id:
        meta_id = _id_from_rules(rules_raw)
    group, name = parse_resource_id(meta_id)
    return build_nsg(
        rules,
        name=meta_name or name,
        nsg_id=meta_id,
        resource_group=meta_group or group,
        source=source,
    )


def build_nsg(
    rules: Iterable[Rule], *, name: str, nsg_id: str, resource_group: str, source: str
) -> Nsg:
    """Sort, check priorities, add missing defaults and index: the one way an Nsg is made."""
    per_dir: dict[Direction, list[Rule]] = {Direction.INBOUND: [], Direction.OUTBOUND: []}
    for rule in rules:
        per_dir[rule.direction].append(rule)
    for direction, listed in per_dir.items():
        seen: dict[int, str] = {}
        for rule in listed:
            if rule.priority in seen:
                raise InputError(
                    source,
                    f"rules {excerpt(seen[rule.priority])} and {excerpt(rule.name)} share priority "
                    f"{rule.priority} in direction {direction.value}; Azure forbids this, "
                    "and the evaluation order would be undefined",
                )
            seen[rule.priority] = rule.name
        listed.extend(
            d for d in DEFAULT_RULES if d.direction is direction and d.priority not in seen
        )
        listed.sort(key=lambda r: r.priority)
    inbound = tuple(per_dir[Direction.INBOUND])
    outbound = tuple(per_dir[Direction.OUTBOUND])
    return Nsg(
        name=name,
        id=nsg_id,
        resource_group=resource_group,
        source=source,
        inbound=inbound,
        outbound=outbound,
        inbound_index=build_index(inbound),
        outbound_index=build_index(outbound),
    )


def _effective_or_value(doc: dict[str, Any], source: str) -> tuple[dict[str, Any], list[Any]]:
    if "effectiveSecurityRules" in doc:
        return doc, _list(doc["effectiveSecurityRules"], source, "effectiveSecurityRules")
    values: list[Any] = doc["value"]
    entries = [v for v in values if isinstance(v, dict) and "effectiveSecurityRules" in v]
    if not entries:  # ARM's list response for `securityRules`: {"value": [rules]}
        return doc, values
    if len(entries) != len(values) or len(entries) != 1:
        raise InputError(
            source,
            f"effective security rules for {len(values)} NSGs; pass each NSG's entry "
            "separately (as --subnet-nsg and --nic-nsg)",
        )
    entry: dict[str, Any] = entries[0]
    return entry, _list(entry["effectiveSecurityRules"], source, "effectiveSecurityRules")


def _id_from_rules(rules_raw: list[Any]) -> str:
    for raw in rules_raw:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            rid: str = raw["id"]
            low = rid.lower()
            cut = low.find("/securityrules/")
            if cut < 0:
                cut = low.find("/defaultsecurityrules/")
            if cut > 0:
                return rid[:cut]
    return ""


def _list(value: object, source: str, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(source, f"field {excerpt(field)} must be a list of rules")
    return value


def _opt_str(value: object) -> str:
    return value if isinstance(value, str) else ""


class _RuleReader:
    """Reads one rule's fields with messages naming the rule and the field."""

    def __init__(self, fields: dict[str, Any], label: str, source: str) -> None:
        self.fields = fields
        self.label = label
        self.source = source

    def fail(self, message: str) -> InputError:
        return InputError(self.source, f"{self.label}: {message}")

    def text(self, key: str) -> str:
        value = self.fields.get(key)
        if not isinstance(value, str) or not value.strip():
            missing = "is missing" if value is None else "must be a non-empty string"
            raise self.fail(f"field {key!r} {missing}")
        return value.strip()

    def values(self, singular: str, plural: str) -> list[str]:
        """The union of a singular string field and its plural list field."""
        out: list[str] = []
        one = self.fields.get(singular)
        if one is not None:
            if not isinstance(one, str):
                raise self.fail(f"field {singular!r} must be a string")
            # A hand-written "80,443" is unambiguous; ARM itself uses the plural field.
            out.extend(p.strip() for p in one.split(",") if p.strip())
        many = self.fields.get(plural)
        if many is not None:
            if not isinstance(many, list):
                raise self.fail(f"field {plural!r} must be a list of strings")
            for j, item in enumerate(many):
                if not isinstance(item, str):
                    raise self.fail(f"field {plural}[{j}] must be a string")
                out.extend(p.strip() for p in item.split(",") if p.strip())
        return out


def _parse_rule(raw: object, i: int, where: str, source: str, default: bool = False) -> Rule:
    if not isinstance(raw, dict):
        raise InputError(source, f"{where}[{i}]: expected a rule object")
    name_raw = raw.get("name")
    label = (
        f"rule {excerpt(name_raw)} ({where}[{i}])" if isinstance(name_raw, str) else f"{where}[{i}]"
    )
    props = raw.get("properties")
    if props is not None and not isinstance(props, dict):
        raise InputError(source, f"{label}: field 'properties' must be an object")
    fields: dict[str, Any] = props if isinstance(props, dict) else raw
    r = _RuleReader(fields, label, source)
    if not isinstance(name_raw, str) or not name_raw.strip():
        raise r.fail("field 'name' is missing")
    name = name_raw.strip()
    for prefix in ("securityRules/", "defaultSecurityRules/"):  # effective-rules naming
        if name.startswith(prefix) and len(name) > len(prefix):
            default = default or prefix.startswith("default")
            name = name[len(prefix) :]

    priority = _priority(fields.get("priority"), r)
    direction = {"inbound": Direction.INBOUND, "outbound": Direction.OUTBOUND}.get(
        r.text("direction").lower()
    )
    if direction is None:
        raise r.fail(f"field 'direction' must be Inbound or Outbound, not {fields['direction']!r}")
    access = {"allow": Access.ALLOW, "deny": Access.DENY}.get(r.text("access").lower())
    if access is None:
        raise r.fail(f"field 'access' must be Allow or Deny, not {fields['access']!r}")
    protocol = _PROTOCOLS.get(r.text("protocol").lower())
    if protocol is None:
        raise r.fail(
            f"field 'protocol' must be Tcp, Udp, Icmp, Esp, Ah or *, not {fields['protocol']!r}"
        )
    return Rule(
        name=name,
        priority=priority,
        direction=direction,
        access=access,
        protocol=protocol,
        source=_address(r, "source"),
        destination=_address(r, "destination"),
        source_ports=_ports(r, "sourcePortRange", "sourcePortRanges"),
        destination_ports=_ports(r, "destinationPortRange", "destinationPortRanges"),
        default=default or priority >= 65000,
    )


def _priority(value: object, r: _RuleReader) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()[:6])
    if not isinstance(value, int) or isinstance(value, bool):
        raise r.fail(
            "field 'priority' is missing"
            if value is None
            else "field 'priority' must be an integer"
        )
    if not (100 <= value <= 4096 or 65000 <= value <= 65500):
        raise r.fail(f"field 'priority' is {value}; Azure uses 100-4096 (65000-65500 for defaults)")
    return value


def _ports(r: _RuleReader, singular: str, plural: str) -> tuple[PortRange, ...]:
    texts = r.values(singular, plural)
    if not texts:
        raise r.fail(f"field {singular!r} (or {plural!r}) is missing")
    out: list[PortRange] = []
    for text in texts:
        if text.lower() in _ANY:
            return ALL_PORTS
        m = _PORT.fullmatch(text)
        if m is None:
            raise r.fail(f"{singular}: {text[:40]!r} is not a port or a range a-b")
        low = int(m.group(1))
        high = int(m.group(2)) if m.group(2) is not None else low
        if high > 65535 or low > high:
            raise r.fail(f"{singular}: {text!r} is not a port range within 0-65535")
        out.append(PortRange(low, high))
    return tuple(out)


def _address(r: _RuleReader, side: str) -> AddressSpec:
    texts = r.values(f"{side}AddressPrefix", f"{side}AddressPrefixes")
    asg_raw = r.fields.get(f"{side}ApplicationSecurityGroups")
    asgs: set[str] = set()
    if asg_raw is not None:
        if not isinstance(asg_raw, list):
            raise r.fail(f"field '{side}ApplicationSecurityGroups' must be a list")
        for j, item in enumerate(asg_raw):
            asg_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(asg_id, str) or not asg_id.strip():
                raise r.fail(f"{side}ApplicationSecurityGroups[{j}] has no 'id' string")
            asgs.add(asg_id.strip().lower())
    if not texts and not asgs:
        raise r.fail(
            f"field '{side}AddressPrefix' (or '{side}AddressPrefixes' or "
            f"'{side}ApplicationSecurityGroups') is missing"
        )
    expanded = r.fields.get(f"expanded{side.capitalize()}AddressPrefix")
    any_ = False
    ranges: list[IpRange] = []
    tags: list[str] = []
    for text in texts:
        if text.lower() in _ANY:
            any_ = True
            continue
        try:
            ranges.append(IpRange.of(ipaddress.ip_network(text, strict=False)))
            continue
        except ValueError:
            pass
        if _TAG.fullmatch(text) is None:
            raise r.fail(f"{side}AddressPrefix: {text[:60]!r} is not an IP, CIDR, * or service tag")
        tags.append(text)
    if tags and isinstance(expanded, list) and expanded:
        # The effective-rules API already expanded the tag: use its prefixes, decided.
        for j, item in enumerate(expanded):
            try:
                ranges.append(IpRange.of(ipaddress.ip_network(str(item).strip(), strict=False)))
            except ValueError:
                raise r.fail(
                    f"expanded{side.capitalize()}AddressPrefix[{j}] is not a CIDR"
                ) from None
        tags = []
    return AddressSpec(
        any=any_,
        ranges=tuple(ranges),
        tags=tuple(tags),
        asgs=frozenset(asgs),
        text=tuple(texts) + tuple(sorted(asgs)),
        range_set=RangeSet(ranges),
    )
