"""gRPC through a meshed pair, for real: the client in pod "a" -> a's outbound proxy -> mutual TLS ->
b's inbound proxy -> grpc_apps.py server in pod "b" (identities from a real identity service).

Unary, server streaming, bidi streaming, error statuses with exact messages, trailing metadata
(x-trailer), deadlines and concurrency, all checked by grpc_apps.check_all in a client subprocess
inside pod a (grpcio opens its sockets on its own threads, so it must run in the pod's namespace).
The same checks straight to the server (port 7071, skipped by both pods' rules) are the baseline.
"""

import json
import os
import subprocess
import unittest

from mesh_identity import IdentityPlane, identity_name
from weft_harness import Mesh, require_root, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "grpc_apps.py")
WEB, BACKEND = identity_name("web"), identity_name("backend")
MESHED, DIRECT = 7070, 7071


@require_root
class GrpcThroughMeshTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh()
        try:
            cls.idp = IdentityPlane(cls.mesh)
            cls.b = cls.mesh.pod("b", init_args=["--skip-inbound-ports", str(DIRECT)], **cls.idp.proxy_env("backend"))
            cls.a = cls.mesh.pod("a", init_args=["--skip-outbound-ports", str(DIRECT)],
                                 **cls.idp.proxy_env("web", static_identities=f"{cls.b.ip}={BACKEND}"))
            for port in (MESHED, DIRECT):
                path = os.path.join(cls.mesh.tmp, f"grpc-{port}.log")
                log = open(path, "ab")
                proc = cls.b.popen("/usr/bin/python3", APPS, "server", "--port", str(port), stdout=log,
                                   stderr=subprocess.STDOUT, env={"PYTHONDONTWRITEBYTECODE": "1"})
                log.close()

                def ready(path=path, proc=proc):
                    if proc.poll() is not None:
                        with open(path) as f:
                            raise AssertionError(f"grpc server exited {proc.returncode}: {f.read()}")
                    with open(path) as f:
                        return "ready" in f.read()
                wait_for(ready, timeout=20, what=f"grpc server on {port}")
            cls._results = {}
        except BaseException:
            cls.mesh.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.mesh.close()

    def tearDown(self):
        for pod in (self.a, self.b):
            log = pod.proxy.log()
            why = " by a SIGTERM from outside this test" if "shutting down on SIGTERM" in log else ""
            self.assertIsNone(pod.proxy.proc.poll(), f"proxy in {pod.name} exited{why}:\n{log[-3000:]}")
            pod.proxy.assert_clean(self)

    def results(self, port=MESHED):
        if port not in self._results:
            p = self.a.popen("/usr/bin/python3", APPS, "check", "--target", f"{self.b.ip}:{port}", "--json",
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONDONTWRITEBYTECODE": "1"})
            try:
                out, err = p.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                self.fail(f"grpc checks hung: {err.decode()[-2000:]}")
            try:
                res = json.loads(out.decode())
            except ValueError:
                self.fail(f"grpc check output not JSON (exit {p.returncode}):\n{out.decode()}\n{err.decode()[-3000:]}")
            print(f"\n--- grpc checks from a to {self.b.ip}:{port}")
            for name, ok, detail in res:
                print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
            self._results[port] = {name: (ok, detail) for name, ok, detail in res}
        return self._results[port]

    def assert_checks(self, *names, port=MESHED):
        r = self.results(port)
        for name in names:
            self.assertIn(name, r, f"check {name} did not run: {r}")
            ok, detail = r[name]
            self.assertTrue(ok, f"{name}: {detail}")

    def test_unary(self):
        self.assert_checks("ready", "unary", "unary_large_3MiB")

    def test_server_streaming(self):
        self.assert_checks("server_stream")

    def test_bidi_streaming_echoes_each_message_as_it_arrives(self):
        self.assert_checks("bidi_stream")

    def test_error_statuses_and_messages_reach_the_client_exactly(self):
        self.assert_checks("error_not_found", "error_permission_denied", "error_internal", "error_unavailable")

    def test_trailing_metadata_reaches_the_client(self):
        r = self.results()
        for name in ("unary", "server_stream", "bidi_stream", "error_not_found", "sleep_within_deadline"):
            ok, detail = r[name]
            self.assertTrue(ok, f"{name}: {detail}")
            self.assertIn("'x-trailer': 'trailer-", detail, name)

    def test_deadline_exceeded_and_within_deadline(self):
        self.assert_checks("deadline_exceeded", "sleep_within_deadline")

    def test_deadline_propagates_to_the_server(self):
        self.assert_checks("deadline_propagated")

    def test_concurrent_calls_on_one_channel(self):
        self.assert_checks("concurrent_unary")

    def test_calls_went_through_both_proxies_with_mutual_tls(self):
        self.results()
        wait_for(lambda: self.a.proxy.metrics().sum("tcp_open_total", direction="outbound", target_port=MESHED,
                                                    tls="true", server_id=BACKEND) >= 1,
                 what="a's outbound proxy to count the mTLS connection")
        wait_for(lambda: self.b.proxy.metrics().sum("tcp_open_total", direction="inbound", target_port=MESHED,
                                                    tls="true", client_id=WEB) >= 1,
                 what="b's inbound proxy to count the mTLS connection")
        m = self.a.proxy.metrics()
        self.assertEqual(m.sum("tcp_open_total", direction="outbound", target_port=DIRECT), 0,
                         "the baseline port must bypass the proxy")

    def test_golden_metrics_classify_by_grpc_status(self):
        self.results()
        labels = dict(direction="outbound", tls="true", server_id=BACKEND, target_addr=f"{self.b.ip}:{MESHED}")
        wait_for(lambda: self.a.proxy.metrics().sum("response_total", grpc_status="5", **labels) >= 1,
                 what="NOT_FOUND counted")
        m = self.a.proxy.metrics()
        self.assertGreaterEqual(m.sum("response_total", grpc_status="0", classification="success", **labels), 5)
        # A gRPC error is a failure even though the HTTP status is 200.
        self.assertEqual(m.sum("response_total", grpc_status="5", classification="success", **labels), 0)
        self.assertGreaterEqual(m.sum("response_total", grpc_status="5", status_code="200",
                                      classification="failure", **labels), 1)
        mb = self.b.proxy.metrics()
        self.assertGreaterEqual(mb.sum("response_total", direction="inbound", client_id=WEB, grpc_status="7",
                                       classification="failure"), 1)

    def test_proxy_errors_are_grpc_statuses(self):
        # Nothing listens on 7072 in b: b's proxy cannot connect, and the gRPC client gets
        # UNAVAILABLE with the proxy's reason, not a bare HTTP 502 it cannot read.
        code = (f"import sys, grpc; sys.path.insert(0, {HERE!r}); from grpc_apps import Client\n"
                f"c = Client('{self.b.ip}:7072')\n"
                "try:\n    c.echo(b'x', timeout=10); print('OK')\n"
                "except grpc.RpcError as e:\n    print(e.code().name, e.details())\n")
        out = self.a.run("/usr/bin/python3", "-c", code, env={"PYTHONDONTWRITEBYTECODE": "1"}).stdout.strip()
        self.assertEqual(out, "UNAVAILABLE weft-proxy: connect_refused")
        self.assertGreaterEqual(self.b.proxy.metrics().sum("inbound_http_errors_total", error="connect_refused"), 1)

    def test_baseline_without_proxies(self):
        r = self.results(DIRECT)
        failed = {n: d for n, (ok, d) in r.items() if not ok}
        self.assertEqual(failed, {})
        self.assertGreaterEqual(len(r), 12)


if __name__ == "__main__":
    unittest.main()
