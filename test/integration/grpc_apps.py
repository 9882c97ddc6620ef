"""A gRPC test server and client made with grpcio *generic* handlers (no protoc, raw bytes messages).

Service weft.test.Apps, methods:
  Echo          unary: returns the request bytes. A request b"fail:<code>[:<message>]" (code a number
                or a name such as NOT_FOUND) aborts with that status and message instead.
  ServerStream  server streaming: request b"<n>[:<size>]" -> n messages b"msg-<i>" padded to size.
  BidiStream    bidirectional: echoes each message as it arrives.
  Sleep         unary: request b"<seconds>" -> sleeps that long (or until cancelled) -> b"slept".
  Remaining     unary: returns the server's view of the deadline, b"<seconds left>" or b"none"
                (proves grpc-timeout reached the server).
Every method sets trailing metadata x-trailer: "trailer-<method>" (also on the error path).

    /usr/bin/python3 grpc_apps.py server --port P        # prints "ready <port>" once serving
    /usr/bin/python3 grpc_apps.py check --target H:P [--authority A] [--json]
    /usr/bin/python3 grpc_apps.py selfcheck              # server + check in one process, no proxy

Importable: Client(target) and check_all(target) -> [(name, passed, detail)].
"""

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "weft.test.Apps"
TRAILER = "x-trailer"
CODES = {c.value[0]: c for c in grpc.StatusCode}


def parse_code(text):
    text = text.strip()
    if text.isdigit():
        return CODES[int(text)]
    return grpc.StatusCode[text.upper()]


# --- server ---------------------------------------------------------------------------------------

def _echo(request, context):
    context.set_trailing_metadata(((TRAILER, "trailer-Echo"),))
    if request.startswith(b"fail:"):
        code_text, _, message = request[5:].decode().partition(":")
        code = parse_code(code_text)
        context.abort(code, message or f"failed with {code.name}")
    return request


def _server_stream(request, context):
    context.set_trailing_metadata(((TRAILER, "trailer-ServerStream"),))
    n_text, _, size_text = request.decode().partition(":")
    size = int(size_text or 0)
    for i in range(int(n_text)):
        if not context.is_active():
            return
        yield f"msg-{i}".encode().ljust(size, b".")


def _bidi(request_iterator, context):
    context.set_trailing_metadata(((TRAILER, "trailer-BidiStream"),))
    for msg in request_iterator:
        yield msg


def _sleep(request, context):
    context.set_trailing_metadata(((TRAILER, "trailer-Sleep"),))
    deadline = time.monotonic() + float(request.decode() or 0)
    while time.monotonic() < deadline and context.is_active():
        time.sleep(0.01)
    return b"slept"


def _remaining(request, context):
    context.set_trailing_metadata(((TRAILER, "trailer-Remaining"),))
    left = context.time_remaining()
    return b"none" if left is None else f"{left:.3f}".encode()


