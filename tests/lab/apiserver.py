"""Run inside a lab namespace: a cluster's API server as the nodes' tunnel sees it.

    python apiserver.py --cert-chain PEM --key PEM [--alpn konnectivity,http/1.1] \
        [--tls-port 443] [--tcp-port 9000]

TCP 443 completes a TLS handshake with the given certificate, negotiating one of the ALPN
protocols the client offers (none when --alpn is empty, as a TLS-inspecting proxy that
terminates the connection does), answers an HTTP/1.1 request with the 401 an anonymous client
gets, and closes. TCP 9000 (tunnel-front) accepts and closes. Prints "ready" once listening.
Each connection is served in its own thread with a short timeout, so a stuck client never
holds up the others.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import ssl
import threading

_STATUS = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"Unauthorized","reason":"Unauthorized","code":401}\n'
)
_UNAUTHORIZED = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_STATUS)}\r\n".encode()
    + b"Connection: close\r\n\r\n"
    + _STATUS
)


def _listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(256)
    s.setblocking(False)
    return s


def _serve_tls(conn: socket.socket, ctx: ssl.SSLContext) -> None:
    conn.settimeout(5)
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            if tls.selected_alpn_protocol() in (None, "http/1.1"):
                data = tls.recv(4096)
                if data.startswith((b"GET ", b"POST ", b"HEAD ")):
                    tls.sendall(_UNAUTHORIZED)
            with contextlib.suppress(OSError, ValueError):
                tls.unwrap()
    except (OSError, ValueError):
        pass  # handshake refused or client gone: nothing to serve
    finally:
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cert-chain", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--alpn", default="konnectivity,http/1.1")
    p.add_argument("--tls-port", type=int, default=443)
    p.add_argument("--tcp-port", type=int, default=9000)
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert_chain, a.key)
    protocols = [x for x in a.alpn.split(",") if x]
    if protocols:
        ctx.set_alpn_protocols(protocols)
    sel = selectors.DefaultSelector()
    tls_sock, tcp_sock = _listen(a.tls_port), _listen(a.tcp_port)
    sel.register(tls_sock, selectors.EVENT_READ, "tls")
    sel.register(tcp_sock, selectors.EVENT_READ, "tcp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            try:
                conn, _addr = key.fileobj.accept()  # type: ignore[union-attr]
            except OSError:
                continue
            if key.data == "tcp":
                conn.close()
            else:
                conn.setblocking(True)
                threading.Thread(target=_serve_tls, args=(conn, ctx), daemon=True).start()


if __name__ == "__main__":
    main()
