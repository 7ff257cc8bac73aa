"""TCP connects with a chosen source address AND source port, all in parallel, classified.

tests/lab/connect_probe.py lets the kernel pick the source port; the iptables differential
test needs to know it, because generated rules match on `--sport` and the engine is given
the whole 5-tuple. Same idea, with a fixed port per probe:

    python flow_probe.py   (inside a namespace)
    stdin:  {"timeout": seconds, "probes": [{"src": ip, "sport": n, "dst": ip, "port": n}, ...]}
    stdout: a JSON list, per probe "open" | "half-open" | "refused" | "unreachable" | "timeout"
            | "error:..."

"open" is a whole handshake: the SYN-ACK came back AND the server accepted (its listener
closes at once, so the client reads EOF). "half-open" is a SYN-ACK without that: the SYN
passed, but a rule dropped or rejected the handshake's ACK (the client may see an RST, a
soft ICMP error or nothing). Every ICMP error that fails connect() counts as "unreachable"
(the REJECT variants other than tcp-reset and icmp-port-unreachable); "error:..." means the
probe itself failed and is never a kernel answer. Sockets close with SO_LINGER 0 (an RST),
so no 4-tuple lingers. `probe_flows(host, probes)` runs it in a lab host.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.lab.netns import Host

__all__ = ["probe_flows"]

_UNREACHABLE = {
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EACCES,
    errno.EPERM,
    errno.EPROTO,
    errno.ENOPROTOOPT,
}
_SYN_SENT, _CLOSE = 2, 7  # tcpi_state values (include/net/tcp_states.h)


def _classify(err: int) -> str:
    if err == 0:
        return "open"
    if err == errno.ECONNREFUSED:
        return "refused"
    if err in _UNREACHABLE:
        return "unreachable"
    if err == errno.ECONNRESET:  # a RST after the SYN-ACK: the handshake got through once
        return "half-open"
    return f"error:{errno.errorcode.get(err, err)}"


def _run(req: dict[str, Any]) -> list[str]:
    timeout = float(req["timeout"])
    probes = req["probes"]
    results = ["timeout"] * len(probes)
    sel = selectors.DefaultSelector()
    socks = []
    for i, p in enumerate(probes):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.setblocking(False)
        try:
            s.bind((p["src"], int(p["sport"])))
        except OSError as exc:
            results[i] = f"error:bind:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
            continue
        err = s.connect_ex((p["dst"], int(p["port"])))
        if err == errno.EINPROGRESS:
            sel.register(s, selectors.EVENT_WRITE, i)
        else:
            results[i] = _classify(err)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, events in sel.select(max(0.0, deadline - time.monotonic())):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            i = key.data
            if events & selectors.EVENT_WRITE:
                state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if state in (_SYN_SENT, _CLOSE):
                    results[i] = _classify(err)
                    sel.unregister(sock)
                else:
                    # The SYN-ACK came back. "open" only once the server has accepted (and
                    # closed): a rule that drops or rejects the handshake's ACK breaks the
                    # connection although the SYN passed; that is "half-open".
                    results[i] = "half-open"
                    sel.modify(sock, selectors.EVENT_READ, i)
            else:
                try:
                    data = sock.recv(1)
                except OSError:
                    data = None
                results[i] = "open" if data is not None else "half-open"
                sel.unregister(sock)
    for s in socks:
        s.close()
    return results


def probe_flows(host: Host, probes: list[dict[str, object]], timeout: float = 0.5) -> list[str]:
    """Connect from `host` for each {src, sport, dst, port}; one answer per probe, in order."""
    req = json.dumps({"timeout": timeout, "probes": probes})
    out = host.exec([sys.executable, str(Path(__file__))], input=req, timeout=timeout + 30).stdout
    got = json.loads(out)
    assert isinstance(got, list)
    return [str(x) for x in got]


if __name__ == "__main__":
    json.dump(_run(json.load(sys.stdin)), sys.stdout)