def make_server(port, host="0.0.0.0", workers=16):
    """A started grpc.Server on host:port (port 0: any); returns (server, bound_port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "BidiStream": grpc.stream_stream_rpc_method_handler(_bidi),
        "Sleep": grpc.unary_unary_rpc_method_handler(_sleep),
        "Remaining": grpc.unary_unary_rpc_method_handler(_remaining),
    })
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return server, bound


# --- client ---------------------------------------------------------------------------------------

class Client:
    def __init__(self, target, authority=None):
        options = [("grpc.enable_retries", 0)]
        if authority:
            options.append(("grpc.default_authority", authority))
        self.channel = grpc.insecure_channel(target, options=options)
        self._echo = self.channel.unary_unary(f"/{SERVICE}/Echo")
        self._stream = self.channel.unary_stream(f"/{SERVICE}/ServerStream")
        self._bidi = self.channel.stream_stream(f"/{SERVICE}/BidiStream")
        self._sleep = self.channel.unary_unary(f"/{SERVICE}/Sleep")
        self._remaining = self.channel.unary_unary(f"/{SERVICE}/Remaining")

    def close(self):
        self.channel.close()

    def wait_ready(self, timeout=10):
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def echo(self, data, timeout=10, metadata=None):
        """-> (response bytes, trailing metadata dict); raises grpc.RpcError on a non-OK status."""
        resp, call = self._echo.with_call(data, timeout=timeout, metadata=metadata)
        return resp, dict(call.trailing_metadata() or ())

    def server_stream(self, n, size=0, timeout=10):
        call = self._stream(f"{n}:{size}".encode(), timeout=timeout)
        msgs = list(call)
        return msgs, dict(call.trailing_metadata() or ())

    def bidi(self, messages, timeout=10):
        """Sends each message only after the previous echo came back (proves per-message streaming)."""
        q, got, done = [], [], threading.Event()
        cond = threading.Condition()

        def gen():
            for m in messages:
                with cond:
                    q.append(m)
                yield m
                with cond:
                    if not cond.wait_for(lambda: len(got) >= len(q) or done.is_set(), timeout):
                        raise TimeoutError("echo of a bidi message never came")
        call = self._bidi(gen(), timeout=timeout)
        try:
            for r in call:
                with cond:
                    got.append(r)
                    cond.notify_all()
        finally:
            done.set()
            with cond:
                cond.notify_all()
        return got, dict(call.trailing_metadata() or ())

    def remaining(self, timeout=None):
        """The deadline as the server saw it (seconds, or None without a deadline)."""
        resp = self._remaining(b"", timeout=timeout)
        return None if resp == b"none" else float(resp)

    def sleep(self, seconds, timeout):
        resp, call = self._sleep.with_call(str(seconds).encode(), timeout=timeout)
        return resp, dict(call.trailing_metadata() or ())


def _err(e):
    return e.code(), e.details(), dict(e.trailing_metadata() or ())


def check_all(target, authority=None):
    """Every behaviour the tests rely on, against target; -> [(name, passed, detail)]."""
    results = []
    c = Client(target, authority)

    def run(name, fn):
        try:
            ok, detail = fn()
        except Exception as e:
            ok, detail = False, f"{e.__class__.__name__}: {e}"
        results.append((name, bool(ok), detail))
    try:
        run("ready", lambda: (c.wait_ready(15), (True, ""))[1])

        def unary():
            payload = bytes(range(256)) * 40
            resp, tr = c.echo(payload)
            return resp == payload and tr.get(TRAILER) == "trailer-Echo", f"{len(resp)} bytes, trailers {tr}"
        run("unary", unary)

        def unary_large():
            payload = b"L" * (3 << 20)
            resp, _ = c.echo(payload, timeout=30)
            return resp == payload, f"{len(resp)} bytes"
        run("unary_large_3MiB", unary_large)

        def server_stream():
            msgs, tr = c.server_stream(100, size=1000)
            want = [f"msg-{i}".encode().ljust(1000, b".") for i in range(100)]
            return msgs == want and tr.get(TRAILER) == "trailer-ServerStream", f"{len(msgs)} messages, trailers {tr}"
        run("server_stream", server_stream)

        def bidi():
            sent = [f"bidi-{i}".encode() * (i + 1) for i in range(20)]
            got, tr = c.bidi(sent)
            return got == sent and tr.get(TRAILER) == "trailer-BidiStream", f"{len(got)} echoed, trailers {tr}"
        run("bidi_stream", bidi)

        for code, message in (("5", "no such thing"), ("PERMISSION_DENIED", "go away: \u00e9t\u00e9 %"),
                              ("13", "internal trouble"), ("UNAVAILABLE", "try later")):
            def fail(code=code, message=message):
                want = parse_code(code)
                try:
                    c.echo(f"fail:{code}:{message}".encode())
                    return False, "call succeeded"
                except grpc.RpcError as e:
                    got_code, got_msg, tr = _err(e)
                    return (got_code == want and got_msg == message and tr.get(TRAILER) == "trailer-Echo",
                            f"{got_code.name} {got_msg!r} trailers {tr}")
            run(f"error_{parse_code(code).name.lower()}", fail)

        def deadline():
            t0 = time.monotonic()
            try:
                c.sleep(5, timeout=0.5)
                return False, "call succeeded"
            except grpc.RpcError as e:
                took = time.monotonic() - t0
                return e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and took < 3, f"{e.code().name} after {took:.2f}s"
        run("deadline_exceeded", deadline)

        def within_deadline():
            resp, tr = c.sleep(0.2, timeout=5)
            return resp == b"slept" and tr.get(TRAILER) == "trailer-Sleep", f"{resp!r} {tr}"
        run("sleep_within_deadline", within_deadline)

        def deadline_propagated():
            left = c.remaining(timeout=7.0)
            return left is not None and 5.0 < left <= 7.5, f"server saw {left} s left of a 7 s deadline"
        run("deadline_propagated", deadline_propagated)

        def concurrent():
            with futures.ThreadPoolExecutor(8) as ex:
                outs = list(ex.map(lambda i: c.echo(f"req-{i}".encode())[0], range(64)))
            return outs == [f"req-{i}".encode() for i in range(64)], f"{len(outs)} concurrent unary calls"
        run("concurrent_unary", concurrent)
    finally:
        c.close()
    return results


def _print(results, as_json):
    if as_json:
        print(json.dumps(results))
    else:
        for name, ok, detail in results:
            print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description="gRPC test apps")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", default="0.0.0.0")
    k = sub.add_parser("check")
    k.add_argument("--target", required=True)
    k.add_argument("--authority")
    k.add_argument("--json", action="store_true")
    sc = sub.add_parser("selfcheck")
    sc.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "server":
        server, port = make_server(a.port, a.host)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print(f"ready {port}", flush=True)
        stop.wait()
        server.stop(0.5).wait()
        return 0
    if a.cmd == "check":
        return _print(check_all(a.target, a.authority), a.json)
    server, port = make_server(0, "127.0.0.1")
    try:
        return _print(check_all(f"127.0.0.1:{port}"), a.json)
    finally:
        server.stop(0)


if __name__ == "__main__":
    sys.exit(main())
