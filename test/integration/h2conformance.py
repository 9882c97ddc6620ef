"""An HTTP/2 server conformance suite of our own (RFC 9113, RFC 7541), driving raw frames over plain
TCP with prior knowledge (h2c, RFC 9113 section 3.3).

    run_suite(host, port, authority) -> [(case_name, passed, detail), ...]
    /usr/bin/python3 h2conformance.py HOST PORT [--authority A] [--only SUBSTR] [--case-timeout S]

The server under test must answer any request (GET / or POST with a body) with a 2xx; with
echo=True (the default) a POST's response body must equal its request body (the proxy in front of
an echoing origin, or `nghttpd --no-tls --echo-upload`).

Every case runs on its own thread with a deadline: a hung server fails the case, never the suite.
After every case a *new* connection must still get a 2xx (the server survived), else the case fails.

Where the RFC allows alternatives the case accepts the whole allowed set and says so:
  * a stream error may always be escalated to a connection error (RFC 9113 section 5.4);
  * an endpoint SHOULD (not MUST) send GOAWAY before closing on a connection error (section 5.4.1),
    so a bare close (FIN or RST) counts as a connection error too, and a GOAWAY may be lost to a
    TCP reset when the server closes with unread input;
  * for a malformed request a server MAY send an HTTP response (4xx) instead of, or before,
    resetting the stream (section 8.1.1).

Calibrated against nghttpd (nghttp2 1.52.0, Debian 12) with `nghttpd --no-tls --echo-upload -d DIR`:
it passes every case except those in NGHTTPD_LENIENT below, each re-checked against the RFC.
"""

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Settings identifiers (section 6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)

# Error codes (section 7).
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
          "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
          "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
(NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR,
 REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM) = range(12)
MAX_WINDOW = 2 ** 31 - 1

# Cases nghttpd (nghttp2 1.52.0-1+deb12u3) fails, re-checked against the RFC: in each the case follows
# the RFC and nghttp2 is lenient. A server built on nghttp2 inherits these unless it checks for itself,
# so callers may report them separately from real regressions.
NGHTTPD_LENIENT = {
    "stream_id_decreasing": "RFC 9113 5.1.1 says connection error PROTOCOL_ERROR; nghttp2 silently ignores "
                            "HEADERS whose stream id is below the last one it saw (it does not remember every "
                            "closed stream, see session_on_request_headers_received in nghttp2_session.c)",
    "settings_initial_window_overflow": "RFC 9113 6.9.2 says connection error FLOW_CONTROL_ERROR; nghttp2 resets "
                                        "only the overflowing stream with RST_STREAM(FLOW_CONTROL_ERROR)",
}


def err_name(code):
    return ERRORS[code] if 0 <= code < len(ERRORS) else f"0x{code:x}"


