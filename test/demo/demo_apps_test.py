"""The demo application (demo/) on loopback, without the mesh: weft-demo-books, -authors, -web,
-traffic and a real redis-server, started with flags, driven over HTTP.

Run by ctest, which sets WEFT_BIN_DIR to the build's bin/ directory; by hand:
  WEFT_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v demo_apps_test.py
"""

import http.client
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BIN_DIR = os.environ.get("WEFT_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
SERVING = re.compile(r"serving \S+ on [0-9.]+:(\d+)")
SUMMARY = re.compile(
    r"last \d+s: (\d+) requests .*: (\d+) 2xx, (\d+) 404, (\d+) other 4xx, (\d+) 5xx, (\d+) errors")


def bin_path(name):
    return os.path.join(BIN_DIR, name)


def free_port():
    # Only for redis-server, which cannot report a port it chose itself (--port 0 disables TCP).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class DemoAppsTest(unittest.TestCase):
    def setUp(self):
        for b in ("weft-demo-books", "weft-demo-authors", "weft-demo-web", "weft-demo-traffic"):
            if not os.access(bin_path(b), os.X_OK):
                self.fail(f"{bin_path(b)} is missing: build the `weft-demo-apps` target first")
        self._dir = tempfile.TemporaryDirectory(prefix="weft-demo-test-")
        self.addCleanup(self._dir.cleanup)
        self.procs = []

    def tearDown(self):
        # Every app must exit 0, promptly, on SIGTERM (the pods are stopped that way).
        for proc, name, check in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.fail(f"{name} ignored SIGTERM for 10 s")
            finally:
                proc.stdout.close()
            if check:
                self.assertEqual(rc, 0, f"{name} exited {rc} on SIGTERM")

    # --- helpers ---------------------------------------------------------------------------------

    def spawn(self, args, name, check_exit=True):
        log = open(os.path.join(self._dir.name, name + ".log"), "w+")
        self.addCleanup(log.close)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        self.procs.append((proc, name, check_exit))
        return proc

    def read_line(self, proc, pattern, timeout=10.0):
        """The first stdout line of `proc` matching `pattern` (a compiled regex), as a match."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = pattern.search(line)
            if m:
                return m
        self.fail(f"no line matching {pattern.pattern!r}; got {seen!r}")

    def start_server(self, binary, *args):
        proc = self.spawn([bin_path(binary), "--listen", "127.0.0.1", "--port", "0", *args], binary)
        return int(self.read_line(proc, SERVING).group(1))

    def start_redis(self):
        if not os.access(REDIS, os.X_OK):
            self.skipTest("redis-server is not installed (scripts/setup installs it)")
        port = free_port()
        proc = self.spawn([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--protected-mode", "no"], "redis-server",
                          check_exit=False)
        self.redis_port = port

        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, what="redis-server")
        return port

    def start_app(self, books_fail=0.0, authors_fail=0.0, authors_latency=0.0, redis=True,
                  cache_ttl=10, extra=()):
        books = self.start_server("weft-demo-books", "--fail-rate", str(books_fail))
        authors = self.start_server("weft-demo-authors", "--fail-rate", str(authors_fail),
                                    "--latency-ms", str(authors_latency))
        self.books_port, self.authors_port = books, authors
        redis_addr = f"127.0.0.1:{self.start_redis()}" if redis else ""
        web = self.start_server("weft-demo-web", "--books", f"127.0.0.1:{books}",
                                "--authors", f"127.0.0.1:{authors}", "--redis", redis_addr,
                                "--cache-ttl", str(cache_ttl), *extra)
        self.web_port = web
        return web

    def get(self, path, method="GET", conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=10)
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode()
        if conn is None:
            c.close()
        return r.status, body

    def redis_get(self, port, key):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
            data = s.recv(65536)
        return None if data.startswith(b"$-1") else data

    # --- tests -----------------------------------------------------------------------------------

    def test_every_binary_explains_itself(self):
        for b in ("weft-demo-books", "weft-demo-authors", "weft-demo-web", "weft-demo-traffic"):
            out = subprocess.run([bin_path(b), "--help"], capture_output=True, text=True, timeout=10)
            self.assertEqual(out.returncode, 0, b)
            self.assertIn(b, out.stdout)
            self.assertIn("--help", out.stdout)
            self.assertIn("SIGTERM", out.stdout)

    def test_routes_answer_200_and_404(self):
        self.start_app()
        status, body = self.get("/")
        self.assertEqual(status, 200)
        self.assertIn("Pride and Prejudice", body)
        self.assertIn('href="/books/12"', body)
        status, body = self.get("/books/4")
        self.assertEqual(status, 200)
        self.assertIn("Middlemarch", body)
        self.assertIn("George Eliot", body)
        status, body = self.get("/authors/3")
        self.assertEqual(status, 200)
        self.assertIn("Moby-Dick", body)
        self.assertNotIn("Emma", body)
        for path in ("/books/13", "/books/0", "/books/x", "/authors/6", "/nope", "/books/1/2"):
            self.assertEqual(self.get(path)[0], 404, path)
        self.assertEqual(self.get("/healthz")[0], 200)
        self.assertEqual(self.get("/", method="POST")[0], 405)

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        self.start_app()
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=10)
        self.addCleanup(conn.close)
        for i in range(1, 13):
            self.assertEqual(self.get(f"/books/{i}", conn=conn)[0], 200)
        self.assertEqual(self.get("/books/99", conn=conn)[0], 404)
        self.assertEqual(self.get("/", conn=conn)[0], 200)

    def test_caches_in_redis_and_serves_from_the_cache_when_books_is_down(self):
        self.start_app(cache_ttl=60)
        redis_port = self.redis_port
        self.assertEqual(self.get("/books/7")[0], 200)
        self.assertIsNotNone(self.redis_get(redis_port, "book:7"))
        self.assertIsNotNone(self.redis_get(redis_port, "author:3"))
        books = next(p for p, name, _ in self.procs if name == "weft-demo-books")
        books.send_signal(signal.SIGTERM)
        self.assertEqual(books.wait(timeout=10), 0)
        status, body = self.get("/books/7")
        self.assertEqual(status, 200)
        self.assertIn("Herman Melville", body)
        # Not cached: books is needed, and is gone.
        self.assertEqual(self.get("/books/8")[0], 500)

    def test_backend_failure_is_500(self):
        books = self.start_server("weft-demo-books")
        closed = free_port()
        self.web_port = self.start_server(
            "weft-demo-web", "--books", f"127.0.0.1:{books}", "--authors", f"127.0.0.1:{closed}",
            "--redis", "", "--timeout-ms", "500")
        self.assertEqual(self.get("/")[0], 200)  # books alone
        status, body = self.get("/books/1")
        self.assertEqual(status, 500)
        self.assertIn("authors.GetAuthor", body)

    def test_redis_failure_is_a_cache_miss(self):
        books = self.start_server("weft-demo-books")
        authors = self.start_server("weft-demo-authors")
        self.web_port = self.start_server(
            "weft-demo-web", "--books", f"127.0.0.1:{books}", "--authors", f"127.0.0.1:{authors}",
            "--redis", f"127.0.0.1:{free_port()}")
        for _ in range(3):
            self.assertEqual(self.get("/books/2")[0], 200)

    def test_failures_occur_at_about_the_configured_rate(self):
        # GetBook fails 30% of the time; GetAuthor never; no cache, so every request calls books.
        self.start_app(books_fail=0.3, redis=False, cache_ttl=0)
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=10)
        self.addCleanup(conn.close)
        statuses = [self.get(f"/books/{1 + i % 12}", conn=conn)[0] for i in range(400)]
        self.assertEqual(set(statuses) - {200, 500}, set())
        rate = statuses.count(500) / len(statuses)
        # Binomial(400, 0.3): sd 0.023, so this band is about 5 sd wide on each side.
        self.assertGreater(rate, 0.18)
        self.assertLess(rate, 0.42)

    def test_no_failures_at_rate_zero(self):
        self.start_app(redis=False, cache_ttl=0)
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=10)
        self.addCleanup(conn.close)
        statuses = [self.get(f"/authors/{1 + i % 5}", conn=conn)[0] for i in range(100)]
        self.assertEqual(statuses, [200] * 100)

    def test_latency_is_added(self):
        self.start_app(authors_latency=60, redis=False, cache_ttl=0)
        started = time.monotonic()
        for i in range(5):
            self.assertEqual(self.get(f"/authors/{1 + i}")[0], 200)
        # 5 calls, each at least 30 ms (60 ms jittered by +-50%).
        self.assertGreater(time.monotonic() - started, 0.15)

    def test_traffic_reports_successes_404s_and_failures(self):
        self.start_app(books_fail=0.2, cache_ttl=0)
        traffic = self.spawn([bin_path("weft-demo-traffic"), "--target",
                              f"http://127.0.0.1:{self.web_port}", "--rate", "100",
                              "--summary-interval", "1"], "weft-demo-traffic")
        totals = [0] * 6
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (totals[1] and totals[2] and totals[4]):
            m = self.read_line(traffic, SUMMARY, timeout=5)
            totals = [t + int(v) for t, v in zip(totals, m.groups())]
        sent, ok, not_found, other_4xx, server_errors, errors = totals
        self.assertGreater(ok, 0)
        self.assertGreater(not_found, 0)
        self.assertGreater(server_errors, 0)
        self.assertEqual(other_4xx, 0)
        self.assertEqual(errors, 0)
        self.assertGreater(sent, 0)


if __name__ == "__main__":
    unittest.main()
