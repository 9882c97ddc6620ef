"""A strict little HTTP/1.1 response reader for tests: reads exactly one response per call from a
socket (Content-Length, chunked with trailers, or to EOF), so keep-alive and pipelining can be
checked without a client library hiding the framing."""

import socket


class Response:
    def __init__(self, version, status, reason, headers, body, trailers, raw_head):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body, self.trailers, self.raw_head = headers, body, trailers, raw_head

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.headers} body={len(self.body)}B>"


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self, method="GET"):
        """The next response; 1xx responses are returned too (the caller skips them)."""
        status_line = self._line()
        raw_head = status_line + b"\r\n"
        version, status, reason = (status_line.decode("latin-1").split(" ", 2) + [""])[:3]
        status = int(status)
        headers = []
        while True:
            line = self._line()
            raw_head += line + b"\r\n"
            if not line:
                break
            k, v = line.decode("latin-1").split(":", 1)
            headers.append((k, v.strip()))
        h = {k.lower(): v for k, v in headers}
        body, trailers = b"", []
        if method == "HEAD" or status < 200 or status in (204, 304):
            pass
        elif h.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = self._line()
                        if not line:
                            break
                        k, v = line.decode("latin-1").split(":", 1)
                        trailers.append((k, v.strip()))
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        elif "content-length" in h:
            body = self._exact(int(h["content-length"]))
        else:
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            body, self.buf = self.buf, b""
        return Response(version, status, reason, headers, body, trailers, raw_head)

    def read_final(self, method="GET"):
        while True:
            r = self.read(method)
            if r.status >= 200 or r.status == 101:
                return r

    def closed(self, timeout=2.0):
        """True when the peer closes the connection (nothing more to read) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b"" and not self.buf
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
