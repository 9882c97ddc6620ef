"""Pods for integration tests: network namespaces on a bridge, each with weft-init rules and a
weft-proxy running as UID 2102, and real clients and servers inside them.

Everything a Mesh makes lives in namespaces it creates with names unique to the run; the bridge
sits in a private "switch" namespace, so nothing is added to the host's own network namespace.
Mesh.close() (also run at interpreter exit and on SIGTERM) kills every process it started and
deletes every namespace, whether the test passed or not.

Sockets are opened *inside* a pod from this process: `with pod.netns(): socket.socket(...)` moves
the calling thread into the pod's namespace (setns) for the duration of the block; the socket
stays in that namespace afterwards and can be used from any thread.
"""

import atexit
import contextlib
import ctypes
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

BIN_DIR = os.environ.get("WEFT_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
PROXY_UID = 2102
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_live_meshes = []


def require_root(test_case_cls):
    """Class decorator: skip (loudly, in a way ctest reports as skipped) unless root."""
    if os.geteuid() != 0:
        print("WEFT_SKIP_ALL: integration tests need root (network namespaces, iptables)")
        return unittest.skip("needs root")(test_case_cls)
    return test_case_cls


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate until it returns a truthy value; fails after timeout (never sleeps blindly)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def sh(*cmd, check=True, input=None):
    r = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Proxy:
    def __init__(self, pod, proc, log_path, env):
        self.pod, self.proc, self.log_path, self.env = pod, proc, log_path, env

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def admin(self, path, method="GET", body=b"", host=None):
        return self.pod.http(host or "127.0.0.1", 4191, path, method=method, body=body)

    def metrics(self):
        return self.pod.metrics(4191)

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def assert_clean(self, testcase):
        """No sanitizer report and no bug line in the log."""
        log = self.log()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "weft: bug", "assertion failed"):
            testcase.assertNotIn(marker, log, f"{marker} in proxy log of {self.pod.name}:\n{log[-4000:]}")


class Metrics:
    """Prometheus text parsed into {(name, frozenset(labels)): value}."""

    LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
    LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def __init__(self, text):
        self.text = text
        self.samples = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = self.LINE.match(line)
            if not m:
                raise AssertionError(f"malformed metrics line: {line!r}")
            labels = dict(self.LABEL.findall(m.group(3) or ""))
            self.samples.append((m.group(1), labels, float(m.group(4))))

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples if n == name and all(l.get(k) == str(w) for k, w in labels.items())]

    def sum(self, name, **labels):
        return sum(v for _, v in self.find(name, **labels))


