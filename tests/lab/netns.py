"""A small lab of Linux network namespaces for tests that need the real kernel.

Everything lives in namespaces the lab creates: a "switch" namespace holds a bridge, and each
host is a namespace wired to it with a veth pair (its end is named eth0). Nothing is added to
the root namespace. `Lab.close()` deletes every namespace (and with them the veths), also when
a test fails; names carry the pid so parallel runs do not collide.

Used by the iptables/ufw differential tests and, later, the node lab of the probe issue.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_counter = itertools.count()
_PROBE = Path(__file__).with_name("connect_probe.py")
_LISTENER = Path(__file__).with_name("listener.py")


def netns_unavailable_reason() -> str:
    """Empty when namespaces can be made here; otherwise why not."""
    if sys.platform != "linux":
        return "not Linux"
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is missing"
    name = f"twchk{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ""


def run(argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 30):
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    lab: Lab
    name: str  # namespace name
    addresses: list[str]
    iface: str = "eth0"
    listeners: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def exec(
        self,
        argv: list[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 30,
        env: dict[str, str] | None = None,
    ):
        prefix = ["ip", "netns", "exec", self.name]
        if env:
            prefix += ["env", *(f"{k}={v}" for k, v in env.items())]
        return run(prefix + argv, input=input, check=check, timeout=timeout)

    def listen(self, ports: list[int]) -> None:
        """Accept (and close) TCP connections on these ports on every address."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, str(_LISTENER), *map(str, ports)],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # the listener prints one line once bound
        if not ready.startswith(b"ready"):
            proc.kill()
            raise RuntimeError(f"listener in {self.name} did not start")
        self.listeners.append(proc)

    def connect(self, probes: list[dict[str, object]], timeout: float = 0.4) -> list[str]:
        """Real TCP connects from this host, all at once; each probe is {src, dst, port}.

        Returns per probe: "open", "refused", "unreachable" or "timeout".
        """
        req = json.dumps({"timeout": timeout, "probes": probes})
        out = self.exec([sys.executable, str(_PROBE)], input=req, timeout=timeout + 20).stdout
        return list(json.loads(out))


class Lab:
    def __init__(self, subnet: str = "10.250.0.0/24") -> None:
        self.id = f"tw{os.getpid() % 100000}x{next(_counter)}"
        self.network = ipaddress.ip_network(subnet)
        self.switch = f"{self.id}sw"
        self.hosts: list[Host] = []
        self._closed = False
        run(["ip", "netns", "add", self.switch])
        run(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.switch, "link", "set", "br0", "up"])

    def add_host(self, addresses: list[str]) -> Host:
        """A namespace with eth0 on the bridge, carrying these addresses (in the lab subnet)."""
        n = len(self.hosts)
        name = f"{self.id}h{n}"
        peer = f"v{n}"
        run(["ip", "netns", "add", name])
        run(
            [
                "ip",
                "-n",
                name,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                self.switch,
            ]
        )
        run(["ip", "-n", self.switch, "link", "set", peer, "master", "br0", "up"])
        for addr in addresses:
            run(
                ["ip", "-n", name, "addr", "add", f"{addr}/{self.network.prefixlen}", "dev", "eth0"]
            )
        run(["ip", "-n", name, "link", "set", "eth0", "up"])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        host = Host(self, name, list(addresses))
        self.hosts.append(host)
        return host

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            for proc in host.listeners:
                proc.kill()
                proc.wait(timeout=5)
            run(["ip", "netns", "del", host.name], check=False)
        run(["ip", "netns", "del", self.switch], check=False)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
