#!/usr/bin/env python3
"""The two-pod smoke: the main job until `weft demo` exists.

Makes a trust anchor and issuer (`weft certs`), starts the identity service
(`weft-controller identity`) in a control-plane pod, creates two pods (network namespaces on a
private bridge) with weft-init's interception rules and weft-proxy as UID 2102, each certified
with its own identity; runs an HTTP server and a Redis-style opaque service in pod "backend",
sends traffic to them from pod "web" with curl and a raw socket -- mutual TLS between the
proxies -- and prints what each proxy's /metrics says about it. Everything is removed on exit.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "integration"))
from mesh_identity import IdentityPlane, identity_name  # noqa: E402
from weft_harness import Mesh, Server, wait_for  # noqa: E402

REQUESTS = int(os.environ.get("WEFT_SMOKE_REQUESTS", "50"))


def redis_like(conn):
    conn.sendall(b"+READY\r\n")  # server speaks first, on an opaque port (6379)
    while True:
        line = conn.recv(1024)
        if not line:
            return
        conn.sendall(b"+PONG\r\n" if line.strip() == b"PING" else b"-ERR unknown\r\n")


def main():
    if os.geteuid() != 0:
        sys.exit("smoke: pods are network namespaces with iptables rules: run as root (sudo scripts/demo)")
    mesh = Mesh()
    try:
        print("smoke: trust anchor + issuer (weft certs), identity service in pod 'control'")
        idp = IdentityPlane(mesh)
        print("smoke: creating pods 'web' and 'backend' with weft-init rules and weft-proxy (uid 2102)")
        backend = mesh.pod("backend", **idp.proxy_env("backend"))
        web = mesh.pod("web", **idp.proxy_env("web", static_identities=f"{backend.ip}={identity_name('backend')}"))
        print(f"smoke:   web     {web.ip}  proxy pid {web.proxy.pid}  identity {identity_name('web')}")
        print(f"smoke:   backend {backend.ip}  proxy pid {backend.proxy.pid}  identity {identity_name('backend')}")
        http = backend.popen("/usr/bin/python3", "-m", "http.server", "8080", "--bind", "0.0.0.0",
                             stdout=open(os.devnull, "wb"), stderr=open(os.devnull, "wb"))
        wait_for(lambda: backend.run("curl", "-s", "-o", "/dev/null", "http://127.0.0.1:8080/", check=False).returncode == 0,
                 what="http server")
        redis = Server(backend, 6379, redis_like)

        print(f"smoke: {REQUESTS} HTTP requests web -> backend:8080 (curl), through both proxies")
        ok = 0
        for _ in range(REQUESTS):
            r = web.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{backend.ip}:8080/", check=False)
            ok += r.stdout == "200"
        print(f"smoke:   {ok}/{REQUESTS} answered 200")
        print("smoke: opaque, server-speaks-first exchange web -> backend:6379")
        s = web.connect(backend.ip, 6379)
        banner = s.recv(100)
        s.sendall(b"PING\r\n")
        reply = s.recv(100)
        s.close()
        print(f"smoke:   banner {banner!r}, reply {reply!r}")

        time.sleep(0.2)
        for pod, direction in ((web, "outbound"), (backend, "inbound")):
            m = pod.proxy.metrics()
            print(f"\n== {pod.name} proxy ({direction}) /metrics, selected ==")
            for name in ("tcp_open_total", "tcp_read_bytes_total", "tcp_write_bytes_total", "tcp_close_total",
                         "protocol_detect_total"):
                for labels, value in m.find(name, direction=direction):
                    shown = ",".join(f'{k}="{v}"' for k, v in labels.items()
                                     if k in ("peer", "target_addr", "tls", "client_id", "server_id", "errno",
                                              "protocol", "reason"))
                    print(f"{name}{{{shown}}} {value:g}")
            rss = m.sum("process_resident_memory_bytes") / 1e6
            print(f"process_resident_memory_bytes {rss:.1f} MB")
            left = (m.sum("identity_cert_expiration_timestamp_seconds") - time.time()) / 3600
            print(f"identity certificate valid for another {left:.1f} h")
        redis.close()
        http.terminate()
        mtls = backend.proxy.metrics().sum("tcp_open_total", direction="inbound", peer="src", tls="true",
                                           client_id=identity_name("web"))
        good = ok == REQUESTS and banner == b"+READY\r\n" and reply == b"+PONG\r\n" and mtls >= REQUESTS + 1
        print("\nsmoke: " + (f"OK: traffic flowed through both proxies, {mtls:g} connections over mTLS"
                              if good else "FAILED"))
        return 0 if good else 1
    finally:
        mesh.close()
        print("smoke: pods, bridge and processes removed")


if __name__ == "__main__":
    sys.exit(main())
