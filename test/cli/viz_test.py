"""`weft viz stat|edges` and `weft check` against real data: two weft-proxy processes on loopback
(identity disabled, fixed targets), an HTTP origin, a real Prometheus scraping the proxies with
the labels local mode sets (namespace, pod, deployment; job weft-proxies), a stand-in control
plane (admin /ready) and a hand-written <state>/run/local.json (docs/local.md).

    client -> web-0 outbound proxy -> books-0 inbound proxy -> origin (200 on /ok, 500 on /fail)

Run by ctest (test/cli/CMakeLists.txt), which sets WEFT_BIN_DIR to the build's bin/ directory;
by hand: WEFT_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v viz_test.py
Skips (loudly) when Debian's `prometheus` is not installed: apt-get install prometheus.
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

BIN_DIR = os.environ.get("WEFT_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
WEFT = os.path.join(BIN_DIR, "weft")
WEFT_PROXY = os.path.join(BIN_DIR, "weft-proxy")
WEFT_CONTROLLER = os.path.join(BIN_DIR, "weft-controller")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
OPENSSL = shutil.which("openssl")

OK_REQUESTS = 40
FAIL_REQUESTS = 10


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout=30.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # noqa: BLE001 - polled until the deadline
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's name
        status = 500 if self.path.startswith("/fail") else 200
        body = b"origin\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Ready(http.server.BaseHTTPRequestHandler):
    """The control plane's admin server, as far as `weft check` sees it."""

    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/ready" else 404)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"ready\n")

    def log_message(self, *args):
        pass


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def get(addr, path, timeout=5):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        rsp = conn.getresponse()
        return rsp.status, rsp.read()
    finally:
        conn.close()


