"""Identity and mutual TLS, for real: anchor and issuer from `weft certs`, the identity service
in its own pod, two meshed proxies, real TLS 1.3 between them; every refusal case made with real
certificates (python3-cryptography), and rotation under load.

(Payloads here are deliberately not HTTP — "GET_/_HTTP/1.1" is no request line — so these
tests exercise mTLS at layer 4; HTTP over the mesh, which rides HTTP/2 between the proxies, is
covered by test_http_mesh.py, and by the HTTP load in the rotation test below.)"""

import datetime
import hashlib
import os
import socket
import ssl
import struct
import threading
import time
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID

from mesh_identity import IdentityPlane, identity_name
from http1_client import Reader
from http_apps import Origin
from weft_harness import Mesh, Server, digest_handler, recv_all, require_root, wait_for

WEB = identity_name("web")
BACKEND = identity_name("backend")
ALPN = "weft.transport/1"


def transport_header(port):
    return b"WEFT\x01\x00" + struct.pack(">H", port)


def make_cert(tmp, name, san, issuer_cert, issuer_key, not_before, not_after, is_ca=False):
    """A P-256 certificate signed by issuer (or self-signed when issuer_cert is None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, san or "rogue")])
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    cert = b.sign(issuer_key or key, hashes.SHA256())
    chain = cert.public_bytes(serialization.Encoding.PEM)
    if issuer_cert is not None:
        chain += issuer_cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = os.path.join(tmp, name + ".crt"), os.path.join(tmp, name + ".key")
    with open(cert_path, "wb") as f:
        f.write(chain)
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert, key, cert_path, key_path


@require_root
class MeshTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh()
        try:
            cls.idp = IdentityPlane(cls.mesh)
            cls.b = cls.mesh.pod("b", **cls.idp.proxy_env("backend", WEFT_PROXY_OPAQUE_PORTS="7025"))
            cls.a = cls.mesh.pod("a", **cls.idp.proxy_env(
                "web", static_identities=f"{cls.b.ip}={BACKEND},{cls.b.ip}:7030=other.default.serviceaccount.identity.weft.cluster.local",
                WEFT_PROXY_OPAQUE_PORTS="7025"))
            cls.c = cls.mesh.pod("c", proxy=False)  # an unmeshed outsider
            cls.received = []
            cls.servers = [Server(cls.b, 7001, digest_handler), Server(cls.b, 7025, digest_handler),
                           Server(cls.b, 7030, digest_handler), Server(cls.b, 7040, cls._record)]
        except BaseException:
            cls.mesh.close()
            raise

    @classmethod
    def _record(cls, conn):
        cls.received.append(recv_all(conn))

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.close()
        cls.mesh.close()

    def tearDown(self):
        for pod in (self.a, self.b):
            pod.proxy.assert_clean(self)

    def exchange(self, src, host, port, payload):
        s = src.connect(host, port, timeout=20)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            return recv_all(s).decode().split()
        finally:
            s.close()

    def outsider_tls(self, port=7040, cert=None, key=None, sni=BACKEND):
        """A TLS client in the unmeshed pod c, straight to b (no proxy on c's side)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols([ALPN])
        if cert:
            ctx.load_cert_chain(cert, key)
        raw = self.c.connect(self.b.ip, port)
        try:
            tls = ctx.wrap_socket(raw, server_hostname=sni)
            tls.sendall(transport_header(port) + b"secret payload")
            data = tls.recv(100)  # TLS 1.3: a refused client certificate shows up here
            return ("open", data)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError, socket.timeout) as e:
            return ("refused", repr(e))
        finally:
            raw.close()

    def inbound_errors(self, error):
        return self.b.proxy.metrics().sum("inbound_tcp_errors_total", error=error)

    # --- the happy path --------------------------------------------------------------------------

    def test_http_and_opaque_tcp_are_mutually_authenticated_with_the_right_identities(self):
        for port in (7001, 7025):
            payload = os.urandom(300_000) if port == 7001 else b"opaque bytes"
            digest, count = self.exchange(self.a, self.b.ip, port,
                                          b"GET_/_HTTP/1.1\r\nhost: b\r\n\r\n" + payload if port == 7001 else payload)
            self.assertEqual(int(count), len(payload) + (27 if port == 7001 else 0))
            a = self.a.proxy.metrics()
            b = self.b.proxy.metrics()
            self.assertGreaterEqual(a.sum("tcp_open_total", direction="outbound", peer="dst", target_port=port,
                                          tls="true", server_id=BACKEND), 1, a.text)
            self.assertGreaterEqual(b.sum("tcp_open_total", direction="inbound", peer="src", target_port=port,
                                          tls="true", client_id=WEB), 1, b.text)

    def test_proxies_are_ready_only_with_a_certificate_and_export_its_expiry(self):
        m = self.a.proxy.metrics()
        expiry = m.sum("identity_cert_expiration_timestamp_seconds")
        self.assertGreater(expiry, time.time() + 23 * 3600)
        self.assertLess(expiry, time.time() + 24 * 3600 + 60)
        self.assertGreaterEqual(m.sum("identity_cert_refresh_count"), 1)
        self.assertGreaterEqual(self.idp.metrics().sum("identity_certificates_issued_total"), 2)

    def test_unmeshed_clients_are_served_plaintext_and_labelled(self):
        digest, count = self.exchange(self.c, self.b.ip, 7001, b"plain")
        self.assertEqual(int(count), 5)
        self.assertGreaterEqual(self.b.proxy.metrics().sum(
            "tcp_open_total", direction="inbound", tls="no_identity", no_tls_reason="no_tls_from_remote"), 1)

    def test_tls_for_someone_else_passes_through_untouched(self):
        before = len(self.received)
        # A real ClientHello for someone else's server name, made by python's ssl module.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="shop.example.com")
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outgoing.read()
        s = self.c.connect(self.b.ip, 7040)
        s.sendall(hello)
        s.close()
        wait_for(lambda: len(self.received) > before, what="app to receive the ClientHello")
        self.assertEqual(self.received[-1], hello)
        self.assertGreaterEqual(self.b.proxy.metrics().sum("tcp_open_total", direction="inbound", tls="opaque",
                                                           target_port=7040), 1)

    # --- refusals: counted by reason, nothing reaches the application ----------------------------

    def assert_refused(self, reason, **client):
        before_rx, before_err = len(self.received), self.inbound_errors("tls_" + reason)
        outcome, detail = self.outsider_tls(**client)
        self.assertEqual(outcome, "refused", detail)
        wait_for(lambda: self.inbound_errors("tls_" + reason) == before_err + 1, what=f"tls_{reason} counted")
        time.sleep(0.2)
        self.assertEqual(len(self.received), before_rx, "nothing may reach the application")

    def test_refuses_a_client_without_a_certificate(self):
        self.assert_refused("no_client_cert")

    def test_refuses_a_client_from_another_ca(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca, ca_key, _, _ = make_cert(self.mesh.tmp, "rogue-ca", None, None, None, now - datetime.timedelta(days=1),
                                     now + datetime.timedelta(days=30), is_ca=True)
        _, _, cert, key = make_cert(self.mesh.tmp, "rogue", WEB, ca, ca_key, now - datetime.timedelta(hours=1),
                                    now + datetime.timedelta(days=1))
        self.assert_refused("unknown_ca", cert=cert, key=key)

    def _issuer(self):
        with open(self.idp.issuer_cert, "rb") as f:
            issuer = x509.load_pem_x509_certificate(f.read())
        with open(self.idp.issuer_key, "rb") as f:
            issuer_key = serialization.load_pem_private_key(f.read(), None)
        return issuer, issuer_key

    def test_refuses_an_expired_client_certificate(self):
        issuer, issuer_key = self._issuer()
        now = datetime.datetime.now(datetime.timezone.utc)
        _, _, cert, key = make_cert(self.mesh.tmp, "expired", WEB, issuer, issuer_key,
                                    now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))
        self.assert_refused("expired", cert=cert, key=key)

    def test_refuses_a_client_certificate_not_yet_valid(self):
        issuer, issuer_key = self._issuer()
        now = datetime.datetime.now(datetime.timezone.utc)
        _, _, cert, key = make_cert(self.mesh.tmp, "future", WEB, issuer, issuer_key,
                                    now + datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
        self.assert_refused("not_yet_valid", cert=cert, key=key)

    def test_outbound_refuses_a_server_with_the_wrong_identity(self):
        before = self.a.proxy.metrics().sum("outbound_tcp_errors_total", error="tls_wrong_identity")
        s = self.a.connect(self.b.ip, 7030)  # a expects "other" there; b proves "backend"
        s.sendall(b"must not arrive")
        try:
            self.assertEqual(s.recv(10), b"")
        except ConnectionResetError:
            pass
        s.close()
        wait_for(lambda: self.a.proxy.metrics().sum("outbound_tcp_errors_total", error="tls_wrong_identity") == before + 1,
                 what="wrong identity counted")


@require_root
class RotationTest(unittest.TestCase):
    def setUp(self):
        self.mesh = Mesh()
        self.addCleanup(self.mesh.close)

    def test_short_leaves_rotate_under_load_without_a_failed_request_and_issuer_rotates_on_disk(self):
        # 20 s leaves, back-dated 20 s: refreshed every 14 s (70 %); about 40 s of load = 2-3 rotations.
        idp = IdentityPlane(self.mesh, leaf_lifetime="20s")
        b = self.mesh.pod("b", **idp.proxy_env("backend"))
        a = self.mesh.pod("a", **idp.proxy_env("web", static_identities=f"{b.ip}={BACKEND}"))
        srv = Server(b, 7001, digest_handler)
        self.addCleanup(srv.close)
        with b.netns():
            Origin(7002, "b").start()
        failures, done, stop = [], [0], threading.Event()

        def http_load():
            # HTTP rides one multiplexed HTTP/2 connection between the proxies: it must survive
            # the certificates changing under it too.
            s, r = None, None
            while not stop.is_set():
                try:
                    if s is None:
                        s = a.connect(b.ip, 7002, timeout=10)
                        r = Reader(s)
                    s.sendall(b"GET /status/200 HTTP/1.1\r\nHost: rot\r\n\r\n")
                    resp = r.read_final()
                    if resp.status != 200:
                        failures.append(resp.raw_head)
                    done[0] += 1
                    time.sleep(0.01)
                except (OSError, EOFError) as e:
                    failures.append(repr(e))
                    s = None
            if s is not None:
                s.close()

        def load():
            while not stop.is_set():
                try:
                    s = a.connect(b.ip, 7001, timeout=10)
                    s.sendall(b"GET_/_HTTP/1.1\r\n\r\nping")
                    s.shutdown(socket.SHUT_WR)
                    reply = recv_all(s)
                    s.close()
                    if not reply.endswith(b" 22\n"):
                        failures.append(reply)
                    done[0] += 1
                except OSError as e:
                    failures.append(repr(e))
        workers = [threading.Thread(target=load) for _ in range(2)] + [threading.Thread(target=http_load)]
        for w in workers:
            w.start()
        try:
            time.sleep(20)
            idp.new_issuer(force=True)  # a new issuer from the same anchor, replaced on disk
            wait_for(lambda: idp.metrics().sum("identity_issuer_reloads_total", result="success") >= 1, timeout=15,
                     what="issuer reload")
            time.sleep(22)
        finally:
            stop.set()
            for w in workers:
                w.join()
        self.assertEqual(failures, [], f"{len(failures)} of {done[0]} requests failed")
        self.assertGreater(done[0], 50)
        for pod in (a, b):
            self.assertGreaterEqual(pod.proxy.metrics().sum("identity_cert_refresh_count"), 3)
            pod.proxy.assert_clean(self)
        # Leaves issued after the reload are signed by the new issuer and still work.
        self.assertGreaterEqual(b.proxy.metrics().sum("tcp_open_total", direction="inbound", tls="true",
                                                      client_id=WEB), done[0])

    def test_an_expired_leaf_is_never_presented_and_service_returning_recovers(self):
        # 20 s leaves (back-dated 20 s, so ~20 s left when issued), then the identity service dies.
        idp = IdentityPlane(self.mesh, leaf_lifetime="20s")
        b = self.mesh.pod("b", **idp.proxy_env("backend"))
        a = self.mesh.pod("a", **idp.proxy_env("web", static_identities=f"{b.ip}={BACKEND}"))
        srv = Server(b, 7001, digest_handler)
        self.addCleanup(srv.close)
        idp.proc.kill()
        idp.proc.wait()
        wait_for(lambda: a.proxy.admin("/ready")[0] == 503, timeout=30, interval=0.2,
                 what="not ready once the leaf expired")
        expiry = a.proxy.metrics().sum("identity_cert_expiration_timestamp_seconds")
        self.assertLessEqual(expiry, time.time())
        self.assertIn("certificate expired without a replacement", a.proxy.log())
        before = a.proxy.metrics().sum("outbound_tcp_errors_total", error="identity_not_ready")
        s = a.connect(b.ip, 7001)
        s.sendall(b"GET_/_HTTP/1.1\r\n\r\n")
        try:
            self.assertEqual(s.recv(10), b"")
        except ConnectionResetError:
            pass
        s.close()
        self.assertEqual(a.proxy.metrics().sum("outbound_tcp_errors_total", error="identity_not_ready"), before + 1)
        self.assertGreaterEqual(a.proxy.metrics().sum("identity_cert_refresh_errors_total"), 1)
        # The identity service comes back on the same address: the proxies recover by themselves.
        idp.restart()
        wait_for(lambda: a.proxy.admin("/ready")[0] == 200 and b.proxy.admin("/ready")[0] == 200, timeout=90,
                 interval=0.5, what="ready again")
        s = a.connect(b.ip, 7001)
        s.sendall(b"GET_/_HTTP/1.1\r\n\r\nback")
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(recv_all(s).endswith(b" 22\n"))
        s.close()
        for pod in (a, b):
            pod.proxy.assert_clean(self)

    def test_clocks_19_seconds_apart_still_work(self):
        idp = IdentityPlane(self.mesh)
        b = self.mesh.pod("b", **idp.proxy_env("backend"))
        skew = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "FAKETIME": "-19",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1", "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0"}
        a = self.mesh.pod("a", **idp.proxy_env("web", static_identities=f"{b.ip}={BACKEND}", **skew))
        srv = Server(b, 7001, digest_handler)
        self.addCleanup(srv.close)
        s = a.connect(b.ip, 7001)
        s.sendall(b"GET_/_HTTP/1.1\r\n\r\nskewed")
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(recv_all(s).endswith(b" 24\n"))
        s.close()
        self.assertGreaterEqual(b.proxy.metrics().sum("tcp_open_total", direction="inbound", tls="true", client_id=WEB), 1)


if __name__ == "__main__":
    unittest.main()
