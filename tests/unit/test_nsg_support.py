"""Builders for NSG documents shared by the test_nsg_* modules (holds no tests itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.analysis.nsg import Nsg, parse_nsg

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nsg"
SUB = "00000000-1111-2222-3333-444444444444"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def nsg_id(name: str, rg: str = "rg-test") -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{name}"


def rule(
    name: str,
    priority: int,
    access: str = "Allow",
    *,
    direction: str = "Inbound",
    proto: str = "Tcp",
    src: str | list[str] = "*",
    dst: str | list[str] = "*",
    dport: str | list[str] = "*",
    sport: str | list[str] = "*",
    **extra: Any,
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "protocol": proto,
        "access": access,
        "priority": priority,
        "direction": direction,
    }
    for single, plural, value in (
        ("sourceAddressPrefix", "sourceAddressPrefixes", src),
        ("destinationAddressPrefix", "destinationAddressPrefixes", dst),
        ("destinationPortRange", "destinationPortRanges", dport),
        ("sourcePortRange", "sourcePortRanges", sport),
    ):
        if isinstance(value, list):
            props[single] = ""
            props[plural] = value
        else:
            props[single] = value
            props[plural] = []
    props.update(extra)
    return {"name": name, "properties": props}


def doc(*rules: dict[str, Any], name: str = "nsg-test", rg: str = "rg-test") -> dict[str, Any]:
    return {
        "name": name,
        "id": nsg_id(name, rg),
        "type": "Microsoft.Network/networkSecurityGroups",
        "properties": {"securityRules": list(rules)},
    }


def nsg(*rules: dict[str, Any], name: str = "nsg-test", rg: str = "rg-test") -> Nsg:
    return parse_nsg(doc(*rules, name=name, rg=rg), f"{name}.json")
