"""Run inside a lab namespace: non-blocking TCP connects, all in parallel, classified.

stdin: {"timeout": seconds, "probes": [{"src": ip, "dst": ip, "port": n}, ...]}
stdout: a JSON list, per probe "open" | "refused" | "unreachable" | "timeout".
"""

import errno
import json
import selectors
import socket
import sys
import time

req = json.load(sys.stdin)
timeout = float(req["timeout"])
results = ["timeout"] * len(req["probes"])
sel = selectors.DefaultSelector()
socks = []
for i, p in enumerate(req["probes"]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    if p.get("src"):
        s.bind((p["src"], 0))
    err = s.connect_ex((p["dst"], int(p["port"])))
    socks.append(s)
    if err in (0,):
        results[i] = "open"
    elif err == errno.EINPROGRESS:
        sel.register(s, selectors.EVENT_WRITE, i)
    elif err == errno.ECONNREFUSED:
        results[i] = "refused"
    else:
        results[i] = "unreachable"
deadline = time.monotonic() + timeout
while sel.get_map() and time.monotonic() < deadline:
    for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
        i = key.data
        err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            results[i] = "open"
        elif err == errno.ECONNREFUSED:
            results[i] = "refused"
        elif err in (
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
            errno.EACCES,
            errno.EPERM,
            errno.EPROTO,
            errno.ECONNRESET,
        ):
            results[i] = "unreachable"
        else:
            results[i] = f"error:{errno.errorcode.get(err, err)}"
        sel.unregister(key.fileobj)
for s in socks:
    s.close()
json.dump(results, sys.stdout)
