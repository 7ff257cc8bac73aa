"""The node lab: every running Linux scale-set instance of an Estate as a network namespace,
and an executor that runs run-command scripts in them the way the extension does.

    estate, faults = load_lab_file(SCENARIOS / "nodelab.lab.json")
    with NodeLab(estate, faults) as lab, ArmSimulator(estate, executor=lab.executor) as sim:
        ...  # begin_run_command(...) runs the script in the node's namespace
        lab.executions  # what ran where: the exact text, output, status, time

Per cluster, one bridge (a tests.lab.netns.Lab: clusters may reuse 10.224.0.0/12, so each is
its own L2 segment); per node a namespace on it with the NIC's address(es), on-link routes to
the cluster's other node subnets, the standard AKS rules (aks_rules.py) restored into the
backend of its image (legacy for Ubuntu, nft for Azure Linux), /etc/alternatives pointing
`iptables` at that backend, a real ufw with its own /etc/ufw and /etc/default (ufwlab.UfwHost,
inactive; Azure Linux images carry none), a TCP 10250 listener, /etc/hosts naming the API
server, /etc/os-release of the image, and a stand-in crictl (crictl_standin.py) with the
node's containers. Per cluster an API server namespace (apiserver.py): TLS on 443 with a
throwaway cluster CA's certificate (certs.py) for its FQDNs and ALPN konnectivity, TCP 9000. Faults
(faults.py) edit these plans before anything is built.

Run commands: `ip netns exec <node> unshare --mount --uts --propagation private` then, inside
that private mount namespace only: a tmpfs on /run (the node's own), crictl made visible as
/usr/sbin/crictl (a read-only overlay lowerdir=<node dir>:/usr/sbin, or where overlayfs is
missing a bind mount of a directory of symlinks), the node's hostname, and
`exec /bin/bash -c <text>` where text is the parameters as unquoted `export NAME=value` lines
followed by the script lines joined by newlines. Nothing is written for the script; it runs
as root with a 90 s limit (its process group is killed after that).

Everything lives in namespaces, /etc/netns/<ns> and a temporary directory the lab creates;
`close()` (also on failure, KeyboardInterrupt included) kills the processes, removes the
/etc/netns directories and deletes the namespaces. Setup runs in threads.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests.armsim import Estate
from tests.lab.aks_rules import standard_rules
from tests.lab.certs import issue_server_cert
from tests.lab.faults import API_FAULTS, NODE_FAULTS, ApiPlan, NodePlan, default_containers
from tests.lab.netns import Host, Lab, run
from tests.lab.nodelab_plan import FaultMap, LabCluster, NodeSpec, check_faults, read_estate
from tests.lab.ufwlab import UfwHost

__all__ = ["Execution", "LabApiServer", "LabNode", "NodeLab"]

_HERE = Path(__file__).resolve().parent
_LABS = itertools.count()  # namespace names differ between labs of one process
_NETNS_ETC = Path("/etc/netns")
_OS_RELEASE = {
    "Ubuntu": 'PRETTY_NAME="Ubuntu 22.04.5 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
    'VERSION="22.04.5 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n',
    "AzureLinux": 'NAME="Microsoft Azure Linux"\nVERSION="3.0.20241005"\nID=azurelinux\n'
    'VERSION_ID="3.0"\nPRETTY_NAME="Microsoft Azure Linux 3.0"\nHOME_URL="https://aka.ms/azurelinux"\n',
}
_BACKEND = {"Ubuntu": "legacy", "AzureLinux": "nft"}
_TABLES = ("iptables", "iptables-restore", "iptables-save",
           "ip6tables", "ip6tables-restore", "ip6tables-save")  # fmt: skip
# $1 node dir, $2 hostname, $3 the text to run; runs in the private mount and UTS namespace.
_ENTER = {
    "overlay": 'mount -t overlay twcrictl -o "ro,lowerdir=$1/sbin:/usr/sbin" /usr/sbin',
    "bind": 'mount --bind /usr/sbin "$1/orig" && mount --bind "$1/sbin" /usr/sbin',
}
_WRAPPER = (
    'mount -t tmpfs -o mode=0755 twrun /run && {enter} && hostname "$2" '
    '|| {{ echo "node lab: cannot enter the node" >&2; exit 125; }}\n'
    'exec /bin/bash -c "$3"'
)


@dataclass(frozen=True, slots=True)
class Execution:
    """One run command the executor ran (or refused), as tests inspect it."""

    node: str  # cluster/pool/instance
    namespace: str
    subscription: str
    resource_group: str
    vmss: str
    instance_id: str
    text: str  # exactly what /bin/bash -c received
    stdout: str
    stderr: str
    returncode: int | None  # None: killed at the time limit
    seconds: float


@dataclass(slots=True)
class LabNode:
    spec: NodeSpec
    plan: NodePlan
    namespace: str
    dir: Path
    host: Host | None = None
    ufw: UfwHost | None = None

    @property
    def addresses(self) -> list[str]:
        return [i.split("/")[0] for i in self.spec.interfaces]

    def exec(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """A command in the node's namespace (set-up and checks; not the run-command path)."""
        assert self.host is not None
        result: subprocess.CompletedProcess[str] = self.host.exec(argv, **kw)
        return result