def raw_frame(ftype, flags, sid, payload=b""):
    """Any frame, valid or not, byte for byte (section 4.1)."""
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings_frame(pairs, flags=0):
    return raw_frame(SETTINGS, flags, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(sid, inc):
    return raw_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def rst_stream(sid, code):
    return raw_frame(RST_STREAM, 0, sid, struct.pack(">I", code))


class Closed(Exception):
    pass


class Conn:
    """One h2c client connection with just enough state to judge a server: decoded responses per
    stream, RST_STREAM and GOAWAY seen, both directions' flow-control windows, automatic SETTINGS
    and PING acknowledgement and (unless auto_window=False) automatic WINDOW_UPDATE for DATA read."""

    def __init__(self, suite, settings=((ENABLE_PUSH, 0),), preface=True, rcvbuf=None, auto_window=True,
                 connection_window_bump=0):
        self.suite = suite
        s = socket.socket(socket.AF_INET6 if ":" in suite.host else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(5)
        suite.track(s)
        s.connect((suite.host, suite.port))
        self.sock = s
        self.enc, self.dec = hpack.Encoder(), hpack.Decoder()
        self.buf = bytearray()
        self.closed = False
        self.close_reason = ""
        self.goaway = None  # (last_stream_id, error_code, debug)
        self.rst = {}
        self.streams = {}
        self.frames = []  # (type, flags, sid, length) of everything received, in order
        self.server_settings = None
        self.settings_acks = 0
        self.ping_acks = []
        self.auto_window = auto_window
        self.peer_max_frame = 16384
        self.peer_initial_window = 65535
        self.send_conn_window = 65535
        self.send_windows = {}
        self.my_initial_window = dict(settings).get(INITIAL_WINDOW_SIZE, 65535)
        self.recv_conn_granted = 65535 + connection_window_bump
        self.recv_conn_total = 0
        self.recv_granted = {}
        self.flow_violations = []
        self.malformed_from_server = []
        self._hdr_sid, self._hdr_block, self._hdr_end_stream = None, b"", False
        if preface:
            self.send(PREFACE + settings_frame(settings)
                      + (window_update(0, connection_window_bump) if connection_window_bump else b""))

    # --- sending ------------------------------------------------------------------------------

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            self._closed(repr(e))
            raise Closed(repr(e))

    def encode(self, headers):
        return self.enc.encode(headers)

    def headers(self, sid, headers, end_stream=True, block=None):
        """HEADERS (+ CONTINUATION as needed) for sid; headers sent verbatim (no lower-casing)."""
        block = self.encode(headers) if block is None else block
        n = self.peer_max_frame
        chunks = [block[i:i + n] for i in range(0, len(block), n)] or [b""]
        out = b""
        for i, c in enumerate(chunks):
            last = i == len(chunks) - 1
            if i == 0:
                out += raw_frame(HEADERS, (END_STREAM if end_stream else 0) | (END_HEADERS if last else 0), sid, c)
            else:
                out += raw_frame(CONTINUATION, END_HEADERS if last else 0, sid, c)
        self.send_windows.setdefault(sid, self.peer_initial_window)
        self.recv_granted.setdefault(sid, self.my_initial_window)
        self.send(out)

    def request(self, sid, method="GET", path="/", extra=(), end_stream=None):
        h = [(":method", method), (":scheme", "http"), (":path", path), (":authority", self.suite.authority)]
        self.headers(sid, h + list(extra), end_stream=(method == "GET") if end_stream is None else end_stream)

    def body(self, sid, data, end_stream=True, timeout=20):
        """DATA within the server's flow-control windows, waiting for WINDOW_UPDATE as needed."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while True:
            avail = min(self.send_conn_window, self.send_windows.get(sid, 0), self.peer_max_frame, len(view))
            if avail <= 0 and len(view) > 0:
                if sid in self.rst or self.goaway or self.closed:
                    raise Closed(f"stream ended while sending body: rst={self.rst.get(sid)} goaway={self.goaway}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server never opened its window (conn {self.send_conn_window}, "
                                       f"stream {self.send_windows.get(sid)}, {len(view)} bytes left)")
                self.read_some(min(0.5, max(0.01, deadline - time.monotonic())))
                continue
            last = avail == len(view)
            self.send(raw_frame(DATA, END_STREAM if (last and end_stream) else 0, sid, bytes(view[:avail])))
            self.send_conn_window -= avail
            self.send_windows[sid] -= avail
            view = view[avail:]
            if last:
                return
            self.read_some(0)  # pick up WINDOW_UPDATEs without blocking

    # --- receiving ----------------------------------------------------------------------------

    def _closed(self, why):
        if not self.closed:
            self.closed, self.close_reason = True, why

    def read_some(self, timeout):
        """Reads and handles what arrives within timeout (0: only what is already there)."""
        if self.closed:
            return
        self.sock.settimeout(timeout if timeout > 0 else 0.0)
        try:
            b = self.sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError):
            return
        except (ConnectionResetError, BrokenPipeError) as e:
            self._closed(repr(e))
            return
        finally:
            if not self.closed:
                self.sock.settimeout(5)
        if not b:
            self._closed("EOF")
            return
        self.buf += b
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            head, payload = bytes(self.buf[:9]), bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            self._handle(head, payload)

    def _handle(self, head, payload):
        ftype, flags, sid = head[3], head[4], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
        self.frames.append((ftype, flags, sid, len(payload)))
        try:
            frame, _ = Frame.parse_frame_header(memoryview(head))
            frame.parse_body(memoryview(payload))
        except Exception as e:  # the server sent something invalid: remember it, judge it later
            self.malformed_from_server.append(f"type {ftype} on {sid}: {e!r}")
            return
        if isinstance(frame, SettingsFrame):
            if "ACK" in frame.flags:
                self.settings_acks += 1
            else:
                if self.server_settings is None:
                    self.server_settings = {}
                self.server_settings.update(frame.settings)
                if MAX_FRAME_SIZE in frame.settings:
                    self.peer_max_frame = frame.settings[MAX_FRAME_SIZE]
                if INITIAL_WINDOW_SIZE in frame.settings:
                    delta = frame.settings[INITIAL_WINDOW_SIZE] - self.peer_initial_window
                    self.peer_initial_window = frame.settings[INITIAL_WINDOW_SIZE]
                    for k in self.send_windows:
                        self.send_windows[k] += delta
                self._try_send(settings_frame([], ACK))
        elif isinstance(frame, PingFrame):
            if "ACK" in frame.flags:
                self.ping_acks.append(bytes(frame.opaque_data))
            else:
                self._try_send(raw_frame(PING, ACK, 0, bytes(frame.opaque_data)))
        elif isinstance(frame, GoAwayFrame):
            self.goaway = (frame.last_stream_id, frame.error_code, bytes(frame.additional_data))
        elif isinstance(frame, RstStreamFrame):
            self.rst[sid] = frame.error_code
        elif isinstance(frame, WindowUpdateFrame):
            if sid == 0:
                self.send_conn_window += frame.window_increment
            else:
                self.send_windows[sid] = self.send_windows.get(sid, self.peer_initial_window) + frame.window_increment
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self._hdr_sid, self._hdr_block, self._hdr_end_stream = sid, b"", "END_STREAM" in frame.flags
            self._hdr_block += bytes(frame.data)
            if "END_HEADERS" in frame.flags:
                st = self.stream(self._hdr_sid)
                try:
                    hs = [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                          for k, v in self.dec.decode(self._hdr_block, raw=True)]
                except Exception as e:
                    self.malformed_from_server.append(f"HPACK from server on {sid}: {e!r}")
                    hs = []
                st["headers"].append(hs)
                for k, v in hs:
                    if k == ":status" and st["status"] is None:
                        st["status"] = int(v)
                    elif k == ":status" and 100 <= st["status"] < 200:
                        st["status"] = int(v)
                if self._hdr_end_stream:
                    st["ended"] = True
        elif isinstance(frame, DataFrame):
            st = self.stream(sid)
            st["data"] += bytes(frame.data)
            fc = frame.flow_controlled_length
            self.recv_conn_total += fc
            st["recv"] += fc
            if st["recv"] > self.recv_granted.get(sid, self.my_initial_window):
                self.flow_violations.append(f"stream {sid}: {st['recv']} bytes > window {self.recv_granted.get(sid)}")
            if self.recv_conn_total > self.recv_conn_granted:
                self.flow_violations.append(f"connection: {self.recv_conn_total} > window {self.recv_conn_granted}")
            if "END_STREAM" in frame.flags:
                st["ended"] = True
            if self.auto_window and fc:
                out = window_update(0, fc)
                self.recv_conn_granted += fc
                if not st["ended"]:
                    out += window_update(sid, fc)
                    self.recv_granted[sid] = self.recv_granted.get(sid, self.my_initial_window) + fc
                self._try_send(out)

    def grant(self, sid, inc, conn_inc=None):
        out = b""
        if conn_inc:
            out += window_update(0, conn_inc)
            self.recv_conn_granted += conn_inc
        if inc:
            out += window_update(sid, inc)
            self.recv_granted[sid] = self.recv_granted.get(sid, self.my_initial_window) + inc
        self.send(out)

    def _try_send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def stream(self, sid):
        return self.streams.setdefault(sid, {"headers": [], "status": None, "data": bytearray(), "ended": False,
                                             "recv": 0})

    def wait(self, pred, timeout):
        """Reads until pred() holds, the connection closes, or timeout; returns pred()."""
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if self.closed or left <= 0:
                break
            self.read_some(min(left, 0.5))
        return bool(pred())

    def ready(self, timeout=5):
        """Waits for the server's SETTINGS (its connection preface, section 3.4)."""
        if not self.wait(lambda: self.server_settings is not None, timeout):
            raise AssertionError(f"no server SETTINGS within {timeout}s (closed={self.closed} {self.close_reason})")
        return self

    def response_done(self, sid):
        st = self.streams.get(sid)
        return bool(st and st["ended"]) or sid in self.rst or self.goaway is not None or self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # --- verdicts -----------------------------------------------------------------------------

    def describe(self):
        bits = []
        if self.goaway:
            bits.append(f"GOAWAY({err_name(self.goaway[1])}, last={self.goaway[0]}, {self.goaway[2][:60]!r})")
        for sid, code in self.rst.items():
            bits.append(f"RST_STREAM({sid}, {err_name(code)})")
        for sid, st in self.streams.items():
            if st["status"] is not None:
                bits.append(f"status {st['status']} on {sid}{' (ended)' if st['ended'] else ''}")
        if self.closed:
            bits.append(f"closed ({self.close_reason})")
        if self.malformed_from_server:
            bits.append(f"server sent malformed frames: {self.malformed_from_server[:3]}")
        return ", ".join(bits) or "nothing"

    def expect_connection_error(self, codes, timeout=5):
        """Connection error (section 5.4.1): GOAWAY with one of codes then close, or a bare close."""
        codes = set(codes)
        self.wait(lambda: self.closed or (self.goaway and self.goaway[1] != NO_ERROR), timeout)
        if self.goaway and self.goaway[1] != NO_ERROR:
            if self.goaway[1] not in codes:
                return False, f"wrong code, want {sorted(err_name(c) for c in codes)}: {self.describe()}"
            if not self.wait(lambda: self.closed, 3):
                return False, f"GOAWAY but the connection stayed open (5.4.1 MUST close): {self.describe()}"
            return True, self.describe()
        if self.closed:
            return True, f"{self.describe()} without GOAWAY (allowed: GOAWAY is a SHOULD)"
        return False, f"no connection error within {timeout}s: {self.describe()}"

    def expect_stream_error(self, sid, codes, allow_4xx=False, timeout=5, response_expected=False):
        """Stream error (section 5.4.2) with one of codes, or the same code as a connection error
        (section 5.4), or a bare close; with allow_4xx a 4xx response (section 8.1.1) also passes.
        With response_expected the request itself was valid, so a response is not judged at all."""
        codes = set(codes)

        def answered():
            st = self.streams.get(sid)
            return not response_expected and st is not None and st["status"] is not None and st["status"] >= 200

        def decided():
            return sid in self.rst or self.closed or (self.goaway and self.goaway[1] != NO_ERROR) or answered()
        self.wait(decided, timeout)
        st = self.streams.get(sid)
        if answered():
            if allow_4xx and 400 <= st["status"] < 500:
                return True, self.describe()
            return False, f"malformed request answered with a response: {self.describe()}"
        if sid in self.rst:
            ok = self.rst[sid] in codes
            return ok, (self.describe() if ok else f"want {sorted(err_name(c) for c in codes)}: {self.describe()}")
        if self.goaway and self.goaway[1] != NO_ERROR:
            ok = self.goaway[1] in codes
            return ok, (self.describe() + " (stream error escalated to connection error: allowed by 5.4)" if ok
                        else f"want {sorted(err_name(c) for c in codes)}: {self.describe()}")
        if self.closed:
            return True, f"{self.describe()} (bare close: allowed, connection error without GOAWAY)"
        return False, f"no error within {timeout}s: {self.describe()}"


class Suite:
    def __init__(self, host, port, authority, echo=True, case_timeout=30):
        self.host, self.port, self.authority, self.echo, self.case_timeout = host, port, authority, echo, case_timeout
        self._socks = []
        self._lock = threading.Lock()

    def track(self, s):
        with self._lock:
            self._socks.append(s)

    def close_all(self):
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def conn(self, **kw):
        return Conn(self, **kw).ready()

    def alive(self, timeout=5):
        """A new connection gets a 2xx for GET / (the server survived). Retries briefly."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            c = None
            try:
                c = Conn(self).ready(max(0.5, deadline - time.monotonic()))
                c.request(1)
                c.wait(lambda: c.response_done(1), max(0.5, deadline - time.monotonic()))
                st = c.streams.get(1)
                if st and st["ended"] and st["status"] and 200 <= st["status"] < 300:
                    return True, ""
                last = c.describe()
            except (OSError, AssertionError, Closed) as e:
                last = repr(e)
            finally:
                if c:
                    c.close()
            time.sleep(0.2)
        return False, last


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def first_line(doc):
    return " ".join((doc or "").strip().split())


# ----------------------------------------------------------------------------------------------
# Connection preface and SETTINGS
# ----------------------------------------------------------------------------------------------

@case
def preface_invalid(t):
    """RFC 9113 3.4: an invalid connection preface MUST be a connection error PROTOCOL_ERROR.
    Accepted: GOAWAY(PROTOCOL_ERROR) then close, a bare close, or - for a server that also speaks
    HTTP/1.1 on the port and so reads the bad preface as an HTTP/1.x request line "PRI * HTTP/2.0" -
    an HTTP/1.x error response (never a 2xx) then close."""
    c = Conn(t, preface=False)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame([]))
    c.wait(lambda: c.closed or c.goaway or c.buf.startswith(b"HTTP/1"), 5)
    if c.buf.startswith(b"HTTP/1"):
        status = c.buf.split(b" ", 2)[1]
        ok = not status.startswith(b"2") and c.wait(lambda: c.closed, 5)
        c.buf.clear()
        return ok, f"HTTP/1.x answer {status!r}, closed={c.closed}"
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def settings_exchange_and_ack(t):
    """RFC 9113 3.4 + 6.5.3: the server's first frame is a SETTINGS frame (its preface), and it
    acknowledges the client's SETTINGS with an empty SETTINGS ACK."""
    c = Conn(t, settings=[(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 70000), (MAX_HEADER_LIST_SIZE, 1 << 20)])
    c.wait(lambda: c.server_settings is not None and c.settings_acks >= 1, 5)
    if not c.frames or c.frames[0][0] != SETTINGS or c.frames[0][1] & ACK:
        return False, f"first frame was {c.frames[:1]} not a SETTINGS"
    if c.settings_acks < 1:
        return False, f"no SETTINGS ACK: {c.describe()}"
    acks = [f for f in c.frames if f[0] == SETTINGS and f[1] & ACK]
    if any(f[3] != 0 for f in acks):
        return False, f"SETTINGS ACK with a payload: {acks}"
    return True, f"server settings {c.server_settings}"


@case
def settings_enable_push_2(t):
    """RFC 9113 6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1 MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.send(settings_frame([(ENABLE_PUSH, 2)]))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def settings_initial_window_too_large(t):
    """RFC 9113 6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 MUST be a connection error FLOW_CONTROL_ERROR."""
    c = t.conn()
    c.send(settings_frame([(INITIAL_WINDOW_SIZE, 2 ** 31)]))
    return c.expect_connection_error({FLOW_CONTROL_ERROR})


@case
def settings_max_frame_size_too_small(t):
    """RFC 9113 6.5.2: SETTINGS_MAX_FRAME_SIZE below 16384 MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.send(settings_frame([(MAX_FRAME_SIZE, 16383)]))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def settings_max_frame_size_too_large(t):
    """RFC 9113 6.5.2: SETTINGS_MAX_FRAME_SIZE above 2^24-1 MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.send(settings_frame([(MAX_FRAME_SIZE, 1 << 24)]))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def settings_length_not_multiple_of_6(t):
    """RFC 9113 6.5: a SETTINGS frame whose length is not a multiple of 6 MUST be a connection error
    FRAME_SIZE_ERROR."""
    c = t.conn()
    c.send(raw_frame(SETTINGS, 0, 0, struct.pack(">HI", MAX_CONCURRENT_STREAMS, 100) + b"\x00\x00\x00"))
    return c.expect_connection_error({FRAME_SIZE_ERROR})


@case
def settings_ack_with_payload(t):
    """RFC 9113 6.5: a SETTINGS ACK with a non-empty payload MUST be a connection error FRAME_SIZE_ERROR."""
    c = t.conn()
    c.send(raw_frame(SETTINGS, ACK, 0, struct.pack(">HI", MAX_CONCURRENT_STREAMS, 100)))
    return c.expect_connection_error({FRAME_SIZE_ERROR})


@case
def settings_on_stream(t):
    """RFC 9113 6.5: a SETTINGS frame with a stream identifier other than 0 MUST be a connection error
    PROTOCOL_ERROR."""
    c = t.conn()
    c.send(raw_frame(SETTINGS, 0, 1, b""))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def settings_unknown_identifier_ignored(t):
    """RFC 9113 6.5.2: an unknown or unsupported setting MUST be ignored (the request still succeeds)."""
    c = t.conn()
    c.send(settings_frame([(0x7A7A, 12345)]))
    c.request(1)
    c.wait(lambda: c.response_done(1), 5)
    st = c.streams.get(1)
    return bool(st and st["ended"] and 200 <= (st["status"] or 0) < 300), c.describe()


@case
def unknown_frame_type_ignored(t):
    """RFC 9113 4.1 / 5.5: frames of unknown types MUST be ignored and discarded, also on streams."""
    c = t.conn()
    c.send(raw_frame(0xFA, 0xFF, 0, b"ignore me") + raw_frame(0xFB, 0, 7, b"and me"))
    c.request(1)
    c.wait(lambda: c.response_done(1), 5)
    st = c.streams.get(1)
    return bool(st and st["ended"] and 200 <= (st["status"] or 0) < 300 and not c.goaway), c.describe()


# ----------------------------------------------------------------------------------------------
# Frame size
# ----------------------------------------------------------------------------------------------

@case
def frame_too_large_headers(t):
    """RFC 9113 4.2: a frame exceeding SETTINGS_MAX_FRAME_SIZE MUST get FRAME_SIZE_ERROR; for a frame
    carrying a field block (HEADERS) it MUST be a connection error."""
    c = t.conn()
    c.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x00" * (c.peer_max_frame + 1)))
    return c.expect_connection_error({FRAME_SIZE_ERROR})


@case
def frame_too_large_data(t):
    """RFC 9113 4.2: a DATA frame exceeding SETTINGS_MAX_FRAME_SIZE on an open stream MUST get
    FRAME_SIZE_ERROR, as a stream error (RST_STREAM) or a connection error: both accepted."""
    c = t.conn()
    c.request(1, "POST")
    n = c.peer_max_frame + 1
    c.send(raw_frame(DATA, END_STREAM, 1, b"x" * n))
    return c.expect_stream_error(1, {FRAME_SIZE_ERROR})


@case
def frame_too_large_settings(t):
    """RFC 9113 4.2: an oversized frame on stream 0 (SETTINGS) MUST be a connection error FRAME_SIZE_ERROR."""
    c = t.conn()
    n = (c.peer_max_frame // 6 + 1) * 6
    c.send(raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 0x7A7A, 0) * (n // 6)))
    return c.expect_connection_error({FRAME_SIZE_ERROR})


# ----------------------------------------------------------------------------------------------
# Stream identifiers and states
# ----------------------------------------------------------------------------------------------

@case
def data_on_stream_0(t):
    """RFC 9113 6.1: a DATA frame on stream 0 MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.send(raw_frame(DATA, 0, 0, b"hello"))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def headers_on_stream_0(t):
    """RFC 9113 6.2: a HEADERS frame on stream 0 MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    block = c.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", t.authority)])
    c.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 0, block))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def even_stream_id_from_client(t):
    """RFC 9113 5.1.1: a client-initiated stream MUST use an odd identifier; an unexpected stream
    identifier MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.request(2)
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def stream_id_decreasing(t):
    """RFC 9113 5.1.1: a new stream's identifier MUST be greater than all the peer has opened; HEADERS
    on 5 then on 3 (3 was implicitly closed) MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.request(5)
    c.wait(lambda: c.response_done(5), 5)
    c.request(3)
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def data_on_idle_stream(t):
    """RFC 9113 5.1 (idle): any frame other than HEADERS/PRIORITY on an idle stream MUST be a connection
    error PROTOCOL_ERROR. 6.1 also says DATA outside open/half-closed(local) is a stream error
    STREAM_CLOSED, so STREAM_CLOSED (as RST_STREAM or GOAWAY) is accepted too."""
    c = t.conn()
    c.send(raw_frame(DATA, END_STREAM, 1, b"hello"))
    return c.expect_stream_error(1, {PROTOCOL_ERROR, STREAM_CLOSED})


@case
def rst_stream_on_idle_stream(t):
    """RFC 9113 6.4: RST_STREAM on an idle stream MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.send(rst_stream(1, CANCEL))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def rst_stream_wrong_length(t):
    """RFC 9113 6.4: a RST_STREAM frame with a length other than 4 MUST be a connection error FRAME_SIZE_ERROR."""
    c = t.conn()
    c.request(1, "POST")
    c.send(raw_frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08\x00"))
    return c.expect_connection_error({FRAME_SIZE_ERROR})


@case
def data_after_end_stream(t):
    """RFC 9113 5.1 (half-closed (remote)): frames other than WINDOW_UPDATE, PRIORITY, RST_STREAM MUST
    be a stream error STREAM_CLOSED. The client's INITIAL_WINDOW_SIZE is 0 so the server cannot finish
    its response and the stream stays half-closed (remote) on its side. If the server did close the
    stream, 5.1 (closed) makes it a connection error STREAM_CLOSED: both accepted."""
    c = t.conn(settings=[(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 0)])
    c.request(1, "POST", end_stream=False)
    c.body(1, b"request body", end_stream=True)
    c.wait(lambda: c.stream(1)["status"] is not None, 1)
    c.send(raw_frame(DATA, 0, 1, b"too late"))
    return c.expect_stream_error(1, {STREAM_CLOSED}, response_expected=True)


@case
def headers_after_end_stream(t):
    """RFC 9113 5.1 (half-closed (remote)): a second HEADERS (not a valid trailer: the stream already
    ended) MUST be a stream error STREAM_CLOSED (connection error accepted, see data_after_end_stream)."""
    c = t.conn(settings=[(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 0)])
    c.request(1, "POST", end_stream=False)
    c.body(1, b"request body", end_stream=True)
    c.wait(lambda: c.stream(1)["status"] is not None, 1)
    c.headers(1, [("x-trailer", "late")], end_stream=True)
    return c.expect_stream_error(1, {STREAM_CLOSED}, response_expected=True)


# ----------------------------------------------------------------------------------------------
# WINDOW_UPDATE and flow control
# ----------------------------------------------------------------------------------------------

@case
def window_update_zero_on_stream(t):
    """RFC 9113 6.9: a WINDOW_UPDATE with increment 0 on a stream MUST be a stream error
    PROTOCOL_ERROR (RST_STREAM); a connection error PROTOCOL_ERROR is accepted (5.4)."""
    c = t.conn()
    c.request(1, "POST", end_stream=False)  # open: the body never comes
    c.send(window_update(1, 0))
    return c.expect_stream_error(1, {PROTOCOL_ERROR})


@case
def window_update_zero_on_connection(t):
    """RFC 9113 6.9: a WINDOW_UPDATE with increment 0 on stream 0 MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.send(window_update(0, 0))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def window_update_wrong_length(t):
    """RFC 9113 6.9: a WINDOW_UPDATE with a length other than 4 MUST be a connection error FRAME_SIZE_ERROR."""
    c = t.conn()
    c.send(raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01\x00\x00"))
    return c.expect_connection_error({FRAME_SIZE_ERROR})


@case
def window_overflow_connection(t):
    """RFC 9113 6.9.1: a WINDOW_UPDATE making the connection window exceed 2^31-1 MUST be a connection
    error FLOW_CONTROL_ERROR (65535 + 2^31-1)."""
    c = t.conn()
    c.send(window_update(0, MAX_WINDOW))
    return c.expect_connection_error({FLOW_CONTROL_ERROR})


@case
def window_overflow_stream(t):
    """RFC 9113 6.9.1: a WINDOW_UPDATE making a stream window exceed 2^31-1 MUST be a stream error
    FLOW_CONTROL_ERROR (RST_STREAM); a connection error FLOW_CONTROL_ERROR is accepted (5.4)."""
    c = t.conn()
    c.request(1, "POST", end_stream=False)  # open, window 65535
    c.send(window_update(1, MAX_WINDOW))
    return c.expect_stream_error(1, {FLOW_CONTROL_ERROR})


@case
def settings_initial_window_overflow(t):
    """RFC 9113 6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE change that makes an open stream's window exceed
    2^31-1 MUST be a connection error FLOW_CONTROL_ERROR."""
    c = t.conn()
    c.request(1, "POST", end_stream=False)
    c.send(window_update(1, MAX_WINDOW - 65535))  # exactly 2^31-1: legal
    c.wait(lambda: False, 0.3)
    if c.goaway or 1 in c.rst:
        return False, f"a legal window of exactly 2^31-1 was refused: {c.describe()}"
    c.send(settings_frame([(INITIAL_WINDOW_SIZE, 65536)]))
    return c.expect_connection_error({FLOW_CONTROL_ERROR})


@case
def flow_control_server_respects_client_window(t):
    """RFC 9113 5.2.1 / 6.9: the server MUST NOT send more flow-controlled DATA than the client's
    window. INITIAL_WINDOW_SIZE=100 and a 20000-byte response: the server never goes beyond the
    window (checked on every DATA frame), resumes after WINDOW_UPDATEs of 1, 999 and 5000, and the
    body arrives complete once the window is opened wide. Using less than the window (e.g. not
    sending a 1-byte frame) is allowed and only reported in the detail."""
    c = t.conn(settings=[(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 100)], auto_window=False)
    payload = os.urandom(20000)
    c.request(1, "POST", end_stream=False)
    c.body(1, payload)
    st = c.stream(1)
    c.wait(lambda: st["recv"] >= 100 or st["ended"] or 1 in c.rst or c.goaway, 5)
    c.wait(lambda: st["recv"] > 100, 1.0)  # a non-conforming server would overrun here
    if c.flow_violations:
        return False, f"window exceeded: {c.flow_violations[:3]}"
    if st["ended"] or 1 in c.rst or c.goaway or c.closed:
        return False, f"the stream ended within a 100-byte window: {c.describe()}"
    steps = [st["recv"]]
    granted = 100
    for inc in (1, 999, 5000):
        granted += inc
        c.grant(1, inc)
        c.wait(lambda: st["recv"] >= granted, 2)
        c.wait(lambda: st["recv"] > granted, 0.3)
        steps.append(st["recv"])
        if c.flow_violations:
            return False, f"window exceeded after WINDOW_UPDATE {inc}: {c.flow_violations[:3]}"
    c.grant(1, 1 << 20, 1 << 20)
    c.wait(lambda: st["ended"] or c.closed, 10)
    if c.flow_violations:
        return False, f"window exceeded: {c.flow_violations[:3]}"
    if not st["ended"] or not (200 <= (st["status"] or 0) < 300):
        return False, f"response did not complete: {c.describe()}"
    if t.echo and bytes(st["data"]) != payload:
        return False, f"echoed body differs ({len(st['data'])} of {len(payload)} bytes)"
    full = steps == [100, 101, 1100, 6100]
    return True, (f"received {steps} at windows [100, 101, 1100, 6100]"
                  f"{'' if full else ' (window not fully used: allowed)'}, {len(st['data'])} bytes total")


@case
def flow_control_large_request_body(t):
    """RFC 9113 5.2 / 6.9: a 300000-byte request body (beyond the 65535 initial windows) gets through
    because the server sends WINDOW_UPDATE for both the stream and the connection as it consumes it."""
    c = t.conn(settings=[(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 1 << 24)], connection_window_bump=1 << 24)
    payload = os.urandom(300000)
    c.request(1, "POST", end_stream=False, extra=[("content-length", str(len(payload)))])
    c.body(1, payload, timeout=20)
    st = c.stream(1)
    c.wait(lambda: st["ended"] or 1 in c.rst or c.goaway or c.closed, 15)
    if not st["ended"] or not (200 <= (st["status"] or 0) < 300):
        return False, f"response did not complete: {c.describe()}"
    if t.echo and bytes(st["data"]) != payload:
        return False, f"echoed body differs ({len(st['data'])} of {len(payload)} bytes)"
    return True, f"{len(payload)} bytes sent, {len(st['data'])} received"


@case
def rst_stream_mid_request_leaves_other_streams(t):
    """RFC 9113 5.4.2 / 6.4: RST_STREAM(CANCEL) from the client ends only that stream; the other
    streams on the connection (one already open, one opened afterwards) complete with 2xx."""
    c = t.conn()
    c.request(1, "POST", end_stream=False)
    c.body(1, b"partial body", end_stream=False)
    c.request(3, "POST", end_stream=False)
    c.body(3, b"stream three", end_stream=False)
    c.send(rst_stream(1, CANCEL))
    c.body(3, b" done", end_stream=True)
    c.request(5)
    c.wait(lambda: (c.response_done(3) and c.response_done(5)), 10)
    bad = [s for s in (3, 5) if not (c.stream(s)["ended"] and 200 <= (c.stream(s)["status"] or 0) < 300)]
    if bad or c.goaway or 3 in c.rst or 5 in c.rst:
        return False, f"streams {bad} failed: {c.describe()}"
    if t.echo and bytes(c.stream(3)["data"]) != b"stream three done":
        return False, f"stream 3 body {bytes(c.stream(3)['data'])!r}"
    return True, c.describe()


# ----------------------------------------------------------------------------------------------
# PING and GOAWAY
# ----------------------------------------------------------------------------------------------

@case
def ping_answered(t):
    """RFC 9113 6.7: a PING without ACK MUST be answered by a PING with ACK and the identical payload."""
    c = t.conn()
    c.send(raw_frame(PING, 0, 0, b"weft-png"))
    c.wait(lambda: c.ping_acks, 5)
    return c.ping_acks == [b"weft-png"], f"acks {c.ping_acks}"


@case
def ping_wrong_length(t):
    """RFC 9113 6.7: a PING with a length other than 8 MUST be a connection error FRAME_SIZE_ERROR."""
    c = t.conn()
    c.send(raw_frame(PING, 0, 0, b"weft-ping"))
    return c.expect_connection_error({FRAME_SIZE_ERROR})


@case
def ping_on_stream(t):
    """RFC 9113 6.7: a PING with a stream identifier other than 0 MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    c.send(raw_frame(PING, 0, 1, b"weft-png"))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def goaway_from_client(t):
    """RFC 9113 6.8: after a client's GOAWAY(NO_ERROR, last_stream_id=0: no pushed streams) the
    server still completes the request already sent on stream 1. Closing the connection afterwards
    is what servers do (not a MUST); the detail says whether it closed within 5 s."""
    c = t.conn()
    c.request(1)
    c.send(raw_frame(GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR) + b"bye"))
    c.wait(lambda: c.response_done(1), 5)
    st = c.stream(1)
    ok = st["ended"] and 200 <= (st["status"] or 0) < 300
    closed = c.wait(lambda: c.closed, 5)
    return ok, f"{c.describe()}; server {'closed' if closed else 'did not close'} the connection"


# ----------------------------------------------------------------------------------------------
# CONTINUATION
# ----------------------------------------------------------------------------------------------

@case
def continuation_interleaved_with_ping(t):
    """RFC 9113 6.10: after HEADERS without END_HEADERS the next frame MUST be a CONTINUATION of the
    same stream; any other frame MUST be a connection error PROTOCOL_ERROR (here a PING)."""
    c = t.conn()
    block = c.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", t.authority)])
    c.send(raw_frame(HEADERS, END_STREAM, 1, block[:3]) + raw_frame(PING, 0, 0, b"12345678")
           + raw_frame(CONTINUATION, END_HEADERS, 1, block[3:]))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def continuation_on_other_stream(t):
    """RFC 9113 6.10: a CONTINUATION for a different stream than the open field block MUST be a
    connection error PROTOCOL_ERROR."""
    c = t.conn()
    block = c.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", t.authority)])
    c.send(raw_frame(HEADERS, END_STREAM, 1, block[:3]) + raw_frame(CONTINUATION, END_HEADERS, 3, block[3:]))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def continuation_without_headers(t):
    """RFC 9113 6.10: a CONTINUATION not preceded by HEADERS/PUSH_PROMISE/CONTINUATION without
    END_HEADERS MUST be a connection error PROTOCOL_ERROR."""
    c = t.conn()
    block = c.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", t.authority)])
    c.send(raw_frame(CONTINUATION, END_HEADERS, 1, block))
    return c.expect_connection_error({PROTOCOL_ERROR})


@case
def continuation_after_end_headers(t):
    """RFC 9113 6.10: a CONTINUATION after a HEADERS that had END_HEADERS MUST be a connection error
    PROTOCOL_ERROR."""
    c = t.conn()
    c.request(1, "POST", end_stream=False)
    c.send(raw_frame(CONTINUATION, END_HEADERS, 1, c.encode([("x-more", "1")])))
    return c.expect_connection_error({PROTOCOL_ERROR})


# ----------------------------------------------------------------------------------------------
# HTTP semantics: malformed requests (RFC 9113 8.1.1: stream error PROTOCOL_ERROR; a 4xx response
# is allowed instead; a connection error PROTOCOL_ERROR is allowed by 5.4)
# ----------------------------------------------------------------------------------------------

def _malformed(t, headers, end_stream=True, body=None):
    c = t.conn()
    c.headers(1, headers, end_stream=end_stream if body is None else False)
    if body is not None:
        c.send(raw_frame(DATA, END_STREAM, 1, body))
    return c.expect_stream_error(1, {PROTOCOL_ERROR}, allow_4xx=True)


def _req(t, method="GET", path="/"):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", t.authority)]


@case
def missing_method(t):
    """RFC 9113 8.3.1: a request MUST include exactly one :method; without it the request is malformed (8.1.1)."""
    return _malformed(t, [h for h in _req(t) if h[0] != ":method"])


@case
def missing_path(t):
    """RFC 9113 8.3.1: a non-CONNECT request MUST include :path; without it the request is malformed (8.1.1)."""
    return _malformed(t, [h for h in _req(t) if h[0] != ":path"])


@case
def missing_scheme(t):
    """RFC 9113 8.3.1: a non-CONNECT request MUST include :scheme; without it the request is malformed (8.1.1)."""
    return _malformed(t, [h for h in _req(t) if h[0] != ":scheme"])


@case
def empty_path(t):
    """RFC 9113 8.3.1: ':path' MUST NOT be empty for http/https URIs; the request is malformed (8.1.1)."""
    return _malformed(t, [(k, "" if k == ":path" else v) for k, v in _req(t)])


@case
def duplicate_pseudo_header(t):
    """RFC 9113 8.3.1: exactly one :path; two :path fields make the request malformed (8.1.1)."""
    return _malformed(t, _req(t) + [(":path", "/again")])


@case
def unknown_pseudo_header(t):
    """RFC 9113 8.3: an undefined pseudo-header (':foo') makes the request malformed (8.1.1)."""
    return _malformed(t, _req(t) + [(":foo", "bar")])


@case
def response_pseudo_header_in_request(t):
    """RFC 9113 8.3: pseudo-headers defined for responses (':status') MUST NOT appear in requests: malformed."""
    return _malformed(t, _req(t) + [(":status", "200")])


@case
def pseudo_header_after_regular(t):
    """RFC 9113 8.3: pseudo-headers MUST precede all regular fields; one after a regular field makes
    the request malformed (8.1.1)."""
    h = _req(t)
    return _malformed(t, h[:3] + [("x-regular", "1")] + h[3:])


@case
def uppercase_header_name(t):
    """RFC 9113 8.2.1: field names MUST NOT contain uppercase (0x41-0x5a); such a request is malformed (8.1.1)."""
    return _malformed(t, _req(t) + [("X-Upper", "1")])


@case
def connection_specific_header_connection(t):
    """RFC 9113 8.2.2: connection-specific fields ('connection: keep-alive') make a message malformed (8.1.1)."""
    return _malformed(t, _req(t) + [("connection", "keep-alive")])


@case
def connection_specific_header_te_gzip(t):
    """RFC 9113 8.2.2: TE is allowed only with the value 'trailers'; 'te: gzip' makes the request malformed."""
    return _malformed(t, _req(t) + [("te", "gzip")])


@case
def connection_specific_header_transfer_encoding(t):
    """RFC 9113 8.2.2: 'transfer-encoding' is connection-specific; the request is malformed (8.1.1)."""
    return _malformed(t, _req(t, "POST") + [("transfer-encoding", "chunked")], body=b"5\r\nhello\r\n0\r\n\r\n")


@case
def te_trailers_allowed(t):
    """RFC 9113 8.2.2: 'te: trailers' is the one allowed TE value (gRPC sends it): the request succeeds."""
    c = t.conn()
    c.request(1, extra=[("te", "trailers")])
    c.wait(lambda: c.response_done(1), 5)
    st = c.stream(1)
    return bool(st["ended"] and 200 <= (st["status"] or 0) < 300), c.describe()


@case
def content_length_more_than_data(t):
    """RFC 9113 8.1.1: content-length not equal to the sum of DATA payloads makes the request malformed:
    content-length 10, 5 bytes then END_STREAM -> stream error PROTOCOL_ERROR (or 4xx / connection error)."""
    return _malformed(t, _req(t, "POST") + [("content-length", "10")], body=b"hello")


@case
def content_length_less_than_data(t):
    """RFC 9113 8.1.1: content-length 3 with 5 bytes of DATA is malformed -> stream error PROTOCOL_ERROR
    (or 4xx / connection error)."""
    return _malformed(t, _req(t, "POST") + [("content-length", "3")], body=b"hello")


@case
def trailers_with_pseudo_header(t):
    """RFC 9113 8.1: trailers MUST NOT include pseudo-header fields; such a request is malformed (8.1.1)."""
    c = t.conn()
    c.request(1, "POST", end_stream=False)
    c.send(raw_frame(DATA, 0, 1, b"body"))
    c.headers(1, [(":path", "/trailer")], end_stream=True)
    return c.expect_stream_error(1, {PROTOCOL_ERROR}, allow_4xx=True)


# ----------------------------------------------------------------------------------------------
# HPACK (RFC 7541; RFC 9113 4.3: a decoding error MUST be a connection error COMPRESSION_ERROR)
# ----------------------------------------------------------------------------------------------

@case
def hpack_invalid_index(t):
    """RFC 7541 2.3.3 / RFC 9113 4.3: an indexed field beyond the static + (empty) dynamic table
    (index 70) is a decoding error: connection error COMPRESSION_ERROR."""
    c = t.conn()
    block = c.encode(_req(t)) + b"\xc6"  # 0x80 | 70
    c.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    return c.expect_connection_error({COMPRESSION_ERROR})


@case
def hpack_index_zero(t):
    """RFC 7541 6.1: index 0 MUST be treated as a decoding error: connection error COMPRESSION_ERROR (RFC 9113 4.3)."""
    c = t.conn()
    c.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x80" + c.encode(_req(t))))
    return c.expect_connection_error({COMPRESSION_ERROR})


@case
def hpack_table_size_update_too_large(t):
    """RFC 7541 6.3 / 4.2: a dynamic table size update above SETTINGS_HEADER_TABLE_SIZE (the server's,
    default 4096) MUST be a decoding error: connection error COMPRESSION_ERROR (RFC 9113 4.3)."""
    c = t.conn()
    limit = c.server_settings.get(HEADER_TABLE_SIZE, 4096)
    v, out = limit + 1 + 4096, bytearray([0x3F])
    v -= 31
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    c.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, bytes(out) + c.encode(_req(t))))
    return c.expect_connection_error({COMPRESSION_ERROR})


