"""`weft certs` and `weft version`, run as the real binary in a temporary directory.

Run by ctest (test/cli/CMakeLists.txt), which sets WEFT_BIN_DIR to the build's bin/ directory;
by hand: WEFT_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v certs_test.py
"""

import datetime
import json
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

BIN_DIR = os.environ.get("WEFT_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
WEFT = os.path.join(BIN_DIR, "weft")
OPENSSL = shutil.which("openssl")
FAKETIME = shutil.which("faketime")


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


class WeftCertsTest(unittest.TestCase):
    def setUp(self):
        if not os.access(WEFT, os.X_OK):
            self.fail(f"{WEFT} is missing: build the `weft` target first")
        self._dir = tempfile.TemporaryDirectory(prefix="weft-certs-test-")
        self.dir = self._dir.name
        self.addCleanup(self._dir.cleanup)

    # --- helpers ---------------------------------------------------------------------------------

    def path(self, name):
        return os.path.join(self.dir, name)

    def weft(self, *args, expect=0, umask=None, prefix=()):
        def set_umask():
            if umask is not None:
                os.umask(umask)

        env = dict(os.environ)
        if prefix:
            # faketime works by LD_PRELOAD, which an ASan build refuses unless told not to check.
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        proc = subprocess.run(
            [*prefix, WEFT, *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=set_umask,
            env=env,
        )
        if expect is not None:
            self.assertEqual(
                proc.returncode,
                expect,
                f"weft {' '.join(args)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
            )
        return proc

    def anchor(self, name="anchor", *extra, **kwargs):
        return self.weft(
            "certs", "create-trust-anchor", "--cert", f"{name}.crt", "--key", f"{name}.key",
            *extra, **kwargs)

    def issuer(self, name="issuer", ca="anchor", *extra, **kwargs):
        return self.weft(
            "certs", "create-issuer", "--cert", f"{name}.crt", "--key", f"{name}.key",
            "--ca-cert", f"{ca}.crt", "--ca-key", f"{ca}.key", *extra, **kwargs)

    def inspect_json(self, *args, expect=0):
        proc = self.weft("certs", "inspect", *args, "-o", "json", expect=expect)
        return json.loads(proc.stdout)

    def openssl_text(self, name):
        return subprocess.run(
            [OPENSSL, "x509", "-in", self.path(name), "-noout", "-text"],
            capture_output=True, text=True, check=True).stdout

    def mode(self, name):
        return stat.S_IMODE(os.stat(self.path(name)).st_mode)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    # --- create and inspect ----------------------------------------------------------------------

    def test_anchor_then_issuer_verifies_against_the_bundle(self):
        self.anchor()
        self.issuer()
        table = self.weft("certs", "inspect", "issuer.crt", "--bundle", "anchor.crt")
        self.assertIn("verifies: yes", table.stdout)
        self.assertIn("CN=identity.weft.cluster.local", table.stdout)

        report = self.inspect_json("issuer.crt", "--bundle", "anchor.crt")
        self.assertTrue(report["ok"])
        (entry,) = report["files"]
        self.assertEqual(entry["file"], "issuer.crt")
        self.assertIsNone(entry["error"])
        self.assertEqual(entry["verification"]["verifies"], True)
        (cert,) = entry["certificates"]
        for field in ("subject", "issuer", "dns_names", "not_before", "not_after", "time_left",
                      "seconds_left", "expired", "not_yet_valid", "key_algorithm",
                      "signature_algorithm", "is_ca", "serial", "sha256_fingerprint"):
            self.assertIn(field, cert)
        self.assertEqual(cert["subject"], "CN=identity.weft.cluster.local")
        self.assertEqual(cert["issuer"], "CN=root.weft.cluster.local")
        self.assertEqual(cert["key_algorithm"], "ECDSA P-256")
        self.assertEqual(cert["signature_algorithm"], "ecdsa-with-SHA256")
        self.assertTrue(cert["is_ca"])
        self.assertFalse(cert["expired"])
        self.assertEqual(len(cert["sha256_fingerprint"].split(":")), 32)

    def test_default_lifetimes_are_ten_years_and_one_year_from_now(self):
        self.anchor()
        self.issuer()
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        for name, hours in (("anchor.crt", 87600), ("issuer.crt", 8760)):
            (cert,) = self.inspect_json(name)["files"][0]["certificates"]
            not_after = parse_time(cert["not_after"])
            self.assertLess(abs(not_after - (now + datetime.timedelta(hours=hours))), datetime.timedelta(seconds=30), name)

    def test_ca_certificates_start_five_minutes_back_for_clock_skew(self):
        self.anchor()
        self.issuer()
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        for name in ("anchor.crt", "issuer.crt"):
            (cert,) = self.inspect_json(name)["files"][0]["certificates"]
            back = now - parse_time(cert["not_before"])
            self.assertGreater(back, datetime.timedelta(minutes=4, seconds=50), name)
            self.assertLess(back, datetime.timedelta(minutes=5, seconds=30), name)

    def test_issuer_never_outlives_the_anchor(self):
        self.anchor("anchor", "--lifetime", "48h")
        proc = self.issuer()
        self.assertIn("expires with its trust anchor", proc.stderr)
        anchor = self.inspect_json("anchor.crt")["files"][0]["certificates"][0]
        issuer = self.inspect_json("issuer.crt")["files"][0]["certificates"][0]
        self.assertEqual(issuer["not_after"], anchor["not_after"])

    def test_create_issuer_explains_rotation(self):
        self.anchor()
        proc = self.issuer()
        self.assertIn("warning", proc.stderr)
        self.assertIn("cert-manager", proc.stderr)
        self.assertIn("weft certs create-issuer --force", proc.stderr)
        self.assertIn("without a restart", proc.stderr)

    def test_keys_are_0600_and_certificates_0644_whatever_the_umask(self):
        for umask, name in ((0o000, "open"), (0o077, "strict")):
            self.anchor(name, umask=umask)
            self.assertEqual(self.mode(f"{name}.key"), 0o600, umask)
            self.assertEqual(self.mode(f"{name}.crt"), 0o644, umask)
        self.assertTrue(self.read("open.key").startswith(b"-----BEGIN PRIVATE KEY-----"))
        # No temporary file is left behind.
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["open.crt", "open.key", "strict.crt", "strict.key"])

    def test_refuses_to_overwrite_without_force(self):
        with open(self.path("anchor.crt"), "w") as f:
            f.write("precious\n")
        proc = self.anchor(expect=1)
        self.assertIn("anchor.crt", proc.stderr)
        self.assertIn("--force", proc.stderr)
        self.assertEqual(self.read("anchor.crt"), b"precious\n")
        self.assertFalse(os.path.exists(self.path("anchor.key")), "refusal wrote a key")

    def test_refuses_to_overwrite_an_existing_key_without_force(self):
        self.anchor()
        key = self.read("anchor.key")
        os.remove(self.path("anchor.crt"))
        proc = self.anchor(expect=1)
        self.assertIn("anchor.key", proc.stderr)
        self.assertEqual(self.read("anchor.key"), key)

    def test_force_overwrites_and_fixes_the_key_mode(self):
        self.anchor()
        old_key = self.read("anchor.key")
        os.chmod(self.path("anchor.key"), 0o644)
        self.anchor("anchor", "--force")
        self.assertNotEqual(self.read("anchor.key"), old_key)
        self.assertEqual(self.mode("anchor.key"), 0o600)
        self.weft("certs", "inspect", "anchor.crt", "--bundle", "anchor.crt")

    def test_bad_lifetime_is_a_usage_error_naming_the_flag(self):
        for value in ("10", "abc", "1y", "0s", "1000000h", ""):
            proc = self.anchor("anchor", "--lifetime", value, expect=2)
            self.assertIn("--lifetime", proc.stderr, value)
        self.anchor()
        proc = self.issuer("issuer", "anchor", "--lifetime", "ten", expect=2)
        self.assertIn("--lifetime", proc.stderr)
        self.assertEqual(sorted(os.listdir(self.dir)), ["anchor.crt", "anchor.key"])

    def test_usage_errors_exit_2(self):
        self.assertIn("A subcommand is required", self.weft(expect=2).stderr)
        self.weft("certs", expect=2)
        self.weft("certs", "create-trust-anchor", "--cert", "a.crt", expect=2)
        self.weft("certs", "create-trust-anchor", "--cert", "a.crt", "--key", "a.key",
                  "--bogus", expect=2)
        self.weft("certs", "inspect", expect=2)
        self.weft("certs", "inspect", "x.crt", "-o", "yaml", expect=2)
        self.weft("certs", "create-trust-anchor", "--cert", "same", "--key", "same", expect=2)
        self.assertEqual(os.listdir(self.dir), [])

    def test_help_explains_each_command(self):
        self.assertIn("certs", self.weft("--help").stdout)
        for command in ("create-trust-anchor", "create-issuer", "create-webhook", "inspect"):
            out = self.weft("certs", command, "--help").stdout
            self.assertIn("Usage: weft certs " + command, out)
        self.assertIn("--bundle", self.weft("certs", "inspect", "--help").stdout)

    def test_issuer_from_another_anchor_is_unknown_ca(self):
        self.anchor("anchor")
        self.anchor("other", "--common-name", "other-root")
        self.issuer("issuer", "anchor")
        proc = self.weft("certs", "inspect", "issuer.crt", "--bundle", "other.crt", expect=1)
        self.assertIn("verifies: no", proc.stdout)
        self.assertIn("unknown_ca", proc.stdout)
        report = self.inspect_json("issuer.crt", "--bundle", "other.crt", expect=1)
        self.assertFalse(report["ok"])
        verification = report["files"][0]["verification"]
        self.assertFalse(verification["verifies"])
        self.assertEqual(verification["reason"], "unknown_ca")

    def test_bundle_with_several_roots(self):
        self.anchor("anchor")
        self.anchor("other", "--common-name", "other-root")
        self.issuer("issuer", "anchor")
        with open(self.path("bundle.pem"), "wb") as f:
            f.write(self.read("other.crt") + self.read("anchor.crt"))
        self.weft("certs", "inspect", "issuer.crt", "--bundle", "bundle.pem")

    def test_chain_file_verifies_through_its_intermediate(self):
        self.anchor()
        self.issuer()
        self.weft("certs", "create-webhook", "--cert", "webhook.crt", "--key", "webhook.key",
                  "--ca-cert", "issuer.crt", "--ca-key", "issuer.key")
        with open(self.path("chain.pem"), "wb") as f:
            f.write(self.read("webhook.crt") + self.read("issuer.crt"))
        report = self.inspect_json("chain.pem", "--bundle", "anchor.crt")
        self.assertTrue(report["files"][0]["verification"]["verifies"])
        self.assertEqual(len(report["files"][0]["certificates"]), 2)
        # Without its intermediate, the webhook certificate alone has no path to the anchor.
        self.inspect_json("webhook.crt", "--bundle", "anchor.crt", expect=1)

    def test_mismatched_ca_key_fails_and_writes_nothing(self):
        self.anchor("anchor")
        self.anchor("other")
        proc = self.weft("certs", "create-issuer", "--cert", "issuer.crt", "--key", "issuer.key",
                         "--ca-cert", "anchor.crt", "--ca-key", "other.key", expect=1)
        self.assertIn("--ca-key", proc.stderr)
        self.assertFalse(os.path.exists(self.path("issuer.crt")))
        self.assertFalse(os.path.exists(self.path("issuer.key")))

    def test_inspect_of_a_missing_or_certificate_less_file_fails(self):
        self.anchor()
        proc = self.weft("certs", "inspect", "anchor.crt", "missing.crt", "anchor.key", expect=1)
        self.assertIn("missing.crt", proc.stdout)
        self.assertIn("no certificate", proc.stdout)
        report = self.inspect_json("anchor.crt", "missing.crt", expect=1)
        self.assertIsNone(report["files"][0]["error"])
        self.assertIn("No such file", report["files"][1]["error"])

    def test_webhook_certificate(self):
        self.anchor()
        self.weft("certs", "create-webhook", "--cert", "webhook.crt", "--key", "webhook.key",
                  "--ca-cert", "anchor.crt", "--ca-key", "anchor.key")
        (cert,) = self.inspect_json("webhook.crt", "--bundle", "anchor.crt")["files"][0][
            "certificates"]
        self.assertEqual(cert["dns_names"], ["weft-injector.weft.svc"])
        self.assertFalse(cert["is_ca"])
        self.weft("certs", "create-webhook", "--cert", "w2.crt", "--key", "w2.key",
                  "--ca-cert", "anchor.crt", "--ca-key", "anchor.key",
                  "--dns", "Hook.Example.svc", "--dns", "hook.example.svc.cluster.local")
        (cert,) = self.inspect_json("w2.crt")["files"][0]["certificates"]
        self.assertEqual(cert["dns_names"], ["hook.example.svc", "hook.example.svc.cluster.local"])
        proc = self.weft("certs", "create-webhook", "--cert", "w3.crt", "--key", "w3.key",
                         "--ca-cert", "anchor.crt", "--ca-key", "anchor.key", "--dns", "bad_name",
                         expect=2)
        self.assertIn("--dns", proc.stderr)

    @unittest.skipUnless(FAKETIME, "needs faketime (Debian package faketime)")
    def test_expired_and_not_yet_valid_certificates_fail_inspection(self):
        self.anchor()
        self.issuer()
        later = self.weft("certs", "inspect", "issuer.crt", prefix=(FAKETIME, "-f", "+400d"),
                          expect=1)
        self.assertIn("EXPIRED", later.stdout)
        self.assertIn("expired", self.weft("certs", "inspect", "issuer.crt", "--bundle",
                                           "anchor.crt", prefix=(FAKETIME, "-f", "+400d"),
                                           expect=1).stdout)
        earlier = self.weft("certs", "inspect", "issuer.crt", prefix=(FAKETIME, "-f", "-1d"),
                            expect=1)
        self.assertIn("NOT YET VALID", earlier.stdout)

    # --- what OpenSSL itself sees ----------------------------------------------------------------

    @unittest.skipUnless(OPENSSL, "needs the openssl command")
    def test_openssl_sees_the_expected_extensions(self):
        self.anchor()
        self.issuer()
        self.weft("certs", "create-webhook", "--cert", "webhook.crt", "--key", "webhook.key",
                  "--ca-cert", "anchor.crt", "--ca-key", "anchor.key")
        anchor = self.openssl_text("anchor.crt")
        self.assertIn("X509v3 Basic Constraints: critical\n                CA:TRUE\n", anchor)
        self.assertIn("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign",
                      anchor)
        self.assertIn("ASN1 OID: prime256v1", anchor)
        self.assertIn("Signature Algorithm: ecdsa-with-SHA256", anchor)
        self.assertIn("X509v3 Subject Key Identifier", anchor)
        self.assertIn("X509v3 Authority Key Identifier", anchor)
        issuer = self.openssl_text("issuer.crt")
        self.assertIn("X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0", issuer)
        self.assertIn("ASN1 OID: prime256v1", issuer)
        self.assertIn("Issuer: CN = root.weft.cluster.local", issuer)
        webhook = self.openssl_text("webhook.crt")
        self.assertIn("CA:FALSE", webhook)
        self.assertIn("TLS Web Server Authentication", webhook)
        self.assertIn("DNS:weft-injector.weft.svc", webhook)
        key = subprocess.run([OPENSSL, "pkey", "-in", self.path("issuer.key"), "-noout", "-text"],
                             capture_output=True, text=True, check=True).stdout
        self.assertIn("prime256v1", key)

    @unittest.skipUnless(OPENSSL, "needs the openssl command")
    def test_openssl_verifies_the_issuer_with_the_anchor(self):
        self.anchor()
        self.issuer()
        self.weft("certs", "create-webhook", "--cert", "webhook.crt", "--key", "webhook.key",
                  "--ca-cert", "issuer.crt", "--ca-key", "issuer.key")
        for args in (["issuer.crt"], ["-untrusted", "issuer.crt", "webhook.crt"]):
            proc = subprocess.run([OPENSSL, "verify", "-CAfile", "anchor.crt", *args],
                                  cwd=self.dir, capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
            self.assertIn(": OK", proc.stdout)
        proc = subprocess.run([OPENSSL, "verify", "-CAfile", "anchor.crt", "-purpose", "sslserver",
                               "-untrusted", "issuer.crt", "webhook.crt"],
                              cwd=self.dir, capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    # --- version ---------------------------------------------------------------------------------

    def test_version(self):
        out = self.weft("version").stdout
        self.assertRegex(out, r"Client version: \d+\.\d+\.\d+ \(git \S+\)")
        self.assertIn("Server version: unavailable", out)
        report = json.loads(self.weft("version", "-o", "json").stdout)
        self.assertRegex(report["client"]["version"], r"^\d+\.\d+\.\d+$")
        self.assertTrue(report["client"]["git_sha"])
        self.assertEqual(report["server"]["status"], "unavailable")
        self.assertNotIn("server", json.loads(self.weft("version", "--client", "-o", "json").stdout))
        self.weft("version", "-o", "xml", expect=2)


if __name__ == "__main__":
    unittest.main()
