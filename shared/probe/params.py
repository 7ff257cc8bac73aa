"""The run-command parameters of the node probe, validated before anything is sent.

The run-command extension pastes each parameter into the script as an unquoted
`export NAME=value` line and runs it as root, so a value is shell code in all but name. Values
are therefore built only from what `ipaddress`, `int` and a strict FQDN pattern accept, and
rendered with a character set that has no meaning to the shell (letters, digits, `.`, `,`,
`-`). Targets travel comma-separated: a space would end the `export` word (azure-cli#25042
reports values with spaces breaking scripts), and the script also re-checks every value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from shared.errors import InputError

__all__ = [
    "MAX_TARGETS",
    "MODES",
    "PARAMETER_NAMES",
    "rendered_preamble",
    "validate_probe_parameters",
]

# A 1,000-node cluster in one run command: the script tests them in 4 batches of 250 parallel
# connects of at most 4 s each (16 s when every target times out; docs/probe.md has the sum).
MAX_TARGETS = 1000
MODES = frozenset({"triage", "deep"})
PARAMETER_NAMES = ("TW_TARGETS", "TW_API_HOST", "TW_API_PORT", "TW_MODE")
_SOURCE = "probe parameters"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# At least two labels, the last with a letter (RFC 3696 2: a top-level domain is never all
# digits): no `localhost`, no `0x7f000001` or `2130706433` that a resolver may read as an
# address, no dotted numbers that are not a dotted quad.
_TLD = r"(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FQDN = re.compile(rf"(?:{_LABEL}\.)+{_TLD}\.?")  # used with fullmatch only
_SAFE_VALUE = re.compile(r"[A-Za-z0-9.,\-]{0,16000}")  # 1,000 addresses; fullmatch only


def _address(value: object, name: str) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise InputError(_SOURCE, f"{name}: expected a string, got {type(value).__name__}")
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise InputError(_SOURCE, f"{name}: {value!r} is not an IPv4 address") from None
    if str(addr) != value:  # no leading zeros, spaces or other spellings
        raise InputError(_SOURCE, f"{name}: {value!r} is not in dotted-quad form")
    for bad, what in (
        (addr.is_loopback, "loopback"),
        (addr.is_multicast, "multicast"),
        (addr.is_unspecified, "unspecified"),
    ):
        if bad:
            raise InputError(_SOURCE, f"{name}: {value} is a {what} address")
    return addr


def _api_host(value: object) -> str:
    if not isinstance(value, str):
        raise InputError(_SOURCE, f"TW_API_HOST: expected a string, got {type(value).__name__}")
    if value == "":
        return ""  # no API server test in this run (the script skips it)
    if re.fullmatch(r"[0-9.]+", value):
        return str(_address(value, "TW_API_HOST"))
    if len(value) > 253 or _FQDN.fullmatch(value) is None:
        raise InputError(
            _SOURCE,
            f"TW_API_HOST: {value!r} is not an FQDN (two labels or more of letters, digits, "
            "hyphens, 1-63 each, the last with a letter; at most 253 characters) or an IPv4 "
            "address",
        )
    return value


def validate_probe_parameters(
    targets: Iterable[str], api_host: str, api_port: int, mode: str
) -> list[tuple[str, str]]:
    """The (name, value) run-command parameters; InputError naming the parameter otherwise."""
    if isinstance(targets, str):
        raise InputError(_SOURCE, "TW_TARGETS: expected a list of addresses, got one string")
    seen: dict[str, None] = {}
    for t in targets:
        seen[str(_address(t, "TW_TARGETS"))] = None
        if len(seen) > MAX_TARGETS:
            raise InputError(_SOURCE, f"TW_TARGETS: more than {MAX_TARGETS} targets")
    host = _api_host(api_host)
    if isinstance(api_port, bool) or not isinstance(api_port, int):
        raise InputError(_SOURCE, f"TW_API_PORT: expected an integer, got {api_port!r}")
    if not 1 <= api_port <= 65535:
        raise InputError(_SOURCE, f"TW_API_PORT: {api_port} is not in 1-65535")
    if not isinstance(mode, str) or mode not in MODES:
        raise InputError(_SOURCE, f"TW_MODE: {mode!r} is not one of {sorted(MODES)}")
    return [
        ("TW_TARGETS", ",".join(seen)),
        ("TW_API_HOST", host),
        ("TW_API_PORT", str(api_port)),
        ("TW_MODE", mode),
    ]


def rendered_preamble(params: Sequence[tuple[str, str]]) -> str:
    """The `export NAME=value` lines the extension prepends, one per parameter.

    Checked again here (names known, values in a shell-inert character set) so that a list
    built by hand, not by `validate_probe_parameters`, cannot render into shell code.
    """
    lines = []
    for name, value in params:
        if name not in PARAMETER_NAMES:
            raise InputError(_SOURCE, f"{name!r} is not a probe parameter")
        if not isinstance(value, str) or _SAFE_VALUE.fullmatch(value) is None:
            raise InputError(_SOURCE, f"{name}: {value!r} holds characters unsafe in a shell")
        lines.append(f"export {name}={value}\n")
    return "".join(lines)