@case
def hpack_table_size_update_after_field(t):
    """RFC 7541 4.2: a dynamic table size update MUST occur at the beginning of a field block; one after
    a field is a decoding error: connection error COMPRESSION_ERROR (RFC 9113 4.3). (Same expectation as
    h2spec's hpack/4.2/1.)"""
    c = t.conn()
    c.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, c.encode(_req(t)) + b"\x20"))
    return c.expect_connection_error({COMPRESSION_ERROR})


@case
def oversized_header_block(t):
    """RFC 9113 10.5.1 / RFC 6585 431: a 100-KiB (decoded) header list. The RFC lets a server accept it;
    our policy is that the server refuses it without hanging or dying: 431 (or another 4xx), RST_STREAM
    (any code), GOAWAY (any code) or a close all pass; a 2xx fails."""
    c = t.conn()
    extra = [(f"x-big-{i:03d}", os.urandom(384).hex()) for i in range(134)]  # 134 * ~780 = ~102 KiB
    c.request(1, extra=extra)
    c.wait(lambda: c.response_done(1), 10)
    st = c.stream(1)
    if st["status"] is not None and 400 <= st["status"] < 500:
        return True, c.describe()
    if 1 in c.rst or c.goaway or c.closed:
        return True, c.describe()
    return False, f"neither refused nor errored: {c.describe()}"


