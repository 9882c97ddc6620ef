"""weft-init against the real kernel (SPEC §2 "Interception", §9).

Every test makes its own network namespaces, named weftinit-<pid>-<random>, runs weft-init inside
them with `ip netns exec`, and reads the result back with iptables-nft-save / ip6tables-nft-save.
The namespaces are deleted by addCleanup whether the test passes or not. Nothing here reads or
changes the iptables rules of the host's own network namespace.

Needs root; otherwise it prints WEFT_SKIP_ALL (ctest then reports it skipped) and skips.
Runs with Debian's /usr/bin/python3 and the standard library only. WEFT_BIN_DIR names the build's
bin/ directory.
"""

import os
import random
import re
import select
import shutil
import subprocess
import tempfile
import time
import unittest

BIN_DIR = os.environ.get("WEFT_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
WEFT_INIT = os.path.abspath(os.path.join(BIN_DIR, "weft-init"))
IP = shutil.which("ip") or "/usr/sbin/ip"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
PYTHON = "/usr/bin/python3"
NOBODY = 65534
PROXY_UID = 2102

# What *-save prints for a fresh namespace, once normalize()d.
BUILTIN = [":PREROUTING ACCEPT", ":INPUT ACCEPT", ":OUTPUT ACCEPT", ":POSTROUTING ACCEPT"]


def setUpModule():
    if os.geteuid() != 0:
        print("WEFT_SKIP_ALL: test_init needs root (network namespaces, iptables)")
        raise unittest.SkipTest("needs root")
    if not os.access(WEFT_INIT, os.X_OK):
        raise RuntimeError(f"{WEFT_INIT} is missing: build weft-init, or set WEFT_BIN_DIR")


def run(*cmd, input=None, env=None, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, input=input, env=env,
                          timeout=timeout)


def normalize(save_text):
    """A save without what legitimately changes between runs: '#' lines (dates, warnings) and
    packet/byte counters."""
    out = []
    for line in save_text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            line = re.sub(r"\s*\[\d+:\d+\]$", "", line)
        line = re.sub(r"^\[\d+:\d+\]\s*", "", line)
        out.append(line)
    return "\n".join(out) + "\n"


def nat(chains=(), rules=()):
    """Expected normalized nat table: built-in chains, then ours, then rules in save order."""
    return "\n".join(["*nat", *BUILTIN, *[f":{c} -" for c in chains], *rules, "COMMIT"]) + "\n"


def weft_nat(inbound=("-A WEFT_INBOUND -p tcp -m multiport --dports 4190,4191 -j RETURN",
                      "-A WEFT_INBOUND -p tcp -j REDIRECT --to-ports 4143"),
             outbound=("-A WEFT_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
                       "-A WEFT_OUTBOUND -o lo -j RETURN",
                       "-A WEFT_OUTBOUND -p tcp -j REDIRECT --to-ports 4140")):
    return nat(["WEFT_INBOUND", "WEFT_OUTBOUND"],
               ["-A PREROUTING -p tcp -j WEFT_INBOUND", "-A OUTPUT -p tcp -j WEFT_OUTBOUND",
                *inbound, *outbound])


DEFAULT_NAT = weft_nat()
FRESH_NAT = nat()


class Netns:
    """A network namespace of this test run, deleted at cleanup."""

    def __init__(self, test):
        self.name = f"weftinit-{os.getpid()}-{random.getrandbits(32):08x}"
        r = run(IP, "netns", "add", self.name)
        if r.returncode != 0:
            raise RuntimeError(f"ip netns add {self.name}: {r.stderr.strip()}")
        test.addCleanup(self._delete)
        self.sh(IP, "link", "set", "lo", "up")

    def _delete(self):
        r = run(IP, "netns", "del", self.name)
        if r.returncode != 0:
            raise RuntimeError(f"ip netns del {self.name}: {r.stderr.strip()}")

    def exec(self, *cmd, **kw):
        return run(IP, "netns", "exec", self.name, *cmd, **kw)

    def sh(self, *cmd, **kw):
        r = self.exec(*cmd, **kw)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in {self.name} failed ({r.returncode}): "
                                 f"{r.stderr.strip()}")
        return r

    def weft_init(self, *args, env=None):
        return self.exec(WEFT_INIT, *args, env=env)

    def save(self, family=4, backend="nft"):
        tool = f"{'iptables' if family == 4 else 'ip6tables'}-{backend}-save"
        return normalize(self.sh(tool, "-t", "nat").stdout)

    def restore(self, text, family=4):
        self.sh(f"{'iptables' if family == 4 else 'ip6tables'}-nft-restore", "--noflush",
                input=text)


class InitTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.ns = Netns(self)

    def apply_ok(self, *args, env=None):
        r = self.ns.weft_init(*args, env=env)
        self.assertEqual(r.returncode, 0, f"weft-init {' '.join(args)} failed:\n{r.stderr}")
        return r

    def assertNat(self, v4, v6=None):
        self.assertEqual(self.ns.save(4), v4)
        self.assertEqual(self.ns.save(6), v4 if v6 is None else v6)


class ApplyTest(InitTestCase):
    def test_defaults_install_exactly_the_documented_rules_for_both_families(self):
        r = self.apply_ok()
        self.assertNat(DEFAULT_NAT)
        self.assertEqual(r.stdout.splitlines(), [
            "weft-init: ipv4: 2 chains, 7 rules (inbound -> 4143, outbound -> 4140, proxy uid 2102)",
            "weft-init: ipv6: 2 chains, 7 rules (inbound -> 4143, outbound -> 4140, proxy uid 2102)",
        ])

    def test_applying_twice_gives_byte_identical_tables(self):
        flags = ["--skip-outbound-ports", "443,6000-6100", "--skip-subnets", "10.0.0.0/8,fd00::/8"]
        self.apply_ok(*flags)
        first = (self.ns.save(4), self.ns.save(6))
        r = self.apply_ok(*flags)
        self.assertEqual((self.ns.save(4), self.ns.save(6)), first)
        self.assertNotIn("deleted", r.stdout)

    def test_flags_change_ports_uid_and_send_each_subnet_to_its_family(self):
        self.apply_ok("--proxy-uid", "1337", "--inbound-port", "15006", "--outbound-port", "15001",
                      "--skip-inbound-ports", "22,8000-8010",
                      "--skip-outbound-ports", "443,6000-6100",
                      "--skip-subnets", "10.0.0.0/8, fd00::/8,192.168.7.1/16,2001:db8::/32")
        inbound = ("-A WEFT_INBOUND -p tcp -m multiport --dports 22,4190,4191,8000:8010 -j RETURN",
                   "-A WEFT_INBOUND -p tcp -j REDIRECT --to-ports 15006")
        head = ("-A WEFT_OUTBOUND -m owner --uid-owner 1337 -j RETURN",
                "-A WEFT_OUTBOUND -o lo -j RETURN",
                "-A WEFT_OUTBOUND -p tcp -m multiport --dports 443,6000:6100 -j RETURN")
        tail = ("-A WEFT_OUTBOUND -p tcp -j REDIRECT --to-ports 15001",)
        self.assertNat(
            weft_nat(inbound, head + ("-A WEFT_OUTBOUND -d 10.0.0.0/8 -j RETURN",
                                      "-A WEFT_OUTBOUND -d 192.168.0.0/16 -j RETURN") + tail),
            weft_nat(inbound, head + ("-A WEFT_OUTBOUND -d fd00::/8 -j RETURN",
                                      "-A WEFT_OUTBOUND -d 2001:db8::/32 -j RETURN") + tail))

    def test_more_than_fifteen_ports_are_split_over_several_multiport_rules(self):
        singles = [str(p) for p in range(1001, 1021)]  # 20 ports
        self.apply_ok("--ipv6=false", "--skip-outbound-ports", ",".join(singles) + ",2000-2100")
        self.assertEqual(self.ns.save(4), weft_nat(outbound=(
            "-A WEFT_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
            "-A WEFT_OUTBOUND -o lo -j RETURN",
            # PortSet merges 1001..1020 into one range.
            "-A WEFT_OUTBOUND -p tcp -m multiport --dports 1001:1020,2000:2100 -j RETURN",
            "-A WEFT_OUTBOUND -p tcp -j REDIRECT --to-ports 4140")))
        odd = [str(p) for p in range(3001, 3041, 2)]  # 20 ports that cannot merge
        self.apply_ok("--ipv6=false", "--skip-outbound-ports", ",".join(odd))
        self.assertEqual(self.ns.save(4), weft_nat(outbound=(
            "-A WEFT_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
            "-A WEFT_OUTBOUND -o lo -j RETURN",
            "-A WEFT_OUTBOUND -p tcp -m multiport --dports " + ",".join(odd[:15]) + " -j RETURN",
            "-A WEFT_OUTBOUND -p tcp -m multiport --dports " + ",".join(odd[15:]) + " -j RETURN",
            "-A WEFT_OUTBOUND -p tcp -j REDIRECT --to-ports 4140")))

    def test_new_flags_replace_the_old_rules_entirely(self):
        self.apply_ok("--skip-outbound-ports", "443", "--skip-subnets", "10.0.0.0/8,fd00::/8")
        self.apply_ok()
        self.assertNat(DEFAULT_NAT)

    def test_duplicate_and_stale_jumps_are_collapsed_to_one(self):
        self.apply_ok()
        for family in (4, 6):
            self.ns.restore("*nat\n-A PREROUTING -p tcp -j WEFT_INBOUND\n"
                            "-A PREROUTING -j WEFT_INBOUND\n"
                            "-A OUTPUT -p tcp -j WEFT_OUTBOUND\nCOMMIT\n", family)
        r = self.apply_ok()
        self.assertIn("deleted 3 duplicate or stale jumps", r.stdout)
        self.assertNat(DEFAULT_NAT)

    def test_ipv6_false_leaves_ip6tables_alone(self):
        r = self.apply_ok("--ipv6=false")
        self.assertNat(DEFAULT_NAT, FRESH_NAT)
        self.assertNotIn("ipv6", r.stdout)

    def test_dry_run_changes_nothing_and_its_output_is_valid_restore_input(self):
        r = self.apply_ok("--dry-run")
        self.assertNat(FRESH_NAT)
        # Two documents, one per family; each, fed to *-restore, gives what weft-init installs.
        docs = re.split(r"(?m)^(?=# weft-init --dry-run: )", r.stdout)
        docs = [d for d in docs if d]
        self.assertEqual(len(docs), 2, r.stdout)
        self.assertIn("ipv4", docs[0].splitlines()[0])
        self.assertIn("ipv6", docs[1].splitlines()[0])
        self.ns.restore(docs[0], 4)
        self.ns.restore(docs[1], 6)
        self.assertNat(DEFAULT_NAT)

    def test_legacy_mode_uses_the_legacy_tools(self):
        probe = self.ns.exec("iptables-legacy-save", "-t", "nat")
        if probe.returncode != 0:
            self.skipTest(f"iptables-legacy does not work here: {probe.stderr.strip()}")
        self.apply_ok("--iptables-mode", "legacy", "--ipv6=false")
        r = self.apply_ok("--iptables-mode", "legacy", "--ipv6=false")
        self.assertNotIn("deleted", r.stdout)
        self.assertEqual(self.ns.save(4, backend="legacy"), DEFAULT_NAT)
        self.assertEqual(self.ns.save(4, backend="nft"), FRESH_NAT)
        self.apply_ok("--iptables-mode", "legacy", "--ipv6=false", "--remove")
        self.assertEqual(self.ns.save(4, backend="legacy"), FRESH_NAT)


