"""The HTTP/2 conformance suite (h2conformance.py) against weft-proxy, for real.

pod "b": an h2c origin (nghttpd --no-tls --echo-upload) on 7080 behind b's inbound proxy, and the
same origin on 7081 which b's rules skip (the origin alone: the baseline).
pod "c": unmeshed, so c -> b:7080 exercises b's inbound proxy only.
pod "a": meshed, so a -> b:7080 exercises a's outbound proxy and b's inbound proxy.

The suite runs as a subprocess inside the client pod (it opens sockets from several threads, and
setns() is per thread). A case may fail only if it is one where nghttpd, built on the same nghttp2
the proxy uses, is known to be lenient (h2conformance.NGHTTPD_LENIENT); WEFT_H2_STRICT=1 makes those
fail too. And the proxy must do no worse than the origin alone.
"""

import json
import os
import subprocess
import unittest

from h2conformance import NGHTTPD_LENIENT
from weft_harness import Mesh, require_root, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "h2conformance.py")
PROXIED, DIRECT = 7080, 7081
STRICT = os.environ.get("WEFT_H2_STRICT") == "1"


@require_root
class Http2ConformanceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh()
        try:
            cls.b = cls.mesh.pod("b", init_args=["--skip-inbound-ports", str(DIRECT)])
            cls.a = cls.mesh.pod("a", init_args=["--skip-outbound-ports", str(DIRECT)])
            cls.c = cls.mesh.pod("c", proxy=False)
            docroot = os.path.join(cls.mesh.tmp, "docroot")
            os.makedirs(docroot)
            with open(os.path.join(docroot, "index.html"), "w") as f:
                f.write("hello from the h2c origin\n")
            for port in (PROXIED, DIRECT):
                log = open(os.path.join(cls.mesh.tmp, f"nghttpd-{port}.log"), "ab")
                cls.b.popen("nghttpd", "--no-tls", "--echo-upload", "-d", docroot, str(port),
                            stdout=log, stderr=subprocess.STDOUT)
                log.close()
            wait_for(lambda: all(f":{p} " in cls.b.run("ss", "-Hltn").stdout for p in (PROXIED, DIRECT)),
                     what="nghttpd listening in b")
            cls.baseline = None
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
            self.assertEqual(pod.proxy.admin("/ready")[0], 200)

    def run_suite(self, pod, port, timeout=900):
        p = pod.popen("/usr/bin/python3", SUITE, self.b.ip, str(port), "--json", "--authority", f"b.test:{port}",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONDONTWRITEBYTECODE": "1"})
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail(f"suite did not finish within {timeout}s: {err.decode()[-2000:]}")
        try:
            results = json.loads(out.decode())
        except ValueError:
            self.fail(f"suite output not JSON (exit {p.returncode}):\n{out.decode()[-2000:]}\n{err.decode()[-2000:]}")
        print(f"\n--- h2conformance from {pod.name} to {self.b.ip}:{port}")
        for name, ok, detail in results:
            print(f"{'PASS' if ok else 'FAIL'} {name}: {detail[:300]}")
        return results

    def assert_conformant(self, results):
        self.assertGreater(len(results), 50, results)
        failed = {n: d for n, ok, d in results if not ok}
        allowed = set() if STRICT else set(NGHTTPD_LENIENT)
        unexpected = {n: d for n, d in failed.items() if n not in allowed}
        self.assertEqual(unexpected, {}, "conformance failures")
        for n in failed:
            print(f"known nghttp2 leniency, not failing: {n}: {NGHTTPD_LENIENT[n]}")

    def get_baseline(self):
        if Http2ConformanceTest.baseline is None:
            Http2ConformanceTest.baseline = self.run_suite(self.c, DIRECT)
        return Http2ConformanceTest.baseline

    def test_origin_alone_is_conformant_baseline(self):
        self.assert_conformant(self.get_baseline())

    def test_through_the_inbound_proxy(self):
        results = self.run_suite(self.c, PROXIED)
        self.assert_conformant(results)
        passed_alone = {n for n, ok, _ in self.get_baseline() if ok}
        worse = [n for n, ok, _ in results if not ok and n in passed_alone]
        self.assertEqual(worse, [], "cases the origin alone passes but the proxy fails")

    def test_through_the_outbound_and_inbound_proxies(self):
        results = self.run_suite(self.a, PROXIED)
        self.assert_conformant(results)
        passed_alone = {n for n, ok, _ in self.get_baseline() if ok}
        worse = [n for n, ok, _ in results if not ok and n in passed_alone]
        self.assertEqual(worse, [], "cases the origin alone passes but the proxies fail")


if __name__ == "__main__":
    unittest.main()