# ----------------------------------------------------------------------------------------------
# Floods (RFC 9113 10.5: an endpoint MAY treat abusive activity as a connection error
# ENHANCE_YOUR_CALM). A pass means: the connection ended (GOAWAY of any code or a close) and a new
# connection works.
# ----------------------------------------------------------------------------------------------

def _flood(c, chunk, total_bytes, stall=3.0):
    """Writes chunk repeatedly without reading until total_bytes, the server closes, or writes stall."""
    c.sock.settimeout(stall)
    sent = 0
    try:
        while sent < total_bytes:
            c.sock.sendall(chunk)
            sent += len(chunk)
    except socket.timeout:
        return sent, "writes stalled (server stopped reading)"
    except (BrokenPipeError, ConnectionResetError) as e:
        c._closed(repr(e))
        return sent, f"closed while flooding ({e.__class__.__name__})"
    finally:
        if not c.closed:
            c.sock.settimeout(5)
    return sent, "all sent"


def _flood_verdict(c, sent, how, timeout=15):
    c.wait(lambda: c.closed, timeout)
    detail = f"{sent} bytes sent, {how}; {c.describe()}"
    if c.goaway and c.goaway[1] == ENHANCE_YOUR_CALM:
        detail += " (ENHANCE_YOUR_CALM: preferred)"
    return (c.closed or c.goaway is not None), detail


