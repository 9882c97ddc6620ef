#!/usr/bin/python3
"""A raw HTTP/1.1 origin for the proxy's tests: it sees (and can return) the exact bytes it got.

Written on sockets rather than http.server so framing is under the test's control: it keeps
connections alive, decodes chunked bodies itself, and can answer with the raw request bytes, so
a test can compare byte for byte what an application receives with and without the mesh.

Routes (path prefix):
  /raw            body = the raw request bytes received (head + body as framed on the wire)
  /echo           body = the request body (decoded), same framing style as the request
  /status/NNN     answers NNN
  /delay/MS       waits MS milliseconds, then 200
  /bytes/N        N bytes of a repeating pattern, chunked in 64 KiB pieces
  /close          answers with "connection: close" and closes
  /stream/N/MS    N chunks, MS milliseconds apart (a streaming response)
  (Upgrade)       a request with Connection: upgrade gets 101, then every read is echoed with
                  an "echo:" prefix until EOF
  anything else   200 "ok"
Every response carries "x-server: NAME". The server counts requests per path in `hits`.

Usage: http_apps.py server --port P [--name NAME]
"""
import argparse
import socket
import sys
import threading
import time


class _In:
    """A connection's read buffer: bytearray + offset, so large bodies cost linear time."""

    def __init__(self, conn):
        self.conn, self.buf, self.pos = conn, bytearray(), 0

    def _fill(self):
        data = self.conn.recv(1 << 20)
        if not data:
            raise ConnectionError("eof")
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def head(self):
        """The request head, or None at a clean EOF between requests."""
        while True:
            i = self.buf.find(b"\r\n\r\n", self.pos)
            if i >= 0:
                out = bytes(self.buf[self.pos:i + 4])
                self.pos = i + 4
                return out
            try:
                self._fill()
            except ConnectionError:
                if self.pos == len(self.buf):
                    return None
                raise

    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                out = bytes(self.buf[self.pos:i + 2])
                self.pos = i + 2
                return out
            self._fill()

    def exact(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def rest(self):
        out = bytes(self.buf[self.pos:])
        self.pos = len(self.buf)
        return out

    def chunked(self):
        raw, body = [], []
        while True:
            line = self.line()
            raw.append(line)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = self.line()
                    raw.append(line)
                    if line == b"\r\n":
                        return b"".join(raw), b"".join(body)
            data = self.exact(size + 2)
            raw.append(data)
            body.append(data[:-2])


class Origin:
    def __init__(self, port, name="origin", host="0.0.0.0", delay_ms=0):
        self.name = name
        self.delay = delay_ms / 1000.0
        self.hits = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]

    def serve_forever(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def start(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def _conn(self, conn):
        inp = _In(conn)
        try:
            while True:
                head = inp.head()
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                fields = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        fields.setdefault(k.strip().lower(), v.strip())
                raw_body = b""
                body = b""
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    raw_body, body = inp.chunked()
                elif "content-length" in fields:
                    body = inp.exact(int(fields["content-length"]))
                    raw_body = body
                path = target.split("://", 1)[-1]
                if "://" in target:
                    path = "/" + path.split("/", 1)[1] if "/" in path else "/"
                key = "/" + path.lstrip("/").split("/")[0].split("?")[0]
                with self.lock:
                    self.hits[key] = self.hits.get(key, 0) + 1
                if "upgrade" in fields and "upgrade" in fields.get("connection", "").lower():
                    # Accept any upgrade, then echo raw bytes (prefixed, so a test sees who answers).
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: %s\r\n\r\n"
                                 % fields["upgrade"].encode())
                    pending = inp.rest()
                    if pending:
                        conn.sendall(b"echo:" + pending)
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            conn.shutdown(socket.SHUT_WR)
                            return
                        conn.sendall(b"echo:" + data)
                close = (fields.get("connection", "").lower() == "close" or
                         (version == "HTTP/1.0" and fields.get("connection", "").lower() != "keep-alive"))
                status, out_body, extra, chunked = 200, b"ok\n", [], False
                if self.delay:
                    time.sleep(self.delay)
                if path.startswith("/raw"):
                    out_body = head + raw_body
                elif path.startswith("/echo"):
                    out_body = body
                    chunked = "transfer-encoding" in fields and version == "HTTP/1.1"
                elif path.startswith("/status/"):
                    status = int(path.split("/")[2])
                    out_body = b"status %d\n" % status
                elif path.startswith("/delay/"):
                    time.sleep(int(path.split("/")[2].split("?")[0]) / 1000.0)
                elif path.startswith("/bytes/"):
                    n = int(path.split("/")[2])
                    pattern = bytes(range(256)) * 256
                    out_body = (pattern * (n // len(pattern) + 1))[:n]
                    chunked = version == "HTTP/1.1"
                elif path.startswith("/close"):
                    close = True
                elif path.startswith("/stream/"):
                    # N chunks, MS ms apart: a streaming body (the proxy must not buffer it).
                    _, _, n, ms = path.split("/")[:4]
                    conn.sendall(b"HTTP/1.1 200 X\r\nx-server: %s\r\ntransfer-encoding: chunked\r\n\r\n"
                                 % self.name.encode())
                    for i in range(int(n)):
                        if i:
                            time.sleep(int(ms) / 1000.0)
                        piece = b"chunk %d at %.3f\n" % (i, time.time())
                        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    conn.sendall(b"0\r\n\r\n")
                    continue
                resp = b"%s %d X\r\nx-server: %s\r\n" % (b"HTTP/1.1", status, self.name.encode())
                for k, v in extra:
                    resp += b"%s: %s\r\n" % (k, v)
                if close:
                    resp += b"connection: close\r\n"
                if method == "HEAD":
                    resp += b"content-length: %d\r\n\r\n" % len(out_body)
                    conn.sendall(resp)
                elif chunked:
                    resp += b"transfer-encoding: chunked\r\n\r\n"
                    conn.sendall(resp)
                    for i in range(0, len(out_body), 65536):
                        piece = out_body[i:i + 65536]
                        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    conn.sendall(b"0\r\nx-trailer: done\r\n\r\n")
                else:
                    resp += b"content-length: %d\r\n\r\n" % len(out_body)
                    conn.sendall(resp + out_body)
                if close:
                    conn.shutdown(socket.SHUT_WR)
                    return
        except (ConnectionError, OSError, ValueError):
            return
        finally:
            conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--name", default="origin")
    s.add_argument("--host", default="0.0.0.0")
    args = ap.parse_args()
    origin = Origin(args.port, args.name, args.host)
    print("listening", origin.port, flush=True)
    origin.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