class VizAndCheckTest(unittest.TestCase):
    procs = []
    servers = []
    logs = []

    @classmethod
    def setUpClass(cls):
        for binary in (WEFT, WEFT_PROXY):
            if not os.access(binary, os.X_OK):
                raise AssertionError(f"{binary} is missing: build the weft and weft-proxy targets")
        if not os.access(PROMETHEUS, os.X_OK):
            print("WEFT_SKIP_ALL: viz_test needs Prometheus (apt-get install prometheus)")
            raise unittest.SkipTest("prometheus is not installed (apt-get install prometheus)")
        cls._tmp = tempfile.TemporaryDirectory(prefix="weft-viz-test-")
        cls.tmp = cls._tmp.name
        try:
            cls._start()
        except BaseException:
            cls._stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls._stop()

    @classmethod
    def _stop(cls):
        for proc in cls.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        for server in cls.servers:
            server.shutdown()
            server.server_close()
        for log in cls.logs:
            log.close()
        if hasattr(cls, "_tmp"):
            cls._tmp.cleanup()

    @classmethod
    def _spawn(cls, args, log, env=None):
        out = open(os.path.join(cls.tmp, log), "wb")
        cls.logs.append(out)
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
        cls.procs.append(proc)
        return proc

    @classmethod
    def _proxy(cls, name, inbound_target=None, outbound_target=None):
        ports = {k: free_port() for k in ("inbound", "outbound", "admin", "control")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_PROXY_")}
        env.update({
            "WEFT_PROXY_IDENTITY_DISABLED": "1",
            "WEFT_PROXY_INBOUND_LISTEN_ADDR": f"127.0.0.1:{ports['inbound']}",
            "WEFT_PROXY_OUTBOUND_LISTEN_ADDR": f"127.0.0.1:{ports['outbound']}",
            "WEFT_PROXY_ADMIN_LISTEN_ADDR": f"127.0.0.1:{ports['admin']}",
            "WEFT_PROXY_CONTROL_LISTEN_ADDR": f"127.0.0.1:{ports['control']}",
            "WEFT_PROXY_IPV6": "0",
            "WEFT_PROXY_LOG": "warn",
        })
        if inbound_target:
            env["WEFT_PROXY_INBOUND_TARGET_ADDR"] = inbound_target
        if outbound_target:
            env["WEFT_PROXY_OUTBOUND_TARGET_ADDR"] = outbound_target
        proc = cls._spawn([WEFT_PROXY], f"{name}.log", env)
        admin = f"127.0.0.1:{ports['admin']}"
        wait_for(lambda: get(admin, "/ready")[0] == 200, what=f"{name} proxy ready")
        return {k: f"127.0.0.1:{v}" for k, v in ports.items()} | {"pid": proc.pid}

    @classmethod
    def _start(cls):
        cls.origin = serve(Origin)
        cls.servers.append(cls.origin)
        origin_addr = "127.0.0.1:%d" % cls.origin.server_address[1]
        cls.books = cls._proxy("books", inbound_target=origin_addr)
        cls.web = cls._proxy("web", outbound_target=cls.books["inbound"])
        cls.control = serve(Ready)
        cls.servers.append(cls.control)

        # Prometheus, configured as `weft local up` does (docs/local.md), scraping every second.
        cls.prom_addr = f"127.0.0.1:{free_port()}"
        prom_dir = os.path.join(cls.tmp, "prometheus")
        os.makedirs(prom_dir)
        targets = [
            {"targets": [cls.web["admin"]],
             "labels": {"namespace": "demo", "pod": "web-0", "deployment": "web"}},
            {"targets": [cls.books["admin"]],
             "labels": {"namespace": "demo", "pod": "books-0", "deployment": "books"}},
        ]
        with open(os.path.join(prom_dir, "targets.json"), "w") as f:
            json.dump(targets, f)
        with open(os.path.join(prom_dir, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: weft-proxies
    metrics_path: /metrics
    file_sd_configs:
      - files: ["{prom_dir}/targets.json"]
        refresh_interval: 1s
""")
        cls._spawn([PROMETHEUS, f"--config.file={prom_dir}/prometheus.yml",
                    f"--storage.tsdb.path={prom_dir}/data", "--storage.tsdb.retention.time=1h",
                    f"--web.listen-address={cls.prom_addr}", "--log.level=warn"],
                   "prometheus.log")
        wait_for(lambda: get(cls.prom_addr, "/-/ready")[0] == 200, timeout=60,
                 what="Prometheus ready")

        # The state directory: PKI from `weft certs`, and run/local.json.
        cls.state = os.path.join(cls.tmp, "state")
        cls.make_state(cls.state)

        # Traffic. One request of each class first, so that both response_total series exist in
        # Prometheus before the counted burst (increase() cannot see a series' first value).
        client = cls.web["outbound"]
        assert get(client, "/ok")[0] == 200
        assert get(client, "/fail")[0] == 500
        wait_for(lambda: cls.prom_value(
            'sum(response_total{direction="inbound",deployment="books"})') == 2,
            what="the warm-up requests in Prometheus")
        time.sleep(1.5)  # a second sample of the warm-up values: the burst's start is visible
        for _ in range(OK_REQUESTS):
            assert get(client, "/ok")[0] == 200
        for _ in range(FAIL_REQUESTS):
            assert get(client, "/fail")[0] == 500
        total = 2 + OK_REQUESTS + FAIL_REQUESTS
        wait_for(lambda: cls.prom_value(
            'sum(response_total{direction="inbound",deployment="books"})') == total,
            what="the burst in Prometheus")
        # More samples after the burst: increase() extrapolates by at most half a scrape
        # interval, relative to the sampled span.
        time.sleep(6)

    @classmethod
    def prom_value(cls, query):
        url = f"http://{cls.prom_addr}/api/v1/query?query=" + urllib.parse.quote(query)
        with urllib.request.urlopen(url, timeout=5) as rsp:
            result = json.load(rsp)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    @classmethod
    def make_state(cls, state, prometheus=None, issuer_args=(), issuer_from_other_anchor=False):
        pki = os.path.join(state, "pki")
        os.makedirs(pki)
        os.makedirs(os.path.join(state, "run"))
        run = lambda *a: subprocess.run([WEFT, "certs", *a], cwd=pki, check=True,  # noqa: E731
                                        capture_output=True)
        run("create-trust-anchor", "--cert", "anchor.crt", "--key", "anchor.key")
        ca = "anchor"
        if issuer_from_other_anchor:
            run("create-trust-anchor", "--cert", "other.crt", "--key", "other.key")
            ca = "other"
        run("create-issuer", "--cert", "issuer.crt", "--key", "issuer.key", "--ca-cert",
            f"{ca}.crt", "--ca-key", f"{ca}.key", *issuer_args)
        control_admin = "127.0.0.1:%d" % cls.control.server_address[1]
        local = {
            "version": 1, "root": False,
            "identity": {"address": "127.0.0.1:1", "admin": control_admin},
            "destination": {"address": "127.0.0.1:1", "admin": control_admin},
            "prometheus": {"address": prometheus or cls.prom_addr},
            "trustDomain": "cluster.local", "controlPlaneNamespace": "weft",
            "pods": [
                {"namespace": "demo", "name": "web-0", "deployment": "web", "serviceAccount": "web",
                 "ip": "127.0.0.1", "admin": cls.web["admin"], "proxyPid": cls.web["pid"]},
                {"namespace": "demo", "name": "books-0", "deployment": "books",
                 "serviceAccount": "books", "ip": "127.0.0.1", "admin": cls.books["admin"],
                 "proxyPid": cls.books["pid"]},
            ],
            "services": [],
        }
        with open(os.path.join(state, "run", "local.json"), "w") as f:
            json.dump(local, f)
        return state

    # --- helpers ---------------------------------------------------------------------------------

    def weft(self, *args, expect=0, state=None):
        env = {k: v for k, v in os.environ.items() if k != "WEFT_STATE_DIR"}
        proc = subprocess.run([WEFT, *args, "--state-dir", state or self.state],
                              capture_output=True, text=True, timeout=60, env=env)
        if expect is not None:
            self.assertEqual(proc.returncode, expect,
                             f"weft {' '.join(args)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def stat_json(self, *args):
        return json.loads(self.weft("viz", "stat", *args, "-o", "json").stdout)

    def check_json(self, state, expect):
        proc = self.weft("check", "-o", "json", state=state, expect=expect)
        return {c["name"]: c for c in json.loads(proc.stdout)}

    def new_state(self, **kwargs):
        d = tempfile.mkdtemp(prefix="state-", dir=self.tmp)
        os.rmdir(d)
        return self.make_state(d, **kwargs)

    # --- weft viz stat -----------------------------------------------------------------------------

    def test_stat_deploy_counts_the_requests_sent_and_their_success_rate(self):
        rows = {r["name"]: r for r in self.stat_json("deploy", "-n", "demo", "-t", "1m")}
        books = rows["books"]
        sent = OK_REQUESTS + FAIL_REQUESTS
        # increase() extrapolates to the window's edges by at most half a scrape interval.
        self.assertAlmostEqual(books["requests"], sent, delta=sent * 0.2, msg=books)
        self.assertAlmostEqual(books["success_rate"], OK_REQUESTS / sent, delta=0.05, msg=books)
        self.assertAlmostEqual(books["rps"], books["requests"] / 60, delta=0.01)
        self.assertIsNotNone(books["latency_ms"]["p50"])
        self.assertGreaterEqual(books["latency_ms"]["p99"], books["latency_ms"]["p50"])
        self.assertEqual((books["meshed"], books["pods"]), (1, 1))
        # web sent the traffic and received none: meshed, no inbound requests.
        self.assertEqual(rows["web"]["requests"], 0)
        self.assertIsNone(rows["web"]["success_rate"])
        self.assertEqual((rows["web"]["meshed"], rows["web"]["pods"]), (1, 1))

    def test_stat_pod_and_named_resource(self):
        rows = self.stat_json("pod/books-0", "-n", "demo")
        self.assertEqual([r["name"] for r in rows], ["books-0"])
        self.assertEqual(rows[0]["kind"], "pod")
        self.assertGreater(rows[0]["requests"], 0)
        self.assertEqual(self.stat_json("deploy", "books", "-n", "demo")[0]["name"], "books")

    def test_stat_other_namespace_is_empty(self):
        self.assertEqual(self.stat_json("deploy", "-n", "nowhere"), [])

    def test_stat_table_shows_linkerd_columns(self):
        out = self.weft("viz", "stat", "deploy", "-n", "demo").stdout
        header = out.splitlines()[0].split()
        self.assertEqual(header, ["NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95",
                                  "LATENCY_P99", "TCP_CONN"])
        books = next(line.split() for line in out.splitlines() if line.startswith("books "))
        self.assertEqual(books[1], "1/1")
        self.assertTrue(books[2].endswith("%"), books)

    def test_stat_from_and_to_use_outbound_series(self):
        proc = self.weft("viz", "stat", "deploy/books", "-n", "demo", "--from", "deploy/web",
                         "--show-queries", "-o", "json")
        self.assertIn('direction="outbound", namespace="demo", deployment="web", '
                      'dst_namespace="demo", dst_deployment="books"', proc.stderr)
        json.loads(proc.stdout)  # rows need the proxies' dst_* labels (discovery)
        proc = self.weft("viz", "stat", "deploy/web", "-n", "demo", "--to", "svc/books",
                         "--show-queries", "-o", "json")
        self.assertIn('dst_service="books"', proc.stderr)

    def test_edges_answers_json(self):
        edges = json.loads(self.weft("viz", "edges", "deploy", "-n", "demo", "-o", "json").stdout)
        self.assertIsInstance(edges, list)
        for e in edges:  # present once the proxies label outbound series with dst_*
            self.assertEqual(set(e), {"kind", "src", "src_namespace", "dst", "dst_namespace",
                                      "secured", "tls", "no_tls_reason", "client_id",
                                      "server_id"})

    def test_usage_errors_exit_2(self):
        self.weft("viz", "stat", "daemonset", expect=2)
        self.weft("viz", "stat", "deploy/a", "--from", "deploy/b", "--to", "deploy/c", expect=2)
        self.weft("viz", "stat", "svc/a", "--to", "deploy/b", expect=2)
        self.weft("viz", "stat", "deploy", "-t", "soon", expect=2)
        self.weft("viz", "stat", "deploy", "-o", "yaml", expect=2)
        self.weft("viz", "edges", "svc", expect=2)

    def test_unreachable_prometheus_is_explained(self):
        port = free_port()
        proc = self.weft("viz", "stat", "deploy", "--prometheus-url", f"http://127.0.0.1:{port}",
                         expect=1)
        self.assertIn(f"cannot reach Prometheus at http://127.0.0.1:{port}: connection refused",
                      proc.stderr)
        self.assertIn("weft local up", proc.stderr)

    def test_missing_state_is_explained(self):
        proc = self.weft("viz", "stat", "deploy", state=os.path.join(self.tmp, "none"), expect=1)
        self.assertIn("run/local.json does not exist", proc.stderr)

    # --- weft check ----------------------------------------------------------------------------------

    def test_check_passes_on_a_healthy_local_mesh(self):
        checks = self.check_json(self.state, expect=0)
        for name in ("local-state", "anchors-readable", "anchors-algorithm", "anchors-validity",
                     "anchors-expiry", "issuer-readable", "issuer-algorithm", "issuer-validity",
                     "issuer-expiry", "issuer-signed-by-anchor", "issuer-key-matches",
                     "identity-ready", "destination-ready", "proxies-ready",
                     "prometheus-reachable", "prometheus-scraping"):
            self.assertEqual(checks[name]["status"], "pass", checks[name])
            self.assertEqual(checks[name]["hint"], "")
        # These proxies run without identity: a warning, not a failure.
        self.assertEqual(checks["proxies-certificate"]["status"], "warn")
        self.assertEqual(checks["issuer-readable"]["group"], "weft-identity")
        self.assertEqual(checks["prometheus-scraping"]["group"], "weft-viz")

    def test_check_table_marks_each_line(self):
        out = self.weft("check", expect=0).stdout  # not a TTY: ok/warn/FAIL
        self.assertIn("weft-identity\n-------------\n", out)
        self.assertIn("ok   issuer certificate is issued by the trust anchor", out)
        self.assertIn("warn data plane proxies hold a certificate", out)
        self.assertIn("see docs/checks.md#proxies-certificate for hints", out)

    def test_issuer_from_another_anchor_fails_with_its_hint(self):
        checks = self.check_json(self.new_state(issuer_from_other_anchor=True), expect=1)
        c = checks["issuer-signed-by-anchor"]
        self.assertEqual(c["status"], "fail", c)
        self.assertEqual(c["hint"], "docs/checks.md#issuer-signed-by-anchor")
        self.assertEqual(checks["issuer-key-matches"]["status"], "pass")

    def test_issuer_expiring_within_60_days_warns(self):
        checks = self.check_json(self.new_state(issuer_args=("--lifetime", "720h")), expect=0)
        self.assertEqual(checks["issuer-expiry"]["status"], "warn", checks["issuer-expiry"])
        self.assertIn("expires in", checks["issuer-expiry"]["message"])
        self.assertEqual(checks["issuer-validity"]["status"], "pass")

    @unittest.skipUnless(OPENSSL, "needs the openssl command")
    def test_expired_issuer_fails(self):
        state = self.new_state()
        pki = os.path.join(state, "pki")
        with open(os.path.join(pki, "ca.cnf"), "w") as f:
            f.write(f"""[ca]
default_ca = ca_default
[ca_default]
database = {pki}/index.txt
new_certs_dir = {pki}
serial = {pki}/serial
default_md = sha256
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
[v3_issuer]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
""")
        open(os.path.join(pki, "index.txt"), "w").close()
        with open(os.path.join(pki, "serial"), "w") as f:
            f.write("01\n")
        subprocess.run([OPENSSL, "req", "-new", "-key", "issuer.key", "-subj",
                        "/CN=identity.weft.cluster.local", "-out", "issuer.csr"], cwd=pki,
                       check=True, capture_output=True)
        subprocess.run([OPENSSL, "ca", "-batch", "-config", "ca.cnf", "-cert", "anchor.crt",
                        "-keyfile", "anchor.key", "-in", "issuer.csr", "-out", "issuer.crt",
                        "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                        "-extensions", "v3_issuer", "-notext"], cwd=pki, check=True,
                       capture_output=True)
        checks = self.check_json(state, expect=1)
        c = checks["issuer-validity"]
        self.assertEqual(c["status"], "fail", c)
        self.assertIn("expired", c["message"])
        self.assertEqual(c["hint"], "docs/checks.md#issuer-validity")
        self.assertEqual(checks["issuer-signed-by-anchor"]["status"], "pass")

    def test_missing_prometheus_fails(self):
        checks = self.check_json(self.new_state(prometheus=f"127.0.0.1:{free_port()}"), expect=1)
        c = checks["prometheus-reachable"]
        self.assertEqual(c["status"], "fail", c)
        self.assertIn("connection refused", c["message"])
        self.assertEqual(c["hint"], "docs/checks.md#prometheus-reachable")
        self.assertNotIn("prometheus-scraping", checks)

    def test_missing_local_state_fails(self):
        checks = self.check_json(os.path.join(self.tmp, "empty"), expect=1)
        self.assertEqual(checks["local-state"]["status"], "fail")
        self.assertEqual(checks["anchors-readable"]["status"], "fail")

    def test_a_pod_prometheus_does_not_scrape_fails(self):
        state = self.new_state()
        path = os.path.join(state, "run", "local.json")
        with open(path) as f:
            local = json.load(f)
        local["pods"].append({"namespace": "demo", "name": "ghost-0", "deployment": "ghost",
                              "ip": "127.0.0.1", "admin": self.books["admin"]})
        with open(path, "w") as f:
            json.dump(local, f)
        checks = self.check_json(state, expect=1)
        c = checks["prometheus-scraping"]
        self.assertEqual(c["status"], "fail")
        self.assertIn("demo/ghost-0 is not a target", c["message"])


@unittest.skipUnless(os.access(WEFT_CONTROLLER, os.X_OK), "needs weft-controller (identity)")
class ProxyCertificateTest(unittest.TestCase):
    """`proxies-certificate` against a proxy certified by a real `weft-controller identity`."""

    IDENTITY = "books.demo.serviceaccount.identity.weft.cluster.local"

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="weft-check-tls-")
        cls.procs, cls.logs = [], []
        try:
            cls._start()
        except BaseException:
            cls._stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls._stop()

    @classmethod
    def _stop(cls):
        for proc in cls.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in cls.logs:
            log.close()
        cls._tmp.cleanup()

    @classmethod
    def _spawn(cls, args, log, env=None):
        out = open(os.path.join(cls._tmp.name, log), "wb")
        cls.logs.append(out)
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
        cls.procs.append(proc)
        return proc

    @classmethod
    def make_pki(cls, state):
        pki = os.path.join(state, "pki")
        os.makedirs(pki)
        for args in (("create-trust-anchor", "--cert", "anchor.crt", "--key", "anchor.key"),
                     ("create-issuer", "--cert", "issuer.crt", "--key", "issuer.key",
                      "--ca-cert", "anchor.crt", "--ca-key", "anchor.key")):
            subprocess.run([WEFT, "certs", *args], cwd=pki, check=True, capture_output=True)
        return pki

    @classmethod
    def write_local(cls, state):
        os.makedirs(os.path.join(state, "run"), exist_ok=True)
        local = {"version": 1, "root": False,
                 "identity": {"address": cls.identity_addr, "admin": cls.identity_admin},
                 "destination": {"address": "127.0.0.1:1", "admin": cls.identity_admin},
                 "prometheus": {"address": f"127.0.0.1:{free_port()}"},
                 "pods": [{"namespace": "demo", "name": "books-0", "deployment": "books",
                           "serviceAccount": "books", "ip": "127.0.0.1",
                           "admin": cls.admin, "inbound": cls.inbound,
                           "identity": cls.IDENTITY}]}
        with open(os.path.join(state, "run", "local.json"), "w") as f:
            json.dump(local, f)

    @classmethod
    def _start(cls):
        cls.state = os.path.join(cls._tmp.name, "state")
        pki = cls.make_pki(cls.state)
        tokens = os.path.join(pki, "tokens")
        open(tokens, "w").close()
        os.chmod(tokens, 0o600)
        token = subprocess.run([WEFT_CONTROLLER, "identity", "add-token", "--tokens", tokens,
                                "--identity", cls.IDENTITY], check=True, capture_output=True,
                               text=True).stdout.strip()
        token_file = os.path.join(pki, "books.token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        os.chmod(token_file, 0o600)
        cls.identity_addr = f"127.0.0.1:{free_port()}"
        cls.identity_admin = f"127.0.0.1:{free_port()}"
        cls._spawn([WEFT_CONTROLLER, "identity", "--listen", cls.identity_addr, "--admin-listen",
                    cls.identity_admin, "--issuer-cert", os.path.join(pki, "issuer.crt"),
                    "--issuer-key", os.path.join(pki, "issuer.key"), "--trust-anchors",
                    os.path.join(pki, "anchor.crt"), "--tokens", tokens, "--log", "warn"],
                   "identity.log")
        wait_for(lambda: get(cls.identity_admin, "/ready")[0] == 200, what="identity ready")
        ports = {k: free_port() for k in ("inbound", "outbound", "admin", "control")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_PROXY_")}
        env.update({
            "WEFT_PROXY_INBOUND_LISTEN_ADDR": f"127.0.0.1:{ports['inbound']}",
            "WEFT_PROXY_OUTBOUND_LISTEN_ADDR": f"127.0.0.1:{ports['outbound']}",
            "WEFT_PROXY_ADMIN_LISTEN_ADDR": f"127.0.0.1:{ports['admin']}",
            "WEFT_PROXY_CONTROL_LISTEN_ADDR": f"127.0.0.1:{ports['control']}",
            "WEFT_PROXY_IPV6": "0", "WEFT_PROXY_LOG": "warn",
            "WEFT_PROXY_INBOUND_TARGET_ADDR": f"127.0.0.1:{free_port()}",
            "WEFT_PROXY_IDENTITY_SVC_ADDR": cls.identity_addr,
            "WEFT_PROXY_IDENTITY_LOCAL_NAME": cls.IDENTITY,
            "WEFT_PROXY_IDENTITY_TRUST_ANCHORS_FILE": os.path.join(pki, "anchor.crt"),
            "WEFT_PROXY_IDENTITY_TOKEN_FILE": token_file,
        })
        cls._spawn([WEFT_PROXY], "books.log", env)
        cls.admin = f"127.0.0.1:{ports['admin']}"
        cls.inbound = f"127.0.0.1:{ports['inbound']}"
        wait_for(lambda: get(cls.admin, "/ready")[0] == 200, what="books proxy certified")
        cls.write_local(cls.state)

    def check(self, state, expect):
        proc = subprocess.run([WEFT, "check", "-o", "json", "--state-dir", state],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, expect, proc.stdout + proc.stderr)
        return {c["name"]: c for c in json.loads(proc.stdout)}

    def test_a_certified_proxy_passes(self):
        checks = self.check(self.state, expect=1)  # Prometheus is absent here: that one fails
        self.assertEqual(checks["proxies-ready"]["status"], "pass", checks["proxies-ready"])
        c = checks["proxies-certificate"]
        self.assertEqual(c["status"], "pass", c)
        self.assertEqual(checks["identity-ready"]["status"], "pass")

    def test_a_proxy_certified_under_another_anchor_fails(self):
        state = os.path.join(self._tmp.name, "other")
        self.make_pki(state)
        self.write_local(state)
        c = self.check(state, expect=1)["proxies-certificate"]
        self.assertEqual(c["status"], "fail", c)
        self.assertIn("does not verify", c["message"])
        self.assertEqual(c["hint"], "docs/checks.md#proxies-certificate")


if __name__ == "__main__":
    unittest.main()