@case
def flood_rapid_reset(t):
    """RFC 9113 10.5 (CVE-2023-44487 'rapid reset'): 2000 streams each opened and at once reset with
    RST_STREAM(CANCEL), as fast as possible. Expect GOAWAY (ENHANCE_YOUR_CALM preferred, any accepted)
    or a close; never a crash."""
    c = t.conn(auto_window=False)
    h = _req(t)
    out = bytearray()
    for i in range(2000):
        sid = 1 + 2 * i
        out += raw_frame(HEADERS, END_STREAM | END_HEADERS, sid, c.encode(h)) + rst_stream(sid, CANCEL)
    sent, how = _flood(c, bytes(out), len(out))
    return _flood_verdict(c, sent, how)


@case
def flood_settings(t):
    """RFC 9113 10.5: a SETTINGS flood (empty SETTINGS frames, ACKs never read, small receive buffer):
    the server must bound its queue of ACKs and close the connection (GOAWAY optional)."""
    c = t.conn(rcvbuf=4096)
    chunk = settings_frame([]) * 8000
    sent, how = _flood(c, chunk, 40 << 20)
    return _flood_verdict(c, sent, how)


@case
def flood_ping(t):
    """RFC 9113 10.5: a PING flood (PING ACKs never read, small receive buffer): the server must bound
    its queue of ACKs and close the connection (GOAWAY optional)."""
    c = t.conn(rcvbuf=4096)
    chunk = raw_frame(PING, 0, 0, b"floodpng") * 4000
    sent, how = _flood(c, chunk, 40 << 20)
    return _flood_verdict(c, sent, how)


