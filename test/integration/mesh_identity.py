"""Identity for integration tests: a real trust anchor and issuer made with `weft certs`, a real
identity service (`weft-controller identity`) in its own pod, and the proxy settings a meshed
pod needs (token, anchors, identity name)."""

import os
import subprocess

from weft_harness import BIN_DIR, PROXY_UID, wait_for, sh

CP_NS = "weft"
TRUST_DOMAIN = "cluster.local"


def identity_name(sa, ns="default"):
    return f"{sa}.{ns}.serviceaccount.identity.{CP_NS}.{TRUST_DOMAIN}"


class IdentityPlane:
    def __init__(self, mesh, leaf_lifetime="24h", anchor_dir=None):
        self.mesh = mesh
        self.dir = anchor_dir or os.path.join(mesh.tmp, "pki")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(mesh.tmp, 0o755)
        os.chmod(self.dir, 0o755)
        weft = os.path.join(BIN_DIR, "weft")
        self.anchor = os.path.join(self.dir, "anchor.crt")
        self.issuer_cert = os.path.join(self.dir, "issuer.crt")
        self.issuer_key = os.path.join(self.dir, "issuer.key")
        if not os.path.exists(self.anchor):
            sh(weft, "certs", "create-trust-anchor", "--cert", self.anchor, "--key", os.path.join(self.dir, "anchor.key"))
        self.new_issuer()
        self.tokens = os.path.join(self.dir, "tokens")
        if not os.path.exists(self.tokens):
            with open(self.tokens, "w"):
                pass
            os.chmod(self.tokens, 0o600)
        self.leaf_lifetime = leaf_lifetime
        self.pod = mesh.pod("control", proxy=False)
        self.restart()

    def restart(self):
        """Starts (again) the identity service on the same address."""
        log = open(os.path.join(self.mesh.tmp, "identity.log"), "ab")
        self.proc = self.pod.popen(
            os.path.join(BIN_DIR, "weft-controller"), "identity", "--listen", "0.0.0.0:8080",
            "--admin-listen", "0.0.0.0:9990", "--issuer-cert", self.issuer_cert, "--issuer-key", self.issuer_key,
            "--trust-anchors", self.anchor, "--tokens", self.tokens, "--leaf-lifetime", self.leaf_lifetime,
            env={"ASAN_OPTIONS": "detect_leaks=1"}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: self._ready(), timeout=20, what="identity service ready")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"identity service exited {self.proc.returncode}:\n{self.log()}")
        try:
            return self.pod.http("127.0.0.1", 9990, "/ready")[0] == 200
        except OSError:
            return False

    def log(self):
        with open(os.path.join(self.mesh.tmp, "identity.log"), errors="replace") as f:
            return f.read()

    def new_issuer(self, force=False):
        args = ["certs", "create-issuer", "--cert", self.issuer_cert, "--key", self.issuer_key,
                "--ca-cert", self.anchor, "--ca-key", os.path.join(self.dir, "anchor.key")]
        if force or os.path.exists(self.issuer_cert):
            args.append("--force")
        sh(os.path.join(BIN_DIR, "weft"), *args)

    def metrics(self):
        return self.pod.metrics(9990)

    def proxy_env(self, sa, static_identities="", **extra):
        """The env of a meshed proxy for service account `sa`, with a fresh token."""
        name = identity_name(sa)
        token = sh(os.path.join(BIN_DIR, "weft-controller"), "identity", "add-token", "--tokens", self.tokens,
                   "--identity", name).stdout.strip()
        token_file = os.path.join(self.mesh.tmp, f"{sa}.token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        os.chown(token_file, PROXY_UID, PROXY_UID)
        os.chmod(token_file, 0o400)
        env = {"WEFT_PROXY_IDENTITY_DISABLED": "0",
               "WEFT_PROXY_IDENTITY_SVC_ADDR": f"{self.pod.ip}:8080",
               "WEFT_PROXY_IDENTITY_LOCAL_NAME": name,
               "WEFT_PROXY_IDENTITY_TRUST_ANCHORS_FILE": self.anchor,
               "WEFT_PROXY_IDENTITY_TOKEN_FILE": token_file,
               "WEFT_PROXY_DESTINATION_STATIC_IDENTITIES": static_identities}
        env.update(extra)
        return env