class RemoveTest(InitTestCase):
    def test_remove_leaves_no_chain_or_jump_and_is_idempotent(self):
        self.apply_ok("--skip-subnets", "10.0.0.0/8,fd00::/8")
        r = self.apply_ok("--remove")
        self.assertEqual(r.stdout.splitlines(), ["weft-init: ipv4: removed 2 chains and 2 jumps",
                                                 "weft-init: ipv6: removed 2 chains and 2 jumps"])
        self.assertNat(FRESH_NAT)
        for family in (4, 6):
            self.assertNotIn("WEFT", self.ns.save(family))
        r = self.apply_ok("--remove")
        self.assertEqual(r.stdout.splitlines(), ["weft-init: ipv4: no Weft rules to remove",
                                                 "weft-init: ipv6: no Weft rules to remove"])

    def test_remove_in_a_fresh_namespace_succeeds(self):
        self.apply_ok("--remove")
        self.assertNat(FRESH_NAT)

    def test_remove_deletes_every_copy_of_a_jump(self):
        self.apply_ok()
        self.ns.restore("*nat\n-A PREROUTING -p tcp -j WEFT_INBOUND\nCOMMIT\n", 4)
        self.apply_ok("--remove")
        self.assertNat(FRESH_NAT)

    def test_unrelated_nat_rules_survive_apply_and_remove(self):
        self.ns.restore("*nat\n:KEEPME - [0:0]\n"
                        "-A PREROUTING -p udp -m udp --dport 53 -j REDIRECT --to-ports 5353\n"
                        "-A OUTPUT -d 192.0.2.1/32 -p tcp -j DNAT --to-destination 192.0.2.2:80\n"
                        "-A POSTROUTING -o lo -j MASQUERADE\n"
                        "-A KEEPME -p tcp -m tcp --dport 9 -j RETURN\nCOMMIT\n", 4)
        self.ns.restore("*nat\n:KEEPME6 - [0:0]\n"
                        "-A PREROUTING -p udp -m udp --dport 53 -j REDIRECT --to-ports 5353\n"
                        "-A KEEPME6 -d 2001:db8::1/128 -j RETURN\nCOMMIT\n", 6)
        before = (self.ns.save(4), self.ns.save(6))
        self.apply_ok()
        self.apply_ok()
        for family, saved in ((4, before[0]), (6, before[1])):
            after = self.ns.save(family)
            for line in saved.splitlines():
                self.assertIn(line, after.splitlines(), f"ipv{family} lost {line!r}")
            self.assertEqual(after.count("-j WEFT_INBOUND"), 1)
            self.assertEqual(after.count("-j WEFT_OUTBOUND"), 1)
        self.apply_ok("--remove")
        self.assertEqual((self.ns.save(4), self.ns.save(6)), before)