@case
def flood_continuation(t):
    """RFC 9113 10.5 (CVE-2024-27316 / CVE-2024-28182 'CONTINUATION flood'): HEADERS without END_HEADERS
    then CONTINUATION frames, each adding a new 4-KiB header, never ending the block. The server must
    end the connection (GOAWAY of any code, or close) rather than buffer without bound: a RST_STREAM is
    not enough since the server must keep decoding the block. Up to 64 MiB are offered."""
    c = t.conn()
    block = c.encode(_req(t))
    c.send(raw_frame(HEADERS, END_STREAM, 1, block))
    enc = hpack.Encoder()
    chunk = bytearray()
    for i in range(16):  # literal without indexing, new name: no HPACK state involved
        name, value = f"x-flood-{i}".encode(), (b"v" * 4000)
        field = b"\x00" + bytes([len(name)]) + name + b"\x7f" + _hpack_int(len(value) - 127) + value
        chunk += raw_frame(CONTINUATION, 0, 1, field)
    del enc
    sent, how = _flood(c, bytes(chunk), 64 << 20)
    if how == "all sent":
        return False, f"accepted {sent} bytes of CONTINUATION without ending the connection: {c.describe()}"
    return _flood_verdict(c, sent, how)


def _hpack_int(v):
    out = bytearray()
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# Runner
# ----------------------------------------------------------------------------------------------

