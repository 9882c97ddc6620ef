"""HTTP/1.1 through weft-proxy, per request, for real: pods on a bridge, weft-init rules, proxies as
UID 2102, a raw origin (http_apps.py) that can return the exact bytes it received.

pod a (client) -> a's outbound proxy -> b's (or c's) inbound proxy -> origin in b (or c).
Identity is disabled here (plaintext, HTTP/1 on both hops); test_http_mesh.py covers the meshed
path (HTTP/1 carried over HTTP/2 + mTLS between the proxies).
"""

import os
import socket
import threading
import time
import unittest

from http1_client import Reader
from http_apps import Origin
from weft_harness import Mesh, require_root, wait_for

B_IP, C_IP = "10.88.0.3", "10.88.0.4"
SVC_LB = "10.96.0.10"      # b and c (c is slow)
SVC_DEAD = "10.96.0.11"    # b, c and a dead endpoint
REQUEST_TIMEOUT_MS = 4000


def request(pod, host, port, data, timeout=10):
    s = pod.connect(host, port, timeout)
    s.sendall(data)
    return s, Reader(s)


# Each vector is answered by the proxy itself with (status, weft-proxy-error) and the connection
# is closed; the origin never sees it (docs/dev/http1-parser.md lists them all).
SMUGGLING = [
    ("cl_cl_conflict", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, "duplicate_content_length"),
    ("cl_cl_same", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, "duplicate_content_length"),
    ("cl_list", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nContent-Length: 5, 5\r\n\r\nhello", 400, None),
    ("cl_and_te", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, None),
    ("te_not_chunked_last", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", None, None),
    ("te_duplicate", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", None, None),
    ("te_space_before_colon", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, "space_before_colon"),
    ("te_obs_fold", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400, "obs_fold"),
    ("obs_fold", b"GET /smuggle HTTP/1.1\r\nHost: s\r\nX-A: a\r\n b\r\n\r\n", 400, "obs_fold"),
    ("cl_negative", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nContent-Length: -1\r\n\r\n", 400, None),
    ("cl_plus", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nContent-Length: +5\r\n\r\nhello", 400, None),
    ("cl_hex", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nContent-Length: 0x5\r\n\r\nhello", 400, None),
    ("chunk_size_invalid", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, None),
    ("chunk_size_overflow", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nx\r\n0\r\n\r\n", 400, None),
    ("chunk_size_space", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400, None),
    ("chunk_missing_crlf", b"POST /smuggle HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n", 400, None),
    ("nul_in_value", b"GET /smuggle HTTP/1.1\r\nHost: s\r\nX-A: a\x00b\r\n\r\n", 400, None),
    ("cr_in_value", b"GET /smuggle HTTP/1.1\r\nHost: s\r\nX-A: a\rb\r\n\r\n", 400, None),
    ("lf_line_ending", b"GET /smuggle HTTP/1.1\nHost: s\n\n", 400, None),
    ("bad_header_name", b"GET /smuggle HTTP/1.1\r\nHost: s\r\nX(A): b\r\n\r\n", 400, None),
    ("empty_header_name", b"GET /smuggle HTTP/1.1\r\nHost: s\r\n: b\r\n\r\n", 400, None),
    ("invalid_target", b"GET /smu ggle HTTP/1.1\r\nHost: s\r\n\r\n", 400, None),
    ("target_ctl", b"GET /smuggle\x01 HTTP/1.1\r\nHost: s\r\n\r\n", 400, None),
    ("http11_without_host", b"GET /smuggle HTTP/1.1\r\n\r\n", 400, None),
    ("two_hosts", b"GET /smuggle HTTP/1.1\r\nHost: s\r\nHost: t\r\n\r\n", 400, None),
    ("bad_version", b"GET /smuggle HTTP/1.2\r\nHost: s\r\n\r\n", 505, None),
    ("garbage_version", b"GET /smuggle HTTQ/1.1\r\nHost: s\r\n\r\n", 400, None),
]


@require_root
class Http1Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh()
        env = dict(WEFT_PROXY_LOG=os.environ.get("WEFT_TEST_PROXY_LOG", "info"),
                   WEFT_PROXY_OUTBOUND_REQUEST_TIMEOUT=f"{REQUEST_TIMEOUT_MS}ms",
                   WEFT_PROXY_DESTINATION_STATIC_ENDPOINTS=(
                       f"{SVC_LB}:80={B_IP}:7002,{C_IP}:7002;"
                       f"{SVC_DEAD}:80={B_IP}:7003,{C_IP}:7003,{B_IP}:7997,{B_IP}:7996"))
        cls.a = cls.mesh.pod("a", init_args=["--skip-outbound-ports", "7998"], **env)
        cls.b = cls.mesh.pod("b", init_args=["--skip-inbound-ports", "7998,7996"])
        cls.c = cls.mesh.pod("c")
        cls.a.run("ip", "route", "add", "10.96.0.0/16", "dev", "eth0")
        # 7001: most tests; 7002: load balancing (c is slow); 7003: the service with dead
        # endpoints (b:7997 has a proxy but no application: its proxy answers 502; b:7996 is not
        # intercepted and refuses connections).
        with cls.b.netns():
            cls.origin_b = Origin(7001, "b").start()
            cls.direct_b = Origin(7998, "b").start()
            Origin(7002, "b").start()
            Origin(7003, "b").start()
        with cls.c.netns():
            cls.origin_c = Origin(7001, "c").start()
            Origin(7002, "c", delay_ms=40).start()
            Origin(7003, "c").start()

    @classmethod
    def tearDownClass(cls):
        try:
            for pod in (cls.a, cls.b, cls.c):
                rc = pod.proxy.stop()
                assert rc == 0, f"proxy in {pod.name} exited {rc}:\n{pod.proxy.log()[-3000:]}"
        finally:
            cls.mesh.close()

    def tearDown(self):
        for pod in (self.a, self.b, self.c):
            pod.proxy.assert_clean(self)

    def roundtrip(self, data, port=7001, host=B_IP, method="GET"):
        s, r = request(self.a, host, port, data)
        try:
            return r.read_final(method)
        finally:
            s.close()

    # --- correctness ----------------------------------------------------------------------

    def test_requests_reach_the_application_byte_for_byte(self):
        """What the application receives through two proxies is what it receives directly."""
        cases = [
            b"GET /raw HTTP/1.1\r\nHost: svc.test\r\nUser-Agent: t/1\r\nX-Mixed-Case: Yes\r\naccept: */*\r\n\r\n",
            b"GET /raw?q=1&r=%20 HTTP/1.1\r\nHost: svc.test\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
            b"POST /raw HTTP/1.1\r\nHost: svc.test\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
            b"POST /raw HTTP/1.1\r\nHost: svc.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET http://svc.test/raw HTTP/1.1\r\nHost: svc.test\r\n\r\n",
            b"GET /raw HTTP/1.0\r\nHost: svc.test\r\n\r\n",
            b"GET /raw HTTP/1.0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: svc.test\r\n\r\n",
        ]
        for data in cases:
            with self.subTest(data=data[:40]):
                if data.startswith(b"OPTIONS"):
                    meshed = self.roundtrip(data)
                    self.assertEqual(meshed.status, 200)
                    continue
                meshed = self.roundtrip(data)
                direct = self.roundtrip(data, port=7998)
                self.assertEqual(meshed.status, 200)
                self.assertEqual(meshed.body, direct.body)

    def test_large_bodies_both_ways(self):
        payload = bytes(range(256)) * (20 * 4096)  # 20 MiB
        for framing in ("content-length", "chunked"):
            with self.subTest(framing=framing):
                s = self.a.connect(B_IP, 7001, timeout=30)
                r = Reader(s)
                if framing == "chunked":
                    s.sendall(b"POST /echo HTTP/1.1\r\nHost: big\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for i in range(0, len(payload), 1 << 20):
                        piece = payload[i:i + (1 << 20)]
                        s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    s.sendall(b"0\r\n\r\n")
                else:
                    s.sendall(b"POST /echo HTTP/1.1\r\nHost: big\r\nContent-Length: %d\r\n\r\n" % len(payload))
                    t = threading.Thread(target=s.sendall, args=(payload,))
                    t.start()
                resp = r.read_final()
                if framing != "chunked":
                    t.join()
                s.close()
                self.assertEqual(resp.status, 200)
                self.assertEqual(len(resp.body), len(payload))
                self.assertEqual(resp.body, payload)
        resp = self.roundtrip(b"GET /bytes/30000000 HTTP/1.1\r\nHost: big\r\n\r\n")
        self.assertEqual(len(resp.body), 30000000)
        self.assertEqual(resp.trailers, [("x-trailer", "done")])

    def test_streaming_response_is_not_buffered(self):
        s = self.a.connect(B_IP, 7001)
        s.sendall(b"GET /stream/5/300 HTTP/1.1\r\nHost: s\r\n\r\n")
        t0 = time.time()
        first = b""
        while b"chunk 0" not in first:
            first += s.recv(4096)
        # The first chunk arrives long before the last is sent (5 x 300 ms).
        self.assertLess(time.time() - t0, 0.6)
        s.close()

    def test_keep_alive_and_pipelining_answer_in_order(self):
        s = self.a.connect(B_IP, 7001)
        r = Reader(s)
        s.sendall(b"GET /status/201 HTTP/1.1\r\nHost: p\r\n\r\n"
                  b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabc"
                  b"GET /status/404 HTTP/1.1\r\nHost: p\r\n\r\n")
        statuses = [r.read_final().status for _ in range(2)]
        third = r.read_final()
        self.assertEqual(statuses + [third.status], [201, 200, 404])
        # The same connection serves more, later.
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\n\r\nwxyz")
        self.assertEqual(r.read_final().body, b"wxyz")
        s.close()

    def test_expect_100_continue(self):
        s = self.a.connect(B_IP, 7001)
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: e\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = r.read()
        self.assertEqual(interim.status, 100)
        s.sendall(b"hello")
        final = r.read_final()
        self.assertEqual((final.status, final.body), (200, b"hello"))
        s.close()

    def test_upgrade_continues_as_tcp(self):
        s = self.a.connect(B_IP, 7001)
        r = Reader(s)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        resp = r.read()
        self.assertEqual(resp.status, 101)
        s.sendall(b"ping")
        got = r.buf
        deadline = time.time() + 5
        while len(got) < len(b"echo:ping") and time.time() < deadline:
            got += s.recv(100)
        self.assertEqual(got, b"echo:ping")
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(Reader(s).closed(timeout=5))
        s.close()

    # --- strictness -----------------------------------------------------------------------

    def test_smuggling_vectors_are_rejected_and_never_forwarded(self):
        before = self.origin_b.hits.get("/smuggle", 0)
        for name, data, status, kind in SMUGGLING:
            with self.subTest(vector=name):
                s, r = request(self.a, B_IP, 7001, data)
                resp = r.read()
                if status is not None:
                    self.assertEqual(resp.status, status, resp.body)
                else:
                    self.assertIn(resp.status, (400, 501), resp.body)
                self.assertIsNotNone(resp.header("weft-proxy-error"))
                if kind is not None:
                    self.assertEqual(resp.header("weft-proxy-error"), kind)
                self.assertEqual(resp.header("connection"), "close")
                self.assertTrue(r.closed(), "the connection must be closed after a rejected request")
                s.close()
        self.assertEqual(self.origin_b.hits.get("/smuggle", 0), before, "a smuggling vector reached the app")
        m = self.a.proxy.metrics()
        self.assertGreaterEqual(m.sum("outbound_http_errors_total"), len(SMUGGLING))
        # The proxy is fine afterwards.
        self.assertEqual(self.roundtrip(b"GET /status/200 HTTP/1.1\r\nHost: ok\r\n\r\n").status, 200)

    def test_invalid_method_on_a_kept_alive_connection(self):
        # The first bytes of a connection decide whether it is HTTP at all: "G@T" is not an HTTP
        # method, so such a connection is opaque TCP (detection). Once a connection is HTTP, an
        # invalid method is a 400 like any other malformed request.
        s, r = request(self.a, B_IP, 7001, b"GET /status/200 HTTP/1.1\r\nHost: s\r\n\r\n"
                                           b"G@T /smuggle HTTP/1.1\r\nHost: s\r\n\r\n")
        self.assertEqual(r.read_final().status, 200)
        resp = r.read()
        self.assertEqual(resp.status, 400)
        self.assertEqual(resp.header("weft-proxy-error"), "invalid_method")
        self.assertTrue(r.closed())
        s.close()

    def test_limits(self):
        long_target = b"/" + b"a" * 9000
        resp = self.roundtrip(b"GET " + long_target + b" HTTP/1.1\r\nHost: l\r\n\r\n")
        self.assertEqual(resp.status, 414)
        many = b"".join(b"X-%d: v\r\n" % i for i in range(150))
        resp = self.roundtrip(b"GET /limits HTTP/1.1\r\nHost: l\r\n" + many + b"\r\n")
        self.assertEqual(resp.status, 431)
        big = b"X-Big: " + b"v" * 70000 + b"\r\n"
        resp = self.roundtrip(b"GET /limits HTTP/1.1\r\nHost: l\r\n" + big + b"\r\n")
        self.assertEqual(resp.status, 431)
        self.assertEqual(self.origin_b.hits.get("/limits", 0), 0)

    # --- errors the proxy makes -----------------------------------------------------------

    def test_proxy_errors_say_why(self):
        resp = self.roundtrip(b"GET / HTTP/1.1\r\nHost: dead\r\n\r\n", port=7996)
        self.assertEqual(resp.status, 502)
        self.assertIn(resp.header("weft-proxy-error"), ("connect_refused", "connection_lost"))
        t0 = time.time()
        resp = self.roundtrip(b"GET /delay/7000 HTTP/1.1\r\nHost: slow\r\n\r\n")
        elapsed = time.time() - t0
        self.assertEqual(resp.status, 504)
        self.assertEqual(resp.header("weft-proxy-error"), "response_timeout")
        self.assertLess(elapsed, REQUEST_TIMEOUT_MS / 1000 + 1.5)
        self.assertGreater(elapsed, REQUEST_TIMEOUT_MS / 1000 - 0.2)

    # --- metrics --------------------------------------------------------------------------

    def test_metrics_equal_what_clients_saw(self):
        seen = {}
        s = self.a.connect(B_IP, 7001)
        r = Reader(s)
        plan = ["/status/200"] * 7 + ["/status/503"] * 3 + ["/status/404"] * 2 + ["/delay/150"] * 4
        for path in plan:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: metrics.test\r\n\r\n" % path.encode())
            st = r.read_final().status
            seen[st] = seen.get(st, 0) + 1
        s.close()
        self.assertEqual(seen, {200: 11, 503: 3, 404: 2})
        labels = dict(direction="outbound", authority="metrics.test", target_addr=f"{B_IP}:7001", tls="disabled")
        for pod, direction in ((self.a, "outbound"), (self.b, "inbound")):
            labels["direction"] = direction
            if direction == "inbound":
                labels.pop("tls")
                labels["target_addr"] = f"{B_IP}:7001"

            def counted():
                m = pod.proxy.metrics()
                return m.sum("response_total", **labels) == len(plan)
            wait_for(counted, timeout=5, what=f"{direction} response_total")
            m = pod.proxy.metrics()
            self.assertEqual(m.sum("request_total", **labels), len(plan))
            for status, n in seen.items():
                self.assertEqual(m.sum("response_total", status_code=status, **labels), n, (direction, status))
            self.assertEqual(m.sum("response_total", classification="failure", **labels), 3)
            self.assertEqual(m.sum("response_total", classification="success", **labels), 13)
            # Latency: the four 150 ms requests are above the 100 ms bucket and within 200 ms
            # (on the outbound side; the inbound hop adds nothing measurable).
            le100 = m.sum("response_latency_ms_bucket", le="100", **labels)
            le200 = m.sum("response_latency_ms_bucket", le="200", **labels)
            total = m.sum("response_latency_ms_count", **labels)
            self.assertEqual(total, len(plan))
            self.assertEqual(le100, len(plan) - 4, direction)
            self.assertEqual(le200, len(plan), direction)

    # --- graceful shutdown ----------------------------------------------------------------

    def test_sigterm_drains_http_connections(self):
        d = self.mesh.pod("d", WEFT_PROXY_SHUTDOWN_GRACE_PERIOD="60s")
        idle = d.connect(B_IP, 7001)
        idle_reader = Reader(idle)
        idle.sendall(b"GET /status/200 HTTP/1.1\r\nHost: drain\r\n\r\n")
        self.assertEqual(idle_reader.read_final().status, 200)
        busy = d.connect(B_IP, 7001)
        busy.sendall(b"GET /delay/700 HTTP/1.1\r\nHost: drain\r\n\r\n")
        time.sleep(0.2)
        t0 = time.time()
        d.proxy.proc.send_signal(15)
        # The idle keep-alive connection is closed at once; the busy one gets its answer, marked
        # as the last on that connection; the proxy then exits long before the grace period.
        self.assertTrue(idle_reader.closed(timeout=5))
        r = Reader(busy).read_final()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("connection"), "close")
        self.assertEqual(d.proxy.proc.wait(timeout=10), 0)
        self.assertLess(time.time() - t0, 5)
        idle.close()
        busy.close()
        d.proxy.assert_clean(self)

    # --- load balancing -------------------------------------------------------------------

    def _hammer(self, host, n, threads=4):
        statuses = []
        lock = threading.Lock()

        def worker():
            s = self.a.connect(host, 80)
            r = Reader(s)
            for _ in range(n // threads):
                s.sendall(b"GET /lb HTTP/1.1\r\nHost: lb.test\r\n\r\n")
                resp = r.read_final()
                with lock:
                    statuses.append((resp.status, resp.header("x-server")))
            s.close()
        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return statuses

    def test_slower_endpoint_gets_less_traffic(self):
        statuses = self._hammer(SVC_LB, 400)
        self.assertTrue(all(st == 200 for st, _ in statuses), statuses[:5])
        fast = sum(1 for _, srv in statuses if srv == "b")
        slow = sum(1 for _, srv in statuses if srv == "c")
        self.assertEqual(fast + slow, 400)
        self.assertGreater(fast, 2 * slow, f"fast b={fast} slow c={slow}")
        self.assertGreater(slow, 0, "the slow endpoint still gets probed")

    def test_dead_endpoints_are_avoided(self):
        statuses = self._hammer(SVC_DEAD, 400)
        failed = [st for st, _ in statuses if st != 200]
        # b:7996 refuses connections: those requests are sent again to another endpoint (nothing
        # was sent), so clients never see it. b:7997's proxy answers 502 itself: failure accrual
        # takes it out after 7 in a row, for 1 s and then longer.
        self.assertLessEqual(len(failed), 2 * 7, failed)
        self.assertEqual(set(failed) - {502}, set())
        m = self.a.proxy.metrics()
        refused = m.sum("outbound_http_errors_total", error="connect_refused")
        self.assertGreaterEqual(refused, 1)
        self.assertLessEqual(refused, 4, "a refusing endpoint is backed off after its first failure")
        self.assertLessEqual(m.sum("response_total", target_addr=f"{B_IP}:7997"), 2 * 7)


if __name__ == "__main__":
    unittest.main()