class FailureTest(InitTestCase):
    def test_without_net_admin_it_fails_clearly_and_changes_nothing(self):
        # A copy nobody can surely execute, wherever the build directory is.
        tmp = tempfile.mkdtemp(prefix="weftinit-bin-")
        self.addCleanup(shutil.rmtree, tmp)
        os.chmod(tmp, 0o755)
        binary = os.path.join(tmp, "weft-init")
        shutil.copy(WEFT_INIT, binary)
        os.chmod(binary, 0o755)
        unpriv = [SETPRIV, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                  "--inh-caps=-all", binary]
        for args in ([], ["--remove"]):
            r = self.ns.exec(*unpriv, *args)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("CAP_NET_ADMIN", r.stderr)
            self.assertIn("NET_ADMIN", r.stderr)
        self.assertNat(FRESH_NAT)
        # --dry-run needs no capability.
        r = self.ns.exec(*unpriv, "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("-A PREROUTING -p tcp -j WEFT_INBOUND", r.stdout)

    def test_bad_flag_values_exit_2_naming_the_flag(self):
        cases = [
            (["--inbound-port", "0"], "--inbound-port"),
            (["--outbound-port", "65536"], "--outbound-port"),
            (["--proxy-uid", "-1"], "--proxy-uid"),
            (["--skip-inbound-ports", "0"], "--skip-inbound-ports"),
            (["--skip-outbound-ports", "90-80"], "--skip-outbound-ports"),
            (["--skip-subnets", "10.0.0.0/33"], "--skip-subnets"),
            (["--skip-subnets", "10.0.0.0/8,not-a-subnet"], "--skip-subnets"),
            (["--iptables-mode", "ebpf"], "--iptables-mode"),
            (["--no-such-flag"], "--no-such-flag"),
        ]
        for args, flag in cases:
            with self.subTest(args=args):
                r = self.ns.weft_init(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(flag, r.stderr)
        self.assertNat(FRESH_NAT)

    def test_missing_iptables_binaries_name_the_debian_package(self):
        empty = tempfile.mkdtemp(prefix="weftinit-path-")
        self.addCleanup(shutil.rmtree, empty)
        r = self.ns.weft_init(env={"PATH": empty})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("iptables-nft-save", r.stderr)
        self.assertIn("`iptables`", r.stderr)

    def fake_ip6tables_without_nat(self):
        fake = tempfile.mkdtemp(prefix="weftinit-fake-")
        self.addCleanup(shutil.rmtree, fake)
        script = os.path.join(fake, "ip6tables-nft-save")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n"
                    "echo \"ip6tables-nft-save v1.8.9 (nf_tables): can't initialize ip6tables "
                    "table \\`nat': Table does not exist (do you need to insmod?)\" >&2\n"
                    "exit 1\n")
        os.chmod(script, 0o755)
        return {"PATH": fake + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}

    def test_without_an_ipv6_nat_table_it_warns_and_sets_ipv4(self):
        r = self.apply_ok(env=self.fake_ip6tables_without_nat())
        self.assertIn("warning: ipv6", r.stderr)
        self.assertIn("ip6tables nat table is not available", r.stderr)
        self.assertIn("ipv4: 2 chains", r.stdout)
        self.assertNat(DEFAULT_NAT, FRESH_NAT)

    def test_explicit_ipv6_true_makes_a_missing_ipv6_nat_table_an_error(self):
        r = self.ns.weft_init("--ipv6=true", env=self.fake_ip6tables_without_nat())
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("ip6tables-nft-save", r.stderr)
        self.assertIn("ipv4 rules were installed before this failure", r.stderr)


# Scripts run inside a namespace. SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST are both 80.
ORIGINAL_DST = r'''
import socket, struct, sys
def original_dst(conn, v6):
    if v6:
        raw = conn.getsockopt(socket.IPPROTO_IPV6, 80, 28)
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0]
    raw = conn.getsockopt(socket.SOL_IP, 80, 16)
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack("!H", raw[2:4])[0]
def listener(v6, port):
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if v6 else "0.0.0.0", port))
    s.listen(8)
    return s
'''

# argv: 4|6 dst port proxy_port. Prints "redirected <orig addr> <orig port>", or "direct <error>"
# when the connection was not redirected (nothing answers at the destination).
OUTBOUND_PROBE = ORIGINAL_DST + r'''
v6 = sys.argv[1] == "6"
proxy = listener(v6, int(sys.argv[4]))
proxy.settimeout(5)
client = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
client.settimeout(0.5)
try:
    client.connect((sys.argv[2], int(sys.argv[3])))
except OSError as e:
    print("direct", type(e).__name__)
    sys.exit(0)
conn, _ = proxy.accept()
print("redirected", *original_dst(conn, v6))
'''

# argv: 4|6 count port... Listens on each port, prints "ready", then for `count` accepted
# connections prints "<listening port> <orig addr> <orig port>". A connection that was not
# redirected lands on the port it was addressed to (conntrack then reports that same address).
INBOUND_SERVER = ORIGINAL_DST + r'''
import select
v6 = sys.argv[1] == "6"
socks = {listener(v6, int(p)): int(p) for p in sys.argv[3:]}
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    ready, _, _ = select.select(list(socks), [], [], 10)
    if not ready:
        print("timeout", flush=True)
        break
    conn, _ = ready[0].accept()
    print(socks[ready[0]], *original_dst(conn, v6), flush=True)
    conn.close()
'''

CONNECT = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.close()
'''


class TrafficTest(InitTestCase):
    """The rules do what they are for: connections really reach the proxy's ports."""

    def add_dead_end_link(self):
        # Destinations that are routable (so not loopback) and where nothing answers: a veth pair
        # inside the namespace with permanent neighbour entries, so packets leave and vanish.
        self.ns.sh(IP, "link", "add", "dead0", "type", "veth", "peer", "name", "dead1")
        self.ns.sh(IP, "addr", "add", "10.99.0.2/24", "dev", "dead0")
        self.ns.sh(IP, "addr", "add", "fd99::2/64", "dev", "dead0", "nodad")
        for dev in ("dead0", "dead1"):
            self.ns.sh(IP, "link", "set", dev, "up")
        for addr in ("10.99.0.1", "10.99.0.200", "fd99::1"):
            self.ns.sh(IP, "neigh", "add", addr, "lladdr", "02:00:00:00:00:01", "dev", "dead0",
                       "nud", "permanent")

    def probe(self, family, dst, port, as_uid=None):
        cmd = [PYTHON, "-c", OUTBOUND_PROBE, str(family), dst, str(port), "4140"]
        if as_uid is not None:
            cmd = [SETPRIV, "--reuid", str(as_uid), "--regid", str(as_uid), "--clear-groups"] + cmd
        return self.ns.sh(*cmd).stdout.split()

    def test_outbound_is_redirected_except_for_the_proxy_uid_and_skipped_ports(self):
        self.add_dead_end_link()
        self.apply_ok("--skip-outbound-ports", "8443", "--skip-subnets", "10.99.0.128/25")
        for family, dst, skipped_dst in ((4, "10.99.0.1", "10.99.0.200"),
                                         (6, "fd99::1", None)):
            with self.subTest(family=family):
                self.assertEqual(self.probe(family, dst, 80), ["redirected", dst, "80"])
                self.assertEqual(self.probe(family, dst, 8443)[0], "direct")
                self.assertEqual(self.probe(family, dst, 80, as_uid=PROXY_UID)[0], "direct")
                if skipped_dst:
                    self.assertEqual(self.probe(family, skipped_dst, 80)[0], "direct")

    def test_inbound_is_redirected_except_for_the_proxys_own_ports(self):
        client = Netns(self)
        client.sh(IP, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
                  "netns", self.ns.name)
        for ns, dev, v4, v6 in ((client, "veth0", "10.98.0.1/24", "fd98::1/64"),
                                (self.ns, "veth1", "10.98.0.2/24", "fd98::2/64")):
            ns.sh(IP, "addr", "add", v4, "dev", dev)
            ns.sh(IP, "addr", "add", v6, "dev", dev, "nodad")
            ns.sh(IP, "link", "set", dev, "up")
        self.apply_ok("--skip-inbound-ports", "2222")
        for family, pod_addr in ((4, "10.98.0.2"), (6, "fd98::2")):
            with self.subTest(family=family):
                server = subprocess.Popen(
                    [IP, "netns", "exec", self.ns.name, PYTHON, "-c", INBOUND_SERVER, str(family),
                     "3", "4143", "4191", "2222"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                self.addCleanup(server.kill)
                self.assertEqual(self._readline(server), "ready")
                for port in (8080, 4191, 2222):
                    client.sh(PYTHON, "-c", CONNECT, pod_addr, str(port))
                out, err = server.communicate(timeout=30)
                self.assertEqual(server.returncode, 0, err)
                self.assertEqual(out.splitlines(),
                                 [f"4143 {pod_addr} 8080", f"4191 {pod_addr} 4191",
                                  f"2222 {pod_addr} 2222"])

    @staticmethod
    def _readline(proc, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            if ready:
                return proc.stdout.readline().strip()
        raise AssertionError("the server in the namespace did not start within 10 s")


if __name__ == "__main__":
    unittest.main()
