"""Reading inputs and typed arguments: errors name the input and what is wrong."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

from shared.cli.common import ip_address, ip_network, port_number, read_input
from shared.errors import InputError


def test_read_file_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "rules.txt"
    f.write_bytes(b"-P INPUT ACCEPT\n\xff\n")
    name, text = read_input(str(f))
    assert name == str(f)
    assert text.startswith("-P INPUT ACCEPT\n")
    assert "\ufffd" in text  # undecodable bytes are replaced, not fatal

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"hello")))
    assert read_input("-") == ("<stdin>", "hello")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.txt", "no such file"),
        (lambda p: p, "is a directory"),
    ],
)
def test_read_errors_name_the_input(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        read_input(str(path))
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_argument_types() -> None:
    assert str(ip_address(" 10.0.0.1 ")) == "10.0.0.1"
    assert str(ip_network("10.0.0.7/24")) == "10.0.0.0/24"
    assert port_number("10250") == 10250
    for fn, bad, msg in [
        (ip_address, "10.0.0.300", "not an IP address"),
        (ip_network, "10.0.0.0/33", "not a CIDR prefix"),
        (port_number, "ten", "not a port number"),
        (port_number, "70000", "outside 0-65535"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            fn(bad)  # type: ignore[operator]
