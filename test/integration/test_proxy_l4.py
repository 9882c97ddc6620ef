"""weft-proxy at layer 4, for real: two pods on a bridge, weft-init rules, proxies as UID 2102.

pod "a" (client side) -> a's outbound proxy -> network -> b's inbound proxy -> server in pod "b".
"""

import hashlib
import os
import re
import socket
import struct
import subprocess
import threading
import time
import unittest

from http_apps import Origin
from weft_harness import (Mesh, Server, digest_handler, recv_all, recv_exactly, require_root,
                          wait_for, PROXY_UID, BIN_DIR)

DETECT_TIMEOUT_MS = 400


def banner_handler(conn):
    """Server speaks first: a banner at once, then echoes one line."""
    conn.sendall(b"220 weft-test ready\r\n")
    line = conn.recv(1024)
    conn.sendall(b"echo " + line)


def source_handler_factory(payload):
    def handler(conn):
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        # The client's direction stays open after our FIN: it sends a trailer, then closes.
        return recv_all(conn)
    return handler


@require_root
class L4Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh()
        env = dict(WEFT_PROXY_DETECT_TIMEOUT=f"{DETECT_TIMEOUT_MS}ms", WEFT_PROXY_OPAQUE_PORTS="7025",
                   WEFT_PROXY_SHUTDOWN_GRACE_PERIOD="30s")
        cls.a = cls.mesh.pod("a", init_args=["--skip-outbound-ports", "7999"], **env)
        cls.b = cls.mesh.pod("b", init_args=["--skip-inbound-ports", "7998"], **env)
        cls.servers = {
            7001: Server(cls.b, 7001, digest_handler),
            7002: Server(cls.b, 7002, banner_handler),
            7025: Server(cls.b, 7025, banner_handler),
            7998: Server(cls.b, 7998, digest_handler),
            7999: Server(cls.b, 7999, digest_handler),
        }
        cls.servers6 = {7001: Server(cls.b, 7001, digest_handler, family=socket.AF_INET6)}

    @classmethod
    def tearDownClass(cls):
        for s in list(cls.servers.values()) + list(cls.servers6.values()):
            s.close()
        try:
            for pod in (cls.a, cls.b):
                code = pod.proxy.stop()
                if code != 0:
                    raise AssertionError(f"proxy in {pod.name} exited {code}:\n{pod.proxy.log()[-3000:]}")
        finally:
            cls.mesh.close()

    def tearDown(self):
        for pod in (self.a, self.b):
            pod.proxy.assert_clean(self)

    # --- helpers -------------------------------------------------------------------------------

    def send_and_digest(self, payload, host=None, port=7001):
        s = self.a.connect(host or self.b.ip, port, timeout=60)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # half-close: the server answers after our FIN
            reply = recv_all(s).decode()
        finally:
            s.close()
        return reply.split()

    def outbound_series(self, name, port, **labels):
        return self.a.proxy.metrics().sum(name, direction="outbound", target_port=port, **labels)

    # --- byte-exact forwarding -----------------------------------------------------------------

    def test_payloads_from_one_byte_to_64_mib_arrive_byte_exact(self):
        for size in (1, 1000, 65536 + 7, 1 << 20, 64 << 20):
            payload = os.urandom(size)
            digest, count = self.send_and_digest(payload)
            self.assertEqual(int(count), size)
            self.assertEqual(digest, hashlib.sha256(payload).hexdigest(), f"size {size}")

    def test_half_close_server_to_client_keeps_client_direction_open(self):
        payload = os.urandom(3 << 20)
        srv = Server(self.b, 7010, source_handler_factory(payload))
        try:
            s = self.a.connect(self.b.ip, 7010)
            got = recv_all(s)  # ends at the server's FIN
            self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(payload).digest())
            s.sendall(b"trailer after your FIN")
            s.shutdown(socket.SHUT_WR)
            s.close()
            wait_for(lambda: srv.results, what="server to receive the trailer")
            self.assertEqual(srv.results[0], b"trailer after your FIN")
        finally:
            srv.close()

    def test_traffic_really_goes_through_both_proxies_and_counters_equal_bytes(self):
        before_a = self.a.proxy.metrics()
        before_b = self.b.proxy.metrics()
        payload = os.urandom(123_457)
        digest, count = self.send_and_digest(payload, port=7001)
        self.assertEqual(int(count), len(payload))
        reply_len = len(f"{digest} {count}\n")

        def delta(proxy, before, name, **labels):
            return proxy.metrics().sum(name, **labels) - before.sum(name, **labels)

        # Counters are updated as bytes move; wait for the close to be recorded, then compare.
        wait_for(lambda: delta(self.b.proxy, before_b, "tcp_close_total", direction="inbound",
                               target_port=7001, peer="dst") >= 1, what="close recorded")
        a_src = dict(direction="outbound", peer="src", target_port=7001, tls="disabled")
        a_dst = dict(direction="outbound", peer="dst", target_port=7001, tls="disabled")
        b_src = dict(direction="inbound", peer="src", target_port=7001, target_ip=self.b.ip)
        self.assertEqual(delta(self.a.proxy, before_a, "tcp_read_bytes_total", **a_src), len(payload))
        self.assertEqual(delta(self.a.proxy, before_a, "tcp_write_bytes_total", **a_dst), len(payload))
        self.assertEqual(delta(self.a.proxy, before_a, "tcp_read_bytes_total", **a_dst), reply_len)
        self.assertEqual(delta(self.a.proxy, before_a, "tcp_write_bytes_total", **a_src), reply_len)
        self.assertEqual(delta(self.b.proxy, before_b, "tcp_read_bytes_total", **b_src), len(payload))
        self.assertEqual(delta(self.b.proxy, before_b, "tcp_open_total", **b_src), 1)
        self.assertEqual(delta(self.a.proxy, before_a, "tcp_open_total", **a_src), 1)
        self.assertEqual(delta(self.a.proxy, before_a, "tcp_close_total", errno="", **a_src), 1)

    # --- detection -----------------------------------------------------------------------------

    def test_server_speaks_first_works_after_the_detection_timeout(self):
        start = time.monotonic()
        s = self.a.connect(self.b.ip, 7002)
        banner = s.recv(1024)
        waited = time.monotonic() - start
        self.assertEqual(banner, b"220 weft-test ready\r\n")
        # Both proxies wait for the client to speak: a's outbound, then b's inbound.
        self.assertGreaterEqual(waited, DETECT_TIMEOUT_MS / 1000 * 0.9)
        s.sendall(b"hello\n")
        self.assertEqual(s.recv(1024), b"echo hello\n")
        s.close()
        m = self.a.proxy.metrics()
        self.assertGreaterEqual(m.sum("protocol_detect_total", direction="outbound", target_port=7002,
                                      reason="timeout", protocol="opaque"), 1)

    def test_server_speaks_first_is_immediate_on_an_opaque_port(self):
        start = time.monotonic()
        s = self.a.connect(self.b.ip, 7025)
        banner = s.recv(1024)
        waited = time.monotonic() - start
        s.close()
        self.assertEqual(banner, b"220 weft-test ready\r\n")
        self.assertLess(waited, DETECT_TIMEOUT_MS / 1000 / 2)
        m = self.a.proxy.metrics()
        self.assertGreaterEqual(m.sum("protocol_detect_total", direction="outbound", target_port=7025,
                                      reason="opaque_port"), 1)

    def test_http1_and_tls_are_detected_and_recorded_per_port(self):
        # HTTP is proxied per request (test_http1.py), so it goes to an HTTP origin.
        with self.b.netns():
            origin = Origin(7012, "b")
        origin.start()
        s = self.a.connect(self.b.ip, 7012)
        s.sendall(b"GET /x HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n")
        reply = recv_all(s)
        s.close()
        origin.sock.close()
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply[:100])
        hello = bytes.fromhex("16030100") + b"\x30" + b"\x01\x00\x00\x2c\x03\x03" + b"\x00" * 32 + \
            b"\x00\x00\x02\x13\x01\x01\x00\x00\x01\x00"
        s = self.a.connect(self.b.ip, 7001)
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        digest, count = recv_all(s).decode().split()
        s.close()
        self.assertEqual(int(count), len(hello), "TLS bytes pass through intact")
        m = self.a.proxy.metrics()
        self.assertGreaterEqual(m.sum("protocol_detect_total", direction="outbound", target_port=7012,
                                      protocol="http1", reason="detected"), 1)
        b = self.b.proxy.metrics()
        self.assertGreaterEqual(b.sum("protocol_detect_total", direction="inbound", target_port=7012,
                                      protocol="http1", reason="detected"), 1)
        self.assertGreaterEqual(m.sum("protocol_detect_duration_ms_count", direction="outbound",
                                      target_port=7001), 1)

    def test_garbage_input_is_forwarded_as_opaque_and_never_crashes(self):
        for payload in (b"\x16\x03\x01\xff\xff" + os.urandom(100), b"PRI * HTTP/2.0\r\n\r\nXX", b"\x00" * 5000,
                        b"GT " + b"a" * 20000, os.urandom(40000), b"\r\n\r\n\r\n"):
            digest, count = self.send_and_digest(payload)
            self.assertEqual(digest, hashlib.sha256(payload).hexdigest())
        # Starts like HTTP: answered by the proxy's strict parser, never forwarded.
        s = self.a.connect(self.b.ip, 7001)
        s.sendall(b"GET " + b"a" * 20000)
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(recv_all(s).startswith(b"HTTP/1.1 414"))
        s.close()
        self.assertEqual(self.a.proxy.proc.poll(), None)

    # --- interception rules ----------------------------------------------------------------------

    def test_skipped_ports_bypass_the_proxies(self):
        for port in (7998, 7999):
            digest, count = self.send_and_digest(b"x" * 10, port=port)
            self.assertEqual(int(count), 10)
        # 7999 skipped on a's outbound; 7998 skipped on b's inbound.
        self.assertEqual(self.outbound_series("tcp_open_total", 7999), 0)
        self.assertGreaterEqual(self.outbound_series("tcp_open_total", 7998), 1)
        self.assertEqual(self.b.proxy.metrics().sum("tcp_open_total", direction="inbound", target_port=7998), 0)

    def test_the_proxy_uid_bypasses_interception(self):
        code = ("import socket,sys; s=socket.create_connection((sys.argv[1], 7001)); s.sendall(b'uid');"
                "s.shutdown(socket.SHUT_WR); sys.stdout.write(s.recv(100).decode())")
        before = self.outbound_series("tcp_open_total", 7001)
        out = self.a.run("/usr/bin/python3", "-c", code, self.b.ip, uid=PROXY_UID).stdout
        self.assertTrue(out.endswith(" 3\n"), out)
        self.assertEqual(self.outbound_series("tcp_open_total", 7001), before)

    def test_ipv6_goes_through_both_proxies(self):
        payload = os.urandom(200_000)
        digest, count = self.send_and_digest(payload, host=self.b.ip6)
        self.assertEqual(digest, hashlib.sha256(payload).hexdigest())
        m = self.a.proxy.metrics()
        self.assertGreaterEqual(m.sum("tcp_open_total", direction="outbound", target_ip=self.b.ip6), 1)
        b = self.b.proxy.metrics()
        self.assertGreaterEqual(b.sum("tcp_open_total", direction="inbound", target_ip=self.b.ip6), 1)

    # --- failures --------------------------------------------------------------------------------

    def test_dead_upstream_resets_the_client_and_is_counted(self):
        before = self.a.proxy.metrics().sum("inbound_tcp_errors_total")
        before_b = self.b.proxy.metrics().sum("inbound_tcp_errors_total", error="connect_refused")
        s = self.a.connect(self.b.ip, 7555)  # nothing listens there
        s.sendall(b"hello, not http\r\n")  # HTTP gets a 502 instead (test_http1.py)
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            data = s.recv(10)
            if data == b"":
                raise ConnectionResetError("clean EOF")  # also acceptable: the proxy closed
        s.close()
        wait_for(lambda: self.b.proxy.metrics().sum("inbound_tcp_errors_total", error="connect_refused") > before_b,
                 what="connect_refused counted")
        self.assertEqual(self.a.proxy.metrics().sum("inbound_tcp_errors_total"), before)

    def test_client_reset_is_propagated_to_the_server(self):
        seen = []

        def handler(conn):
            try:
                while conn.recv(65536):
                    pass
                seen.append("eof")
            except ConnectionResetError:
                seen.append("reset")
        srv = Server(self.b, 7011, handler)
        try:
            s = self.a.connect(self.b.ip, 7011)
            s.sendall(b"some bytes then an abort")
            time.sleep(0.05)  # let the bytes reach the server before the RST overtakes them
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            wait_for(lambda: seen, what="server to see the end of the connection")
            self.assertEqual(seen, ["reset"])
        finally:
            srv.close()
        wait_for(lambda: self.b.proxy.metrics().sum("tcp_close_total", direction="inbound", target_port=7011,
                                                    peer="src", errno="ECONNRESET") >= 1, what="reset counted")

    def test_abuse_leaks_no_file_descriptors(self):
        def settled_fds(proxy):
            wait_for(lambda: proxy.metrics().sum("tcp_open_connections") == 0, what="connections closed")
            return proxy.fd_count()
        fds_a, fds_b = settled_fds(self.a.proxy), settled_fds(self.b.proxy)
        for i in range(30):
            s = self.a.connect(self.b.ip, [7001, 7555, 7002][i % 3])
            if i % 2:
                s.sendall(os.urandom(1000))
            if i % 5 == 0:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        for _ in range(5):  # a connection that half-closes at once, before detection decides
            s = self.a.connect(self.b.ip, 7001)
            s.shutdown(socket.SHUT_WR)
            recv_all(s)
            s.close()
        wait_for(lambda: settled_fds(self.a.proxy) == fds_a, timeout=15, what="a's fd count to return")
        wait_for(lambda: settled_fds(self.b.proxy) == fds_b, timeout=15, what="b's fd count to return")

    def test_a_connection_to_the_proxys_own_listener_is_refused_not_looped(self):
        before = self.b.proxy.metrics().sum("inbound_tcp_errors_total", error="loop")
        s = self.b.connect(self.b.ip, 4143)  # via lo: not redirected, lands on the listener itself
        s.sendall(b"x")
        try:
            self.assertEqual(s.recv(10), b"")
        except ConnectionResetError:
            pass
        s.close()
        wait_for(lambda: self.b.proxy.metrics().sum("inbound_tcp_errors_total", error="loop") == before + 1,
                 what="loop counted")

    # --- admin -----------------------------------------------------------------------------------

    def test_admin_endpoints(self):
        p = self.a.proxy
        self.assertEqual(p.admin("/live"), (200, b"live\n"))
        self.assertEqual(p.admin("/ready"), (200, b"ready\n"))
        m = p.metrics()
        build_info = m.find("proxy_build_info", vendor="weft")
        self.assertEqual(len(build_info), 1)
        # pgo says whether the binary was built with a PGO profile: as its build's CMake cache says.
        cache = os.path.join(BIN_DIR, "..", "CMakeCache.txt")
        if os.path.exists(cache):
            with open(cache) as f:
                pgo_used = re.search(r"^WEFT_PGO_USE:PATH=.+$", f.read(), re.M) is not None
            self.assertEqual(build_info[0][0].get("pgo"), "true" if pgo_used else "false")
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                     "process_start_time_seconds"):
            self.assertEqual(len(m.find(name)), 1, name)
        self.assertEqual(p.admin("/proxy-log-level"), (200, b"info\n"))
        self.assertEqual(p.admin("/proxy-log-level", "PUT", b"debug"), (200, b"debug\n"))
        self.assertEqual(p.admin("/proxy-log-level"), (200, b"debug\n"))
        status, body = p.admin("/proxy-log-level", "PUT", b"loud")
        self.assertEqual(status, 400)
        self.assertIn(b"unknown log level", body)
        p.admin("/proxy-log-level", "PUT", b"info")
        self.assertEqual(p.admin("/nope")[0], 404)
        self.assertEqual(p.admin("/shutdown", "GET")[0], 405)

    def test_shutdown_and_log_level_are_refused_from_other_hosts(self):
        # From pod a to b's admin port (4191 is skipped by weft-init, so this is direct).
        self.assertEqual(self.a.http(self.b.ip, 4191, "/shutdown", method="POST")[0], 403)
        self.assertEqual(self.a.http(self.b.ip, 4191, "/proxy-log-level", method="PUT", body=b"off")[0], 403)
        self.assertEqual(self.a.http(self.b.ip, 4191, "/ready")[0], 200)
        self.assertIsNone(self.b.proxy.proc.poll())

    def test_malformed_admin_requests_get_400(self):
        s = self.a.connect("127.0.0.1", 4191)
        s.sendall(b"GET / HTTP/1.1\r\nbad header line\r\n\r\n")
        self.assertTrue(recv_all(s).startswith(b"HTTP/1.1 400"))
        s.close()


