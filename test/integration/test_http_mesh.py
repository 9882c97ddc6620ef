"""HTTP between two meshed proxies, for real: a real identity service, mTLS, and HTTP/1.1 carried
over one multiplexed HTTP/2 connection between the proxies (restored to HTTP/1.x for the
application), plus HTTP/2 clients end to end.

pod a ("web") -> a's outbound -> mTLS + HTTP/2 -> b's inbound ("backend") -> origin in b.
"""

import os
import socket
import subprocess
import threading
import unittest

from http1_client import Reader
from http_apps import Origin
from mesh_identity import IdentityPlane, identity_name
from weft_harness import Mesh, require_root, wait_for

WEB = identity_name("web")
BACKEND = identity_name("backend")

CASES = [
    b"GET /raw HTTP/1.1\r\nHost: svc.test\r\nUser-Agent: t/1\r\nX-Mixed-Case: Yes\r\naccept: */*\r\n\r\n",
    b"GET /raw?q=1&r=%20 HTTP/1.1\r\nhost: svc.test\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
    b"GET /raw HTTP/1.1\r\nX-First: 1\r\nHost: svc.test\r\n\r\n",
    b"POST /raw HTTP/1.1\r\nHost: svc.test\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
    b"POST /raw HTTP/1.1\r\nHost: svc.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /raw HTTP/1.1\r\nHost: svc.test\r\nContent-Length: 0\r\n\r\n",
    b"GET http://svc.test/raw HTTP/1.1\r\nHost: svc.test\r\n\r\n",
    b"GET /raw HTTP/1.0\r\nHost: svc.test\r\n\r\n",
]


@require_root
class HttpMeshTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh()
        try:
            cls.idp = IdentityPlane(cls.mesh)
            cls.b = cls.mesh.pod("b", init_args=["--skip-inbound-ports", "7998"],
                                 **cls.idp.proxy_env("backend"))
            cls.a = cls.mesh.pod("a", init_args=["--skip-outbound-ports", "7998"],
                                 **cls.idp.proxy_env("web", static_identities=f"{cls.b.ip}={BACKEND}"))
            with cls.b.netns():
                cls.origin = Origin(7001, "b").start()
                cls.direct = Origin(7998, "b").start()
            # An h2c origin for HTTP/2 clients (Debian's nghttpd serving a directory).
            cls.h2dir = os.path.join(cls.mesh.tmp, "h2root")
            os.makedirs(cls.h2dir)
            cls.h2file = os.urandom(300000)
            with open(os.path.join(cls.h2dir, "file"), "wb") as f:
                f.write(cls.h2file)
            cls.b.popen("nghttpd", "--no-tls", "-d", cls.h2dir, "7002",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: cls.b.run("ss", "-ltn", check=False).stdout.count(":7002") > 0,
                     what="nghttpd listening")
        except BaseException:
            cls.mesh.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for pod in (cls.a, cls.b):
                rc = pod.proxy.stop()
                assert rc == 0, f"proxy in {pod.name} exited {rc}:\n{pod.proxy.log()[-3000:]}"
        finally:
            cls.mesh.close()

    def tearDown(self):
        for pod in (self.a, self.b):
            pod.proxy.assert_clean(self)

    def roundtrip(self, data, port=7001, method="GET"):
        s = self.a.connect(self.b.ip, port)
        try:
            s.sendall(data)
            return Reader(s).read_final(method)
        finally:
            s.close()

    def test_http1_is_restored_exactly_for_the_application(self):
        """Version, target form, field names (case and order) and framing as the client sent."""
        for data in CASES:
            with self.subTest(data=data[:48]):
                meshed = self.roundtrip(data)
                direct = self.roundtrip(data, port=7998)
                self.assertEqual(meshed.status, 200, meshed.body)
                self.assertEqual(meshed.body, direct.body)

    def test_http1_rides_http2_with_mtls_and_golden_metrics(self):
        n = 20
        s = self.a.connect(self.b.ip, 7001)
        r = Reader(s)
        for i in range(n):
            s.sendall(b"GET /status/%d HTTP/1.1\r\nHost: mesh.test\r\n\r\n" % (200 if i % 4 else 500))
            r.read_final()
        s.close()
        out = dict(direction="outbound", authority="mesh.test", tls="true", server_id=BACKEND,
                   target_addr=f"{self.b.ip}:7001")
        inb = dict(direction="inbound", authority="mesh.test", tls="true", client_id=WEB)
        wait_for(lambda: self.b.proxy.metrics().sum("response_total", **inb) == n, timeout=5,
                 what="inbound response_total")
        ma, mb = self.a.proxy.metrics(), self.b.proxy.metrics()
        for m, labels in ((ma, out), (mb, inb)):
            self.assertEqual(m.sum("request_total", **labels), n, labels)
            self.assertEqual(m.sum("response_total", classification="failure", status_code="500", **labels), n // 4)
            self.assertEqual(m.sum("response_total", classification="success", **labels), n - n // 4)
        # One HTTP/2 connection between the proxies carried them (inbound sees mesh TLS on 4143).
        self.assertEqual(mb.sum("tcp_open_total", direction="inbound", peer="src", tls="true", client_id=WEB), 1)

    def test_large_bodies_and_pipelining_over_the_mesh(self):
        payload = bytes(range(256)) * (8 * 4096)  # 8 MiB
        s = self.a.connect(self.b.ip, 7001, timeout=30)
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: big\r\nContent-Length: %d\r\n\r\n" % len(payload))
        t = threading.Thread(target=s.sendall, args=(payload,))
        t.start()
        resp = r.read_final()
        t.join()
        self.assertEqual(resp.body, payload)
        s.sendall(b"GET /status/201 HTTP/1.1\r\nHost: p\r\n\r\nGET /bytes/3000000 HTTP/1.1\r\nHost: p\r\n\r\n")
        self.assertEqual(r.read_final().status, 201)
        big = r.read_final()
        self.assertEqual(len(big.body), 3000000)
        self.assertEqual(big.trailers, [("x-trailer", "done")])
        s.close()

    def test_upgrade_is_a_tunnel_over_mtls(self):
        s = self.a.connect(self.b.ip, 7001)
        r = Reader(s)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        self.assertEqual(r.read().status, 101)
        s.sendall(b"ping")
        got = r.buf
        while len(got) < len(b"echo:ping"):
            got += s.recv(100)
        self.assertEqual(got, b"echo:ping")
        s.close()

    def test_http2_client_end_to_end(self):
        """An h2c (prior knowledge) client: HTTP/2 on every hop."""
        out = self.a.run("nghttp", "-n", "-s", f"http://{self.b.ip}:7002/file",
                         f"http://{self.b.ip}:7002/missing", check=False)
        self.assertIn(" 200 ", out.stdout, out.stdout + out.stderr)
        self.assertIn(" 404 ", out.stdout, out.stdout + out.stderr)
        body = subprocess.run(["ip", "netns", "exec", self.a.ns, "nghttp", f"http://{self.b.ip}:7002/file"],
                              capture_output=True).stdout
        self.assertEqual(body, self.h2file)
        m = self.a.proxy.metrics()
        self.assertGreaterEqual(m.sum("response_total", direction="outbound", tls="true", status_code="404",
                                      target_addr=f"{self.b.ip}:7002"), 1)


if __name__ == "__main__":
    unittest.main()