@dataclass(slots=True)
class LabApiServer:
    cluster: LabCluster
    plan: ApiPlan
    namespace: str
    ca_path: Path  # the cluster CA that issued the real certificate
    host: Host | None = None


@dataclass
class _Segment:
    lab: Lab
    lock: threading.Lock = field(default_factory=threading.Lock)
    peers: int = 0


class NodeLab:
    """See the module docstring. Build with `with NodeLab(estate, faults) as lab:`."""

    def __init__(
        self,
        estate: Estate,
        faults: FaultMap | None = None,
        *,
        timeout: float = 90.0,
        workers: int = 8,
        crictl_mount: str = "auto",
    ) -> None:
        if crictl_mount not in ("auto", "overlay", "bind"):
            raise ValueError("crictl_mount is auto, overlay or bind")
        self.timeout = timeout
        self.workers = workers
        self.crictl_mount = crictl_mount
        self.clusters = read_estate(estate)
        faults = faults or {}
        check_faults(faults, self.clusters)
        self.nodes: dict[str, LabNode] = {}
        self.apis: dict[str, LabApiServer] = {}
        self.executions: list[Execution] = []
        self.setup_seconds = 0.0
        self.teardown_errors: list[str] = []
        self._plans(faults)
        self._by_vm = {
            (n.spec.subscription.lower(), n.spec.resource_group.lower(), n.spec.vmss.lower(),
             n.spec.instance_id): n for n in self.nodes.values()
        }  # fmt: skip
        self._segments: dict[str, _Segment] = {}
        self._etc_dirs: list[Path] = []
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._tmp: Path | None = None
        self._closed = False

    # -- plans ------------------------------------------------------------------------------
    def _plans(self, faults: FaultMap) -> None:
        self._tag = tag = f"tw{os.getpid() % 100000}l{next(_LABS)}"
        for ci, c in enumerate(self.clusters):
            wanted = faults.get(c.name, {})
            for ni, spec in enumerate(c.nodes):
                plan = NodePlan(
                    spec.key, [i.split("/")[0] for i in spec.interfaces], list(c.subnets),
                    _BACKEND.get(spec.os_sku, "legacy"), spec.os_sku != "AzureLinux",
                    default_containers(spec.key),
                )  # fmt: skip
                for name in wanted.get(f"{spec.pool}/{spec.instance_id}", ()):
                    NODE_FAULTS[name](plan)
                    plan.faults.append(name)
                self.nodes[spec.key] = LabNode(spec, plan, f"{tag}c{ci}n{ni}", Path())
            api = ApiPlan(c.name, c.api_address, list(c.names), c.node_addresses)
            for name in wanted.get("apiserver", ()):
                API_FAULTS[name](api)
                api.faults.append(name)
            self.apis[c.name] = LabApiServer(c, api, f"{tag}c{ci}api", Path())

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> NodeLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        t0 = time.perf_counter()
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix="twnodelab-"))
            if self.crictl_mount == "auto":
                self.crictl_mount = _overlay_or_bind(self._tmp)
            self._parallel([partial(self._segment, c) for c in self.clusters])
            jobs: list[Callable[[], None]] = [partial(self._node, n) for n in self.nodes.values()]
            jobs += [partial(self._api, a) for a in self.apis.values()]
            jobs += [
                partial(self._kubelet_only, c, spec, f"{self._tag}c{ci}w{wi}")
                for ci, c in enumerate(self.clusters)
                for wi, spec in enumerate(c.windows)
            ]
            self._parallel(jobs)
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.perf_counter() - t0

    def _parallel(self, jobs: Sequence[Callable[[], None]]) -> None:
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(jobs))))
        try:
            for f in [pool.submit(j) for j in jobs]:
                f.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Kill, unmount (private mounts die with their processes), delete; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = list(self._running)
        for proc in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        steps: list[tuple[str, Callable[[], None]]] = []
        steps += [
            (f"rm {d}", partial(shutil.rmtree, d, ignore_errors=True)) for d in self._etc_dirs
        ]
        steps += [(f"lab {s.lab.id}", s.lab.close) for s in self._segments.values()]
        if self._tmp is not None:
            tmp = self._tmp
            steps.append((f"rm {tmp}", partial(shutil.rmtree, tmp, ignore_errors=True)))
        for what, step in steps:
            try:
                step()
            except Exception as e:  # keep tearing down; tests assert the list is empty
                self.teardown_errors.append(f"{what}: {e}")

    # -- building -----------------------------------------------------------------------------
    def _segment(self, c: LabCluster) -> None:
        lab = Lab(c.subnets[0])
        self._segments[c.name] = _Segment(lab)

    def _attach(self, c: LabCluster, name: str, interfaces: list[str], extra: list[str]) -> Host:
        """A namespace on the cluster's bridge with these addresses and on-link routes."""
        seg = self._segments[c.name]
        with seg.lock:
            seg.peers += 1
            peer = f"v{seg.peers}"
        run(["ip", "netns", "add", name])
        host = Host(seg.lab, name, [i.split("/")[0] for i in interfaces])
        with seg.lock:
            seg.lab.hosts.append(host)  # from here on, Lab.close deletes it
        run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", peer,
             "netns", seg.lab.switch])  # fmt: skip
        run(["ip", "-n", seg.lab.switch, "link", "set", peer, "master", "br0", "up"])
        batch = [f"addr add {i} dev eth0" for i in interfaces]
        batch += ["link set lo up", "link set eth0 up"]
        batch += [f"route add {r} dev eth0 scope link" for r in extra]
        run(["ip", "-n", name, "-batch", "-"], input="\n".join(batch) + "\n")
        return host

    def _routes(self, c: LabCluster, interfaces: list[str]) -> list[str]:
        nets = [ipaddress.ip_interface(i).network for i in interfaces]
        routes = [s for s in c.subnets if ipaddress.ip_network(s) not in nets]
        api = ipaddress.ip_address(c.api_address)
        if not any(api in n for n in nets) and not any(
            api in ipaddress.ip_network(s) for s in routes
        ):
            routes.append(f"{api}/32")
        return routes

    def _node(self, node: LabNode) -> None:
        c = next(x for x in self.clusters if x.name == node.spec.cluster)
        plan, spec = node.plan, node.spec
        assert self._tmp is not None
        node.dir = self._tmp / node.namespace
        (node.dir / "sbin").mkdir(parents=True)
        node.host = host = self._attach(
            c, node.namespace, spec.interfaces, self._routes(c, spec.interfaces)
        )
        etc = _NETNS_ETC / node.namespace
        self._etc_dirs.append(etc)
        if plan.has_ufw:
            node.ufw = UfwHost(host)  # makes /etc/netns/<ns> with ufw/ and default/
        else:
            etc.mkdir(parents=True, exist_ok=False)
        (etc / "hosts").write_text(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
            f"{node.addresses[0]} {spec.computer_name}\n{c.api_address} {' '.join(c.names)}\n"
        )
        (etc / "os-release").write_text(_OS_RELEASE.get(spec.os_sku, _OS_RELEASE["Ubuntu"]))
        _alternatives(etc / "alternatives", plan.backend)
        self._crictl(node)
        host.exec([f"iptables-{plan.backend}-restore"], input=standard_rules(c.subnets, c.pod_cidr))
        for backend, argv in plan.iptables:
            host.exec([f"iptables-{backend}", *argv])
        for argv in plan.ufw:
            assert node.ufw is not None
            node.ufw.ufw(*argv)
        host.listen([10250])

    def _kubelet_only(self, c: LabCluster, spec: NodeSpec, namespace: str) -> None:
        """A Windows node: its address and a kubelet port, nothing to probe on it."""
        host = self._attach(c, namespace, spec.interfaces, self._routes(c, spec.interfaces))
        host.listen([10250])

    def _crictl(self, node: LabNode) -> None:
        state = node.dir / "containers.json"
        state.write_text(json.dumps({"containers": [asdict(c) for c in node.plan.containers]}))
        wrapper = node.dir / "sbin" / "crictl"
        wrapper.write_text(
            f"#!/bin/sh\nTW_LAB_CRICTL_STATE={state} exec {sys.executable} -I "
            f'{_HERE / "crictl_standin.py"} "$@"\n'
        )
        wrapper.chmod(0o755)
        sbin = node.dir / "sbin"
        if self.crictl_mount == "overlay":
            if not node.plan.has_ufw:  # an overlay whiteout hides the machine's ufw
                os.mknod(sbin / "ufw", stat.S_IFCHR | 0o000, os.makedev(0, 0))
            return
        (node.dir / "orig").mkdir()
        for entry in os.listdir("/usr/sbin"):
            if entry == "crictl" or (entry == "ufw" and not node.plan.has_ufw):
                continue
            (sbin / entry).symlink_to(node.dir / "orig" / entry)

    def _api(self, api: LabApiServer) -> None:
        assert self._tmp is not None
        c, plan = api.cluster, api.plan
        d = self._tmp / api.namespace
        d.mkdir()
        names = plan.names or [plan.address]
        real = issue_server_cert(names)  # the cluster CA: CN=ca, the server CN=apiserver
        api.ca_path = real.write(d)[0]
        if plan.inspecting_ca:  # re-signed by the firewall's own CA, subject copied
            fake = issue_server_cert(names, ca_cn="Contoso Firewall TLS Inspection CA",
                                     leaf_cn=names[0], ca_org="Contoso")  # fmt: skip
            (d / "chain.pem").write_bytes(fake.chain_pem)
            (d / "key.pem").write_bytes(fake.key_pem)
        prefix = c.subnets[0].split("/")[1]
        iface = f"{plan.address}/{prefix}"
        if ipaddress.ip_address(plan.address) not in ipaddress.ip_network(c.subnets[0]):
            iface = f"{plan.address}/32"
        api.host = host = self._attach(c, api.namespace, [iface], self._routes(c, [iface]))
        if plan.drop_from_nodes:
            ports = ",".join(map(str, plan.drop_from_nodes))
            host.exec(["iptables-nft", "-A", "INPUT", "-s", ",".join(plan.node_addresses),
                       "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP"])  # fmt: skip
        proc = subprocess.Popen(
            ["ip", "netns", "exec", api.namespace, sys.executable, str(_HERE / "apiserver.py"),
             "--cert-chain", str(d / "chain.pem"), "--key", str(d / "key.pem"),
             "--alpn", ",".join(plan.alpn)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        host.listeners.append(proc)  # Lab.close kills it
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith(b"ready"):
            raise RuntimeError(f"API server of {c.name} did not start")

    # -- the run-command executor ----------------------------------------------------------
    def node(self, cluster: str, pool: str, instance_id: str | int) -> LabNode:
        return self.nodes[f"{cluster}/{pool}/{instance_id}"]

    def resolve_overrides(self) -> dict[str, str]:
        """FQDN -> the lab API server's address, for a resolver that agrees with the nodes."""
        return {name: c.api_address for c in self.clusters for name in c.names}

    def executor(
        self, subscription: str, resource_group: str, vmss: str, instance_id: str,
        script: Sequence[str], parameters: Sequence[tuple[str, str]],
    ) -> tuple[str, str]:  # fmt: skip
        """ArmSimulator's executor: (stdout, stderr) of the script in the node's namespace."""
        key = (subscription.lower(), resource_group.lower(), vmss.lower(), instance_id)
        node = self._by_vm.get(key)
        if node is None:
            raise LookupError(
                f"no lab node for {resource_group}/{vmss}/{instance_id} (not a running Linux "
                "scale-set instance of the estate)"
            )
        text = "".join(f"export {n}={v}\n" for n, v in parameters) + "\n".join(script)
        return self.run(node, text)

    def run(self, node: LabNode, text: str) -> tuple[str, str]:
        """Run `text` with /bin/bash -c as root in the node, as the extension would."""
        spec = node.spec
        argv = ["ip", "netns", "exec", node.namespace, "unshare", "--mount", "--uts",
                "--propagation", "private", "/bin/sh", "-c",
                _WRAPPER.format(enter=_ENTER[self.crictl_mount]), "twnode", str(node.dir),
                spec.computer_name, text]  # fmt: skip
        t0 = time.perf_counter()
        with self._lock:
            if self._closed:
                raise RuntimeError("the node lab is closed")
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            self._running.add(proc)
        code: int | None
        try:
            out, err = proc.communicate(timeout=self.timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += f"\nnode lab: killed after {self.timeout:g} s\n".encode()
            code = None
        finally:
            with self._lock:
                self._running.discard(proc)
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        with self._lock:
            self.executions.append(Execution(
                spec.key, node.namespace, spec.subscription, spec.resource_group, spec.vmss,
                spec.instance_id, text, stdout, stderr, code, time.perf_counter() - t0,
            ))  # fmt: skip
        return stdout, stderr


def _alternatives(target: Path, backend: str) -> None:
    """A copy of /etc/alternatives whose iptables names point at this node's backend."""
    shutil.copytree("/etc/alternatives", target, symlinks=True)
    for name in _TABLES:
        real = Path("/usr/sbin") / name.replace("tables", f"tables-{backend}", 1)
        if real.exists():
            (target / name).unlink(missing_ok=True)
            (target / name).symlink_to(real)


def _overlay_or_bind(tmp: Path) -> str:
    """overlay when a read-only overlay of /usr/sbin works here, else bind."""
    probe = tmp / "overlay-probe"
    probe.mkdir()
    (probe / "crictl").write_text("#!/bin/sh\n")
    (probe / "crictl").chmod(0o755)
    script = (
        f'mount -t overlay twcrictl -o "ro,lowerdir={probe}:/usr/sbin" /usr/sbin '
        "&& test -x /usr/sbin/crictl"
    )
    proc = run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
               check=False)  # fmt: skip
    shutil.rmtree(probe, ignore_errors=True)
    return "overlay" if proc.returncode == 0 else "bind"
