"""Discovery, for real: weft-controller destination serving a local registry, the proxy's
destination client subscribing per target, and traffic routed by what it says.

pods: control (identity + destination), a ("web", the client), b1 and b2 ("books"). The registry
says: service books (clusterIP 10.96.0.20, port 80 -> 7001) selects b1 and b2; service cache
(clusterIP 10.96.0.21, port 6379, opaque) selects b1 (role=cache).
"""

import json
import os
import socket
import subprocess
import time
import unittest

from http1_client import Reader
from http_apps import Origin
from mesh_identity import IdentityPlane, identity_name
from weft_harness import BIN_DIR, Mesh, Server, recv_all, require_root, wait_for

WEB, BOOKS = identity_name("web"), identity_name("books")
BOOKS_VIP, CACHE_VIP, UNKNOWN_VIP = "10.96.0.20", "10.96.0.21", "10.96.0.99"


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, path)  # atomically, as the registry's readers expect


def banner(conn):
    conn.sendall(b"+OK cache ready\r\n")
    data = conn.recv(100)
    conn.sendall(b"+echo " + data)


@require_root
class DiscoveryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh()
        try:
            cls.idp = IdentityPlane(cls.mesh)
            cls.state = os.path.join(cls.mesh.tmp, "state")
            cls.b1 = cls.mesh.pod("b1", **cls.idp.proxy_env("books"))
            cls.b2 = cls.mesh.pod("b2", **cls.idp.proxy_env("books"))
            reg = os.path.join(cls.state, "registry")
            write_json(os.path.join(reg, "services/default/books.json"),
                       {"ports": [{"name": "http", "port": 80, "targetPort": 7001}],
                        "selector": {"app": "books"}, "clusterIP": BOOKS_VIP})
            write_json(os.path.join(reg, "services/default/cache.json"),
                       {"ports": [{"name": "redis", "port": 6379, "protocol": "opaque"}],
                        "selector": {"role": "cache"}, "clusterIP": CACHE_VIP})
            for pod, labels in ((cls.b1, {"app": "books", "role": "cache"}), (cls.b2, {"app": "books"})):
                write_json(os.path.join(reg, f"workloads/default/{pod.name}.json"),
                           {"labels": labels, "serviceAccount": "books", "deployment": "books",
                            "ip": pod.ip, "meshed": True})
            cls.start_destination()
            cls.a = cls.mesh.pod("a", **cls.idp.proxy_env(
                "web", WEFT_PROXY_DESTINATION_ADDR=f"{cls.idp.pod.ip}:8086",
                WEFT_PROXY_DESTINATION_NETWORKS="10.88.0.0/16,10.96.0.0/16"))
            cls.a.run("ip", "route", "add", "10.96.0.0/16", "dev", "eth0")
            with cls.b1.netns():
                cls.o1 = Origin(7001, "b1").start()
            with cls.b2.netns():
                cls.o2 = Origin(7001, "b2").start()
            cls.cache = Server(cls.b1, 6379, banner)
        except BaseException:
            cls.mesh.close()
            raise

    @classmethod
    def start_destination(cls):
        log = open(os.path.join(cls.mesh.tmp, "destination.log"), "ab")
        cls.dest = cls.idp.pod.popen(
            os.path.join(BIN_DIR, "weft-controller"), "destination", "--state-dir", cls.state,
            "--listen", "0.0.0.0:8086", "--admin-listen", "0.0.0.0:9996",
            env={"ASAN_OPTIONS": "detect_leaks=1"}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: cls._dest_ready(), timeout=20, what="destination service ready")

    @classmethod
    def _dest_ready(cls):
        if cls.dest.poll() is not None:
            raise AssertionError(f"destination exited {cls.dest.returncode}")
        try:
            return cls.idp.pod.http("127.0.0.1", 9996, "/ready")[0] == 200
        except OSError:
            return False

    @classmethod
    def dest_metric(cls, name):
        return cls.idp.pod.metrics(9996).sum(name)

    def change_registry(self, change):
        """Applies `change` to the registry files and waits until the destination service has
        seen it and sent the difference (a file removed and put back between two of its polls
        would be no change at all)."""
        sent = self.dest_metric("destination_updates_total")
        change()
        wait_for(lambda: self.dest_metric("destination_updates_total") > sent, timeout=10,
                 what="the destination service to send the change")

    def workload_file(self, pod):
        return os.path.join(self.state, f"registry/workloads/default/{pod.name}.json")

    def servers(self, n):
        return [self.get(BOOKS_VIP).header("x-server") for _ in range(n)]

    @classmethod
    def tearDownClass(cls):
        try:
            cls.cache.close()
            for pod in (cls.a, cls.b1, cls.b2):
                rc = pod.proxy.stop()
                assert rc == 0, f"proxy in {pod.name} exited {rc}:\n{pod.proxy.log()[-3000:]}"
        finally:
            cls.mesh.close()

    def tearDown(self):
        for pod in (self.a, self.b1, self.b2):
            pod.proxy.assert_clean(self)

    def get(self, host, path="/status/200", port=80, timeout=10):
        s = self.a.connect(host, port, timeout=timeout)
        try:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: books\r\n\r\n" % path.encode())
            return Reader(s).read_final()
        finally:
            s.close()

    def test_a_service_ip_is_balanced_over_its_endpoints_with_mtls_and_dst_labels(self):
        servers = [self.get(BOOKS_VIP).header("x-server") for _ in range(40)]
        self.assertEqual(set(servers), {"b1", "b2"}, servers)
        m = self.a.proxy.metrics()
        for pod in (self.b1, self.b2):
            n = m.sum("response_total", direction="outbound", tls="true", server_id=BOOKS,
                      target_addr=f"{pod.ip}:7001", dst_namespace="default", dst_service="books",
                      dst_deployment="books", dst_pod=pod.name, dst_serviceaccount="books", status_code="200")
            self.assertGreaterEqual(n, 1, pod.name)
        self.assertGreaterEqual(self.b1.proxy.metrics().sum("request_total", direction="inbound", client_id=WEB), 1)

    def test_opaque_service_port_goes_to_its_endpoint_over_mtls(self):
        s = self.a.connect(CACHE_VIP, 6379)
        self.assertEqual(s.recv(100), b"+OK cache ready\r\n")  # server speaks first: no detection wait
        s.sendall(b"PING\r\n")
        self.assertEqual(recv_all(s), b"+echo PING\r\n")
        s.close()
        m = self.b1.proxy.metrics()
        self.assertGreaterEqual(m.sum("tcp_open_total", direction="inbound", peer="src", tls="true",
                                      client_id=WEB, target_port=6379), 1)

    def test_unknown_service_ip_fails_fast_with_503(self):
        t0 = time.time()
        resp = self.get(UNKNOWN_VIP)
        self.assertLess(time.time() - t0, 1.0)
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.header("weft-proxy-error"), "unknown_destination")

    def test_endpoint_changes_reach_the_proxy(self):
        self.assertEqual(self.get(BOOKS_VIP).status, 200)
        # One slow answer from b2 (asked by its own address: the same endpoint to the balancer)
        # puts its latency estimate far above b1's.
        self.o2.delay = 0.1
        try:
            self.assertEqual(self.get(self.b2.ip, port=7001).header("x-server"), "b2")
        finally:
            self.o2.delay = 0
        path = self.workload_file(self.b2)
        with open(path) as f:
            saved = json.load(f)
        self.change_registry(lambda: os.remove(path))
        try:
            wait_for(lambda: set(self.servers(10)) == {"b1"}, timeout=10, what="b2 removed from the endpoints")
        finally:
            self.change_registry(lambda: write_json(path, saved))
        # Back as a new endpoint, unmeasured, so it is tried at once: whatever the balancer had
        # learned about it before (a slow first request, say) no longer keeps it from traffic.
        self.assertIn("b2", self.servers(20))

    def test_endpoints_removed_while_the_controller_is_down_are_gone_when_it_is_back(self):
        self.assertEqual(self.get(BOOKS_VIP).status, 200)
        streams = self.dest_metric("destination_streams")
        path = self.workload_file(self.b2)
        with open(path) as f:
            saved = json.load(f)
        self.dest.kill()
        self.dest.wait()
        os.remove(path)
        try:
            self.start_destination()
            # Each stream the proxy had is back and has had its first answer (the set is b1; the
            # stream for b2's own address, if any, is answered "not found").
            wait_for(lambda: self.dest_metric("destination_updates_total") >= streams, timeout=15,
                     what="the proxy's destination streams back")
            # b1 slow: a b2 the proxy still held would now take the traffic.
            self.o1.delay = 0.1
            self.assertEqual(set(self.servers(8)), {"b1"})
        finally:
            self.o1.delay = 0
            self.change_registry(lambda: write_json(path, saved))
        wait_for(lambda: "b2" in self.servers(10), timeout=10, what="b2 back")

    def test_restarting_the_controller_fails_no_request(self):
        self.assertEqual(self.get(BOOKS_VIP).status, 200)
        self.dest.kill()
        self.dest.wait()
        try:
            statuses = [self.get(BOOKS_VIP).status for _ in range(30)]
            self.assertEqual(set(statuses), {200}, "the last known endpoints keep serving")
        finally:
            self.start_destination()
        statuses = [self.get(BOOKS_VIP).status for _ in range(30)]
        self.assertEqual(set(statuses), {200})


if __name__ == "__main__":
    unittest.main()