@require_root
class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.mesh = Mesh()
        self.addCleanup(self.mesh.close)

    def test_sigterm_drains_open_connections_then_exits(self):
        b = self.mesh.pod("b", WEFT_PROXY_SHUTDOWN_GRACE_PERIOD="30s", WEFT_PROXY_OPAQUE_PORTS="7100")
        a = self.mesh.pod("a", proxy=False)

        def echo(conn):
            while True:
                d = conn.recv(100)
                if not d:
                    return
                conn.sendall(d)
        srv = Server(b, 7100, echo)
        self.addCleanup(srv.close)
        s = a.connect(b.ip, 7100)
        s.sendall(b"1")
        self.assertEqual(s.recv(1), b"1")
        b.proxy.proc.send_signal(15)
        wait_for(lambda: b.proxy.admin("/ready")[0] == 503, what="not ready while draining")
        # New connections are refused; the open one keeps working.
        with self.assertRaises(OSError):
            x = a.connect(b.ip, 7100, timeout=2)
            x.sendall(b"2")
            if x.recv(1) == b"":
                raise ConnectionResetError()
        s.sendall(b"3")
        self.assertEqual(s.recv(1), b"3")
        self.assertIsNone(b.proxy.proc.poll())
        s.close()
        self.assertEqual(b.proxy.proc.wait(10), 0)
        self.assertIn("drained; exiting", b.proxy.log())
        b.proxy.assert_clean(self)

    def test_grace_period_bounds_the_drain(self):
        b = self.mesh.pod("b", WEFT_PROXY_SHUTDOWN_GRACE_PERIOD="1s", WEFT_PROXY_OPAQUE_PORTS="7100")
        a = self.mesh.pod("a", proxy=False)
        srv = Server(b, 7100, lambda c: recv_all(c))
        self.addCleanup(srv.close)
        s = a.connect(b.ip, 7100)
        s.sendall(b"held open")
        wait_for(lambda: b.proxy.metrics().sum("tcp_open_connections", peer="dst") == 1, what="connection open")
        start = time.monotonic()
        b.proxy.proc.send_signal(15)
        self.assertEqual(b.proxy.proc.wait(10), 0)
        self.assertLess(time.monotonic() - start, 5)
        self.assertIn("grace period over", b.proxy.log())
        s.close()

    def test_post_shutdown_from_loopback_stops_the_proxy(self):
        b = self.mesh.pod("b")
        self.assertEqual(b.proxy.admin("/shutdown", "POST")[0], 200)
        self.assertEqual(b.proxy.proc.wait(10), 0)

    def test_invalid_configuration_exits_64_naming_the_variable(self):
        a = self.mesh.pod("a", proxy=False)
        for var, value, expect in (("WEFT_PROXY_DETECT_TIMEOUT", "10", "500ms"),
                                   ("WEFT_PROXY_OPAQUE_PORTS", "25,x", "8000-8010"),
                                   ("WEFT_PROXY_INBOUND_LISTEN_ADDR", "localhost:1", "IPv4:PORT"),
                                   ("WEFT_PROXY_CORES", "0", "1 to 256")):
            r = a.run(os.path.join(BIN_DIR, "weft-proxy"), env={var: value}, check=False)
            self.assertEqual(r.returncode, 64, r.stderr)
            self.assertIn(var, r.stderr)
            self.assertIn(expect, r.stderr)

    def test_several_workers_share_the_load(self):
        b = self.mesh.pod("b", WEFT_PROXY_CORES="2")
        a = self.mesh.pod("a", proxy=False)
        srv = Server(b, 7001, digest_handler)
        self.addCleanup(srv.close)
        threads = [t for t in os.listdir(f"/proc/{b.proxy.pid}/task")]
        names = set()
        for t in threads:
            with open(f"/proc/{b.proxy.pid}/task/{t}/comm") as f:
                names.add(f.read().strip())
        # The process and its threads carry names ps, top and pgrep show.
        self.assertTrue({"weft-proxy", "weft-worker-0", "weft-worker-1", "weft-admin"} <= names, names)
        for _ in range(20):
            s = a.connect(b.ip, 7001)
            s.sendall(b"not http, 18 bytes")
            s.shutdown(socket.SHUT_WR)
            self.assertTrue(recv_all(s).endswith(b" 18\n"))
            s.close()
        self.assertEqual(b.proxy.metrics().sum("tcp_open_total", direction="inbound", peer="src", target_port=7001), 20)


if __name__ == "__main__":
    unittest.main()