class Pod:
    def __init__(self, mesh, name, index):
        self.mesh, self.name, self.index = mesh, name, index
        self.ns = f"{mesh.prefix}-{name}"
        self.ip = f"10.88.0.{index}"
        self.ip6 = f"fd00:88::{index}"
        self.proxy = None

    def _create(self):
        sh("ip", "netns", "add", self.ns)
        self.mesh._namespaces.append(self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"v{self.index}",
           "netns", self.mesh.switch_ns)
        sh("ip", "-n", self.mesh.switch_ns, "link", "set", f"v{self.index}", "master", "br0", "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{self.ip}/24", "dev", "eth0")
        sh("ip", "-n", self.ns, "addr", "add", f"{self.ip6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", self.ns, "link", "set", "eth0", "up")

    @contextlib.contextmanager
    def netns(self):
        """Runs the block with the calling thread inside this pod's network namespace."""
        # setns() moves only the calling thread, so other threads are unaffected. Not re-entrant.
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)
            os.close(target)

    def open_socket(self, family=socket.AF_INET):
        with self.netns():
            return socket.socket(family, socket.SOCK_STREAM)

    def connect(self, host, port, timeout=10):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = self.open_socket(family)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return s

    def listen(self, port, family=socket.AF_INET):
        s = self.open_socket(family)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        s.listen(128)
        return s

    def http(self, host, port, path, method="GET", body=b"", timeout=5):
        """A minimal HTTP/1.1 request from inside the pod; returns (status, body)."""
        s = self.connect(host, port, timeout)
        try:
            req = f"{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
            s.sendall(req.encode() + body)
            data = recv_all(s)
        finally:
            s.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), payload

    def metrics(self, port):
        """The Prometheus metrics a process in the pod serves on 127.0.0.1:port, parsed."""
        status, body = self.http("127.0.0.1", port, "/metrics")
        assert status == 200, status
        return Metrics(body.decode())

    def run(self, *cmd, uid=None, check=True, input=None, env=None):
        return sh(*self._cmd(cmd, uid, env), check=check, input=input)

    def popen(self, *cmd, uid=None, env=None, **kw):
        p = subprocess.Popen(self._cmd(cmd, uid, env), **kw)
        self.mesh._procs.append(p)
        return p

    def _cmd(self, cmd, uid, env):
        full = ["ip", "netns", "exec", self.ns]
        if uid is not None:
            full += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        if env:  # last, so LD_PRELOAD-style variables reach only the program itself
            full += ["env"] + [f"{k}={v}" for k, v in env.items()]
        return full + list(cmd)

    def init(self, *args):
        return self.run(os.path.join(BIN_DIR, "weft-init"), *args)

    def start_proxy(self, **env):
        e = {"WEFT_PROXY_IDENTITY_DISABLED": "1", "WEFT_PROXY_LOG": "info",
             "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
             "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
        e.update({k: str(v) for k, v in env.items()})
        log_path = os.path.join(self.mesh.tmp, f"{self.name}-proxy.log")
        log = open(log_path, "ab")
        proc = self.popen(os.path.join(BIN_DIR, "weft-proxy"), uid=PROXY_UID, env=e,
                          stdout=log, stderr=log)
        log.close()
        self.proxy = Proxy(self, proc, log_path, e)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"weft-proxy exited {proc.returncode}:\n{self.proxy.log()}")
            try:
                return self.proxy.admin("/ready")[0] == 200
            except OSError:
                return False
        wait_for(ready, timeout=20, what=f"proxy in {self.name} to be ready")
        return self.proxy


class Mesh:
    def __init__(self):
        self.prefix = f"weft{os.getpid() % 100000}{random.randrange(1000):03d}"
        self.switch_ns = f"{self.prefix}-sw"
        self.tmp = tempfile.mkdtemp(prefix="weft-it-")
        self._namespaces = []
        self._procs = []
        self._pods = {}
        _live_meshes.append(self)
        sh("ip", "netns", "add", self.switch_ns)
        self._namespaces.append(self.switch_ns)
        sh("ip", "-n", self.switch_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch_ns, "link", "set", "br0", "up")

    def pod(self, name, init_args=(), proxy=True, **proxy_env):
        """A pod with weft-init rules applied and a proxy running (unless proxy=False)."""
        p = Pod(self, name, len(self._pods) + 2)
        p._create()
        self._pods[name] = p
        if proxy:
            p.init(*init_args)
            p.start_proxy(**proxy_env)
        return p

    def close(self):
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in reversed(self._namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()
        if self in _live_meshes:
            _live_meshes.remove(self)


def _cleanup_all(*_):
    for m in list(_live_meshes):
        m.close()


atexit.register(_cleanup_all)
signal.signal(signal.SIGTERM, lambda *a: (_cleanup_all(), os._exit(1)))


def recv_all(s, limit=None):
    chunks, total = [], 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        total += len(b)
        if limit is not None and total >= limit:
            return b"".join(chunks)


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += b
    return bytes(buf)


class Server:
    """A TCP server in a pod, handling each connection on a thread with handler(conn)."""

    def __init__(self, pod, port, handler, family=socket.AF_INET):
        self.sock = pod.listen(port, family)
        self.handler = handler
        self.errors = []
        self.results = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(30)
            r = self.handler(conn)
            if r is not None:
                self.results.append(r)
        except Exception as e:  # recorded for the test to assert on
            self.errors.append(e)
        finally:
            conn.close()

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def digest_handler(conn):
    """Reads to EOF, then answers 'sha256 count' and closes (tests half-close client->server)."""
    h, n = hashlib.sha256(), 0
    while True:
        b = conn.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    conn.sendall(f"{h.hexdigest()} {n}\n".encode())
    return n