def run_case(suite, fn):
    result = [None]

    def body():
        try:
            result[0] = fn(suite)
        except Closed as e:
            result[0] = (False, f"connection closed unexpectedly: {e}")
        except Exception as e:
            result[0] = (False, f"{e.__class__.__name__}: {e}")
    th = threading.Thread(target=body, daemon=True)
    th.start()
    th.join(suite.case_timeout)
    if th.is_alive():
        suite.close_all()
        th.join(5)
        return False, f"case timed out after {suite.case_timeout}s"
    suite.close_all()
    ok, detail = result[0]
    alive, why = suite.alive()
    if not alive:
        return False, f"{detail} -- and then a new connection FAILED: {why}"
    return bool(ok), detail


def run_suite(host, port, authority, echo=True, only=None, case_timeout=30):
    """Runs every case (or those whose name contains a substring in `only`);
    returns [(case_name, passed, detail)]."""
    suite = Suite(host, port, authority, echo=echo, case_timeout=case_timeout)
    ok, why = suite.alive(timeout=10)
    if not ok:
        return [("server_reachable", False, why)]
    results, dead = [], None
    for fn in CASES:
        if only and not any(o in fn.__name__ for o in only):
            continue
        if dead:
            results.append((fn.__name__, False, f"not run: the server stopped answering after {dead}"))
            continue
        ok, detail = run_case(suite, fn)
        results.append((fn.__name__, ok, detail))
        if not ok and "a new connection FAILED" in detail:
            dead = fn.__name__
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--authority", default=None)
    ap.add_argument("--only", action="append", help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--no-echo", action="store_true", help="the server does not echo POST bodies")
    ap.add_argument("--case-timeout", type=float, default=30)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON list")
    a = ap.parse_args(argv)
    if a.list:
        for fn in CASES:
            print(f"{fn.__name__}: {first_line(fn.__doc__)}")
        return 0
    results = run_suite(a.host, a.port, a.authority or f"{a.host}:{a.port}", echo=not a.no_echo, only=a.only,
                        case_timeout=a.case_timeout)
    failed = [r for r in results if not r[1]]
    if a.json:
        print(json.dumps(results))
        return 1 if failed else 0
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}"
              + (f"  [nghttpd is lenient here too: {NGHTTPD_LENIENT[name]}]" if not ok and name in NGHTTPD_LENIENT else ""))
    print(f"{len(results) - len(failed)}/{len(results)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
