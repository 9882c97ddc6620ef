"""HTTP benchmark (`bench/run --http`): HTTP/1.1 keep-alive and HTTP/2 (h2c, prior knowledge)
through one proxy and through a proxy pair, weft-proxy side by side with HAProxy and nginx, in
one run. What it measures and how to read it: bench/README.md, "HTTP (--http)".

Python 3 standard library only. It is loaded by bench/run, and uses bench/run's process, CPU and
weft-proxy helpers (passed in as `run`), so both modes start and measure processes alike.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PROTOCOLS = {
    "h1": "HTTP/1.1 keep-alive",
    "h2": "HTTP/2 cleartext, prior knowledge (h2c)",
}
ALL_TARGETS = ["direct", "haproxy", "nginx", "weft", "haproxy-pair", "nginx-pair", "weft-pair"]
LOADS = ("sat", "rate")  # saturation; fixed rate
BODY_BYTES = 100
# Ratio rows: (A, B) -> A / B, when both ran.
RATIO_PAIRS = [("weft", "haproxy"), ("weft", "nginx"), ("nginx", "haproxy"),
               ("weft-pair", "haproxy-pair"), ("weft-pair", "nginx-pair"),
               ("nginx-pair", "haproxy-pair")]
# Issue targets, printed as a check (nothing asserts them): CPU per request per hop at or below
# HAProxy's in the same run; RSS at the fixed rate at most this much per proxy.
RSS_LIMIT_KB = 10 * 1024


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# The origin and the proxies


NGINX_MAIN = """\
# Written by bench/run --http. One process (no master), one worker loop, no access log.
daemon off;
master_process off;
worker_processes 1;
error_log {tmp}/{name}.error.log warn;
pid {tmp}/{name}.pid;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {tmp}/{name}-temp;
    proxy_temp_path {tmp}/{name}-temp;
    fastcgi_temp_path {tmp}/{name}-temp;
    uwsgi_temp_path {tmp}/{name}-temp;
    scgi_temp_path {tmp}/{name}-temp;
{body}
}}
"""

ORIGIN_BODY = """\
    server {{
        listen 127.0.0.1:{h1};
        listen 127.0.0.1:{h2} http2;
        location / {{
            default_type text/plain;
            return 200 "{payload}";
        }}
    }}
"""

# h1: proxy_pass with kept upstream connections. h2: nginx speaks HTTP/2 to an upstream only
# through its gRPC module; grpc_pass forwards any HTTP/2 request (a plain GET works), so it is
# nginx's h2-to-h2 proxy.
NGINX_PROXY_BODY = """\
    upstream origin {{
        server 127.0.0.1:{target};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{listen}{h2};
        location / {{
{pass_}
        }}
    }}
"""
NGINX_PASS = {
    "h1": "            proxy_pass http://origin;\n"
          "            proxy_http_version 1.1;\n"
          "            proxy_set_header Connection \"\";",
    "h2": "            grpc_pass grpc://origin;",
}

HAPROXY_HTTP_CFG = """\
# Written by bench/run --http. HAProxy in HTTP mode, one thread, no logging (no "log" line),
# keep-alive on both sides (its default), {proto}.
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend bench
    bind 127.0.0.1:{listen}{proto_opt}
    default_backend upstream

backend upstream
    server upstream 127.0.0.1:{target}{proto_opt}
"""


def write_nginx(tmp, name, body):
    os.makedirs(os.path.join(tmp, name + "-temp"), exist_ok=True)
    cfg = os.path.join(tmp, name + ".conf")
    with open(cfg, "w") as f:
        f.write(NGINX_MAIN.format(tmp=tmp, name=name, body=body))
    return cfg


class Origin:
    """nginx answering every request with a fixed 100-byte body, HTTP/1.1 on one port and h2c
    (prior knowledge) on another; one process, on the load generator's CPU."""

    def __init__(self, run, args, tmp):
        self.ports = {"h1": run.free_port(), "h2": run.free_port()}
        payload = "x" * (BODY_BYTES - 1) + "\\n"
        cfg = write_nginx(tmp, "origin", ORIGIN_BODY.format(
            h1=self.ports["h1"], h2=self.ports["h2"], payload=payload))
        self.logpath = os.path.join(tmp, "origin.log")
        with open(self.logpath, "w") as logf:
            self.proc = run.spawn(run.pinned([args.nginx, "-p", tmp, "-c", cfg], args.load_cpu),
                                  stdin=subprocess.DEVNULL, stdout=logf,
                                  stderr=subprocess.STDOUT)
        px = run.Proxy("nginx", self.proc, self.logpath)
        px.listen_ip, px.listen_port = "127.0.0.1", self.ports["h2"]
        run.wait_ready(px)
        for proto in PROTOCOLS:  # one real request each, so a broken origin stops the run here
            r = h2load(args, proto, "127.0.0.1", self.ports[proto], ["-n", "1", "-c", "1"],
                       pin=False)
            if r["succeeded"] != 1 or r["data_bytes"] != BODY_BYTES:
                raise RuntimeError("the origin does not answer %s: %s" % (proto, r["raw"]))


def start_nginx_proxy(run, args, tmp, name, proto, listen, target, role=None):
    cfg = write_nginx(tmp, name, NGINX_PROXY_BODY.format(
        target=target, listen=listen, h2=" http2" if proto == "h2" else "",
        pass_=NGINX_PASS[proto]))
    logpath = os.path.join(tmp, name + ".log")
    with open(logpath, "w") as logf:
        p = run.spawn(run.pinned([args.nginx, "-p", tmp, "-c", cfg], args.proxy_cpu),
                      stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    px = run.Proxy("nginx", p, logpath, role=role)
    px.listen_ip, px.listen_port = "127.0.0.1", listen
    px.errlog = os.path.join(tmp, name + ".error.log")
    return px


def start_haproxy_http(run, args, tmp, name, proto, listen, target, role=None):
    cfg = os.path.join(tmp, name + ".cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY_HTTP_CFG.format(
            listen=listen, target=target, proto_opt=" proto h2" if proto == "h2" else "",
            proto="HTTP/2 on both sides (proto h2)" if proto == "h2" else "HTTP/1.1"))
    logpath = os.path.join(tmp, name + ".log")
    with open(logpath, "w") as logf:
        p = run.spawn(run.pinned([args.haproxy, "-db", "-f", cfg], args.proxy_cpu),
                      stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    px = run.Proxy("haproxy", p, logpath, role=role)
    px.listen_ip, px.listen_port = "127.0.0.1", listen
    return px


def start_target(run, args, tmp, target, proto, origin_port):
    """Starts a target's proxies for one protocol; returns (port the client connects to,
    [Proxy]), a pair's client side first."""
    if target == "direct":
        return origin_port, []
    kind = target.split("-")[0]
    if kind == "weft":
        # As the layer-4 targets: explicit upstream, identity off (plaintext), detection on.
        if target == "weft":
            w = run.start_weft(args, tmp, "weft-%s" % proto, outbound_target=origin_port)
            return w.ports["outbound"], [w]
        b = run.start_weft(args, tmp, "weft-%s-server-side" % proto, inbound_target=origin_port,
                           role="server-side")
        a = run.start_weft(args, tmp, "weft-%s-client-side" % proto,
                           outbound_target=b.ports["inbound"], role="client-side")
        return a.ports["outbound"], [a, b]
    start = start_haproxy_http if kind == "haproxy" else start_nginx_proxy
    if target in ("haproxy", "nginx"):
        port = run.free_port()
        return port, [start(run, args, tmp, "%s-%s" % (kind, proto), proto, port, origin_port)]
    outer, inner = run.free_port(), run.free_port()
    b = start(run, args, tmp, "%s-%s-server-side" % (kind, proto), proto, inner, origin_port,
              role="server-side")
    a = start(run, args, tmp, "%s-%s-client-side" % (kind, proto), proto, outer, inner,
              role="client-side")
    return outer, [a, b]


# ----------------------------------------------------------------------------------------------
# The load generator: h2load


_RE = {
    "finished": re.compile(r"^finished in ([\d.]+)(s|ms|us), ([\d.]+) req/s", re.M),
    "requests": re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                           r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M),
    "status": re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M),
    "traffic": re.compile(r"^traffic: .*\((\d+)\) total, .*\((\d+)\) headers.*\((\d+)\) data",
                          re.M),
}


def h2load_cmd(args, proto, ip, port, extra):
    cmd = [args.h2load, "-t", "1"] + (["--h1"] if proto == "h1" else []) + extra
    return cmd + ["http://%s:%d/" % (ip, port)]


def parse_h2load(text, in_flight=0):
    """h2load's summary: rate, request counts (done, succeeded, failed...), status classes and
    body bytes. Raises if it is not there (h2load failed before measuring)."""
    out = {"raw": text[-1500:]}
    m = {k: r.search(text) for k, r in _RE.items()}
    missing = [k for k, v in m.items() if v is None]
    if missing:
        raise RuntimeError("h2load printed no %s line:\n%s" % ("/".join(missing), text[-1500:]))
    out["elapsed_s"] = float(m["finished"][1]) / {"s": 1, "ms": 1e3, "us": 1e6}[m["finished"][2]]
    out["h2load_req_per_s"] = float(m["finished"][3])
    (out["total"], out["started"], out["done"], out["succeeded"], out["failed"], out["errored"],
     out["timeout"]) = (int(x) for x in m["requests"].groups())
    out["status_2xx"], out["status_3xx"], out["status_4xx"], out["status_5xx"] = (
        int(x) for x in m["status"].groups())
    out["total_bytes"], out["header_bytes"], out["data_bytes"] = (
        int(x) for x in m["traffic"].groups())
    out["non_2xx"] = out["status_3xx"] + out["status_4xx"] + out["status_5xx"]
    out["errors"] = out["non_2xx"] + out["failed"] + out["errored"] + out["timeout"]
    if out["succeeded"] == 0:
        out["errors"] += 1  # nothing got through: an error, whatever the counters say
    # Every completed request carried the origin's 100-byte body, and nothing else (h2load
    # counts body bytes, after any chunked or DATA framing). A timed run (-D) stops with up to
    # `in_flight` requests unfinished, whose status or body bytes may be counted already.
    out["body_bytes_off"] = out["data_bytes"] - BODY_BYTES * out["succeeded"]
    out["verified"] = abs(out["body_bytes_off"]) <= BODY_BYTES * in_flight
    return out


def h2load(args, proto, ip, port, extra, pin=True, timeout=120):
    cmd = h2load_cmd(args, proto, ip, port, extra)
    r = subprocess.run(args.pinned(cmd) if pin else cmd, capture_output=True, text=True,
                       timeout=timeout)
    out = parse_h2load(r.stdout + r.stderr)
    out["exit"] = r.returncode
    return out


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def read_latency_log(path, skip_s):
    """h2load --log-file: per request <start µs since the epoch> <status> <µs to the last byte>.
    The first skip_s seconds (connection set-up, cold caches) are left out."""
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    if not rows:
        return None
    t0 = min(r[0] for r in rows)
    lat = sorted(r[2] for r in rows if r[0] - t0 >= skip_s * 1e6 and 200 <= r[1] < 300)
    return {"n": len(lat), "p50": percentile(lat, 0.50), "p90": percentile(lat, 0.90),
            "p99": percentile(lat, 0.99), "p999": percentile(lat, 0.999),
            "max": lat[-1] if lat else None,
            "mean": statistics.fmean(lat) if lat else None}


# ----------------------------------------------------------------------------------------------
# One measurement: fresh proxies, one h2load run, the proxies' CPU and memory.


def run_cell(run, args, tmp, origin, proto, load, target, rep):
    keep = (origin.proc,)
    try:
        entry, proxies = start_target(run, args, tmp, target, proto, origin.ports[proto])
    except (RuntimeError, OSError):
        for p in list(run._children):
            if p not in keep:
                run.stop(p)
        raise
    cell = {"protocol": proto, "load": load, "target": target, "rep": rep,
            "proxy_roles": [px.role or px.kind for px in proxies]}
    d = args.duration
    streams = 1 if proto == "h1" else args.h2_streams
    if load == "sat":
        extra = ["-c", str(args.conns), "-m", str(streams), "-D", "%ds" % d]
        cell["client"] = {"conns": args.conns, "streams": streams, "duration_s": d}
    else:
        # 2000 rps as args.conns clients at rate/conns each. h2load fires each client's requests
        # on a timer that starts with the client, so all clients starting together would send
        # in bursts of args.conns; -r 1 --rate-period 1ms staggers their starts by 1 ms, which
        # spreads the requests over the period. -r excludes -D, so the count sets the length.
        per_conn = args.rate / args.conns
        latlog = os.path.join(tmp, "latency.tsv")
        if os.path.exists(latlog):
            os.unlink(latlog)
        extra = ["-c", str(args.conns), "-m", str(streams), "--rps", "%g" % per_conn,
                 "-r", "1", "--rate-period", "1ms", "-n", str(int(args.rate * d)),
                 "--log-file", latlog]
        cell["client"] = {"conns": args.conns, "streams": streams, "rps_per_conn": per_conn,
                          "requests": int(args.rate * d)}
    try:
        for px in reversed(proxies):  # server side first
            run.wait_ready(px)
        time.sleep(args.settle)
        pids = [px.proc.pid for px in proxies]
        cell["idle_rss_kb"] = [run.proc_status_kb(p, "VmRSS") for p in pids]
        cpu0 = [run.proc_cpu_s(p) for p in pids]
        org0 = run.proc_cpu_s(origin.proc.pid)
        cmd = args.pinned(h2load_cmd(args, proto, "127.0.0.1", entry, extra))
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks0 = run.cpu_ticks()
        t0 = time.monotonic()
        client = run.spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        # RSS while the load runs, sampled every 100 ms (the load starts after the connections).
        rss_max = [0] * len(pids)
        deadline = t0 + d + 60
        while client.poll() is None:
            if time.monotonic() > deadline:
                run.stop(client, grace=1.0)
                raise RuntimeError("h2load did not finish within %gs" % (d + 60))
            for i, p in enumerate(pids):
                rss_max[i] = max(rss_max[i], run.proc_status_kb(p, "VmRSS") or 0)
            time.sleep(0.1)
        wall = time.monotonic() - t0
        out = client.stdout.read().decode(errors="replace")
        run._children.remove(client)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks1 = run.cpu_ticks()
        cpu1 = [run.proc_cpu_s(p) for p in pids]
        cell["proxy_cpu_s"] = [b - a for a, b in zip(cpu0, cpu1)]
        cell["origin_cpu_s"] = run.proc_cpu_s(origin.proc.pid) - org0
        cell["client_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        cell["client_wall_s"] = wall
        cell["load_cpu_busy"] = run.busy_fraction(ticks0, ticks1, args.load_cpu)
        cell["proxy_cpu_busy"] = run.busy_fraction(ticks0, ticks1, args.proxy_cpu)
        cell["peak_rss_kb"] = [run.proc_status_kb(p, "VmHWM") for p in pids]
        cell["end_rss_kb"] = [run.proc_status_kb(p, "VmRSS") for p in pids]
        cell["load_rss_max_kb"] = rss_max
        cell["result"] = parse_h2load(out, args.conns * streams if load == "sat" else 0)
        cell["result"]["exit"] = client.returncode
        if load == "rate":
            cell["latency_us"] = read_latency_log(latlog, args.latency_skip)
            if not cell["latency_us"] or not cell["latency_us"]["n"]:
                raise RuntimeError("h2load wrote no latency log")
        cell["detect"] = [run.weft_detect_counts(px) for px in proxies if px.kind == "weft"]
        for det in cell["detect"]:
            if det.get("profile") not in (None, "release", "relwithdebinfo"):
                log("bench/run: WARNING: weft-proxy is a %r build; measure a RelWithDebInfo or "
                    "Release one" % det["profile"])
    finally:
        cell["proxy_stop"] = [run.stop(px.proc) for px in proxies]
        logs = []
        for px in proxies:
            for path in (px.logpath, getattr(px, "errlog", None)):
                if path and os.path.exists(path):
                    with open(path, errors="replace") as f:
                        text = f.read().strip()
                    if text:
                        logs.append(text[-4000:])
        if logs:
            cell["proxy_log"] = logs
    return cell


# ----------------------------------------------------------------------------------------------
# Summaries


def summarize_cell(c):
    r = c["result"]
    n = r["succeeded"]
    cpu = sum(c["proxy_cpu_s"]) if c["proxy_cpu_s"] else None
    hops = len(c["proxy_cpu_s"]) or None
    s = {
        "ok": r["errors"] == 0,
        "verified": r["verified"],
        "errors": r["errors"],
        "non_2xx": r["non_2xx"],
        "proxy_cpu_s": cpu,
        "load_cpu_util": (c["client_cpu_s"] + c["origin_cpu_s"]) / c["client_wall_s"],
        # Per proxy process: for a pair, the larger of the two.
        "idle_rss_kb": max(c["idle_rss_kb"]) if c["idle_rss_kb"] else None,
        "peak_rss_kb": max(c["peak_rss_kb"]) if c["peak_rss_kb"] else None,
        "load_rss_kb": max(c["load_rss_max_kb"]) if c["load_rss_max_kb"] else None,
        "peak_rss_kb_each": c["peak_rss_kb"] or None,
        "cpu_us_per_req_each": [x * 1e6 / n for x in c["proxy_cpu_s"]] if cpu and n else None,
    }
    s["per_s"] = n / r["elapsed_s"] if r["elapsed_s"] > 0 else None
    s["cpu_us_per_req"] = cpu * 1e6 / n if cpu is not None and n else None
    s["cpu_us_per_req_hop"] = s["cpu_us_per_req"] / hops if s["cpu_us_per_req"] and hops else None
    s["proxy_util"] = cpu / r["elapsed_s"] if cpu is not None and r["elapsed_s"] > 0 else None
    ours = {"load": s["load_cpu_util"], "proxy": (cpu or 0.0) / c["client_wall_s"]}
    used = ("load", "proxy") if cpu is not None else ("load",)
    bg = [max(0.0, c[k + "_cpu_busy"] - ours[k]) for k in used
          if c.get(k + "_cpu_busy") is not None]
    s["background"] = sum(bg) / len(bg) if bg else None
    if c.get("latency_us"):
        s["p50_us"] = c["latency_us"]["p50"]
        s["p99_us"] = c["latency_us"]["p99"]
    return s


def aggregate(run, cells, protocols, targets):
    """{protocol: {target: {"sat": medians, "rate": medians}}}"""
    agg = {}
    for proto in protocols:
        agg[proto] = {}
        for t in targets:
            per = {}
            for load in LOADS:
                runs = [summarize_cell(c) for c in cells
                        if (c["protocol"], c["load"], c["target"]) == (proto, load, t)]
                if not runs:
                    continue
                keys = [k for k in runs[0] if k not in ("ok", "verified")]
                m = {k: run.med_each([x.get(k) for x in runs]) if k.endswith("_each")
                     else run.med([x.get(k) for x in runs]) for k in keys}
                m["runs"] = len(runs)
                m["all_ok"] = all(x["ok"] for x in runs)
                m["all_verified"] = all(x["verified"] for x in runs)
                m["errors_total"] = sum(x["errors"] for x in runs)
                m["spread"] = run.spread(runs, "per_s")
                per[load] = m
            if per:
                agg[proto][t] = per
    return agg


def added(agg_p, t, key):
    d = agg_p.get("direct", {}).get("rate", {}).get(key)
    v = agg_p.get(t, {}).get("rate", {}).get(key)
    return None if d is None or v is None or t == "direct" else v - d


def ratios(run, agg):
    out = {}
    for proto, by_t in agg.items():
        r = {"vs_direct": {t: run.ratio(m.get("sat", {}).get("per_s"),
                                        by_t.get("direct", {}).get("sat", {}).get("per_s"))
                           for t, m in by_t.items()},
             "p50_added_us": {t: added(by_t, t, "p50_us") for t in by_t if t != "direct"},
             "p99_added_us": {t: added(by_t, t, "p99_us") for t in by_t if t != "direct"}}
        for a, b in RATIO_PAIRS:
            if a not in by_t or b not in by_t:
                continue
            sa, sb = by_t[a].get("sat", {}), by_t[b].get("sat", {})
            ra, rb = by_t[a].get("rate", {}), by_t[b].get("rate", {})
            r[a + "/" + b] = {
                "per_s": run.ratio(sa.get("per_s"), sb.get("per_s")),
                "cpu_us_per_req": run.ratio(sa.get("cpu_us_per_req"), sb.get("cpu_us_per_req")),
                "cpu_us_per_req_rate": run.ratio(ra.get("cpu_us_per_req"),
                                                 rb.get("cpu_us_per_req")),
                "p50_added": run.ratio(r["p50_added_us"].get(a), r["p50_added_us"].get(b)),
                "p99_added": run.ratio(r["p99_added_us"].get(a), r["p99_added_us"].get(b)),
                "peak_rss_kb": run.ratio(sa.get("peak_rss_kb"), sb.get("peak_rss_kb")),
                "rate_rss_kb": run.ratio(ra.get("peak_rss_kb"), rb.get("peak_rss_kb")),
            }
        out[proto] = r
    return out


def target_checks(agg, rate):
    """The issue's targets, as lines of text: CPU per request per hop at or below HAProxy's (at
    saturation, single proxy and pair), and RSS at the fixed rate at most 10 MB per proxy."""
    lines = []
    for proto, by_t in agg.items():
        for w, h in (("weft", "haproxy"), ("weft-pair", "haproxy-pair")):
            if w in by_t and h in by_t:
                a = by_t[w].get("sat", {}).get("cpu_us_per_req_hop")
                b = by_t[h].get("sat", {}).get("cpu_us_per_req_hop")
                if a is not None and b is not None:
                    lines.append("%s %-10s CPU/req/hop at saturation %5.1f us vs %-12s %5.1f us: %s" % (
                        proto, w, a, h, b, "met" if a <= b else "NOT met (%.2fx)" % (a / b)))
        for t in by_t:
            if t.startswith("weft"):
                kb = by_t[t].get("rate", {}).get("peak_rss_kb")
                if kb is not None:
                    lines.append("%s %-10s peak RSS at %d req/s %5.1f MB per proxy (limit 10 MB): "
                                 "%s" % (proto, t, rate, kb / 1024.0, "met" if kb <= RSS_LIMIT_KB
                        else "NOT met"))
    return lines


def print_tables(run, args, agg, rat):
    fmt, fmt_mb = run.fmt, run.fmt_mb
    out = []
    for proto, by_t in agg.items():
        out.append("")
        out.append("== %s: %s. saturation: %d conns x %d stream(s), %gs; fixed rate: %d req/s "
                   "(%d conns); %d run(s), median ==" % (
                       proto, PROTOCOLS[proto], args.conns,
                       1 if proto == "h1" else args.h2_streams, args.duration, args.rate,
                       args.conns, args.reps))
        out.append("%-13s %8s %6s %8s %8s %7s | %6s %6s %7s %7s %8s | %8s %8s | %6s %6s %6s" % (
            "target", "req/s", "vs dir", "CPU us/", "us/req/", "proxy", "p50 us", "p99 us",
            "p50 +us", "p99 +us", "CPU us/", "peak RSS", "RSS@rate", "load %", "other%",
            "spread"))
        out.append("%-13s %8s %6s %8s %8s %7s | %6s %6s %7s %7s %8s | %8s %8s | %6s %6s %6s" % (
            "", "(sat)", "", "req", "hop", "CPU %", "", "", "", "", "req@rate", "(sat)", "",
            "(sat)", "(sat)", ""))
        vs = rat[proto]["vs_direct"]
        for t, per in by_t.items():
            s, r = per.get("sat", {}), per.get("rate", {})
            bad = [("%s: %d error(s)%s" % (load, per[load]["errors_total"],
                                           "" if per[load]["all_verified"] else ", bytes off"))
                   for load in LOADS if load in per
                   and (not per[load]["all_ok"] or not per[load]["all_verified"])]
            out.append("%-13s %8s %6s %8s %8s %7s | %6s %6s %7s %7s %8s | %8s %8s | %6s %6s %6s%s" % (
                t, fmt(s.get("per_s"), ".0f"), fmt(vs.get(t), ".2f"),
                fmt(s.get("cpu_us_per_req"), ".1f"), fmt(s.get("cpu_us_per_req_hop"), ".1f"),
                fmt(run.pct(s.get("proxy_util")), ".0f"),
                fmt(r.get("p50_us"), ".0f"), fmt(r.get("p99_us"), ".0f"),
                fmt(rat[proto]["p50_added_us"].get(t), "+.0f"),
                fmt(rat[proto]["p99_added_us"].get(t), "+.0f"),
                fmt(r.get("cpu_us_per_req"), ".1f"),
                fmt_mb(s.get("peak_rss_kb")), fmt_mb(r.get("peak_rss_kb")),
                fmt(run.pct(s.get("load_cpu_util")), ".0f"),
                fmt(run.pct(s.get("background")), ".0f"), run.fmt_pct(s.get("spread")),
                ("  (!) " + "; ".join(bad)) if bad else ""))
    pairs = [(p, t, per["sat"]) for p, by_t in agg.items() for t, per in by_t.items()
             if len((per.get("sat") or {}).get("peak_rss_kb_each") or []) == 2]
    if pairs:
        out.append("")
        out.append("== each proxy of a pair at saturation: client side / server side ==")
        out.append("%-5s %-13s %17s %17s" % ("proto", "target", "CPU us/req", "peak RSS MB"))
        for p, t, m in pairs:
            cpu = m.get("cpu_us_per_req_each") or [None, None]
            out.append("%-5s %-13s %17s %17s" % (
                p, t, "%s / %s" % (fmt(cpu[0], ".1f"), fmt(cpu[1], ".1f")),
                "%s / %s" % tuple(fmt(v and v / 1024.0, ".1f") for v in m["peak_rss_kb_each"])))
    out.append("")
    out.append("== ratios A / B (req/s: above 1 means A is faster; CPU, added latency, RSS: below "
               "1 means A is cheaper) ==")
    cols = [("req/s", "per_s"), ("CPU/req", "cpu_us_per_req"),
            ("CPU@rate", "cpu_us_per_req_rate"), ("p50 +", "p50_added"),
            ("p99 +", "p99_added"), ("peak RSS", "peak_rss_kb"), ("RSS@rate", "rate_rss_kb")]
    out.append("%-5s %-26s" % ("proto", "A / B") + "".join("%9s" % c for c, _ in cols))
    for proto, r in rat.items():
        for name, vals in r.items():
            if "/" not in name:
                continue
            out.append("%-5s %-26s" % (proto, name) +
                       "".join("%9s" % fmt(vals.get(k), ".2f") for _, k in cols))
    checks = target_checks(agg, args.rate)
    if checks:
        out.append("")
        out.append("== the issue's targets (informational; nothing here fails the run) ==")
        out.extend(checks)
    print("\n".join(out))


# ----------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run --http",
        description="HTTP benchmark: h1 (HTTP/1.1 keep-alive) and h2 (h2c prior knowledge) "
                    "through weft-proxy, HAProxy and nginx, one proxy and a pair; see "
                    "bench/README.md",
    )
    ap.add_argument("--http", action="store_true", help="this mode (required)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 run of 2 s per measurement")
    ap.add_argument("--duration", type=int, help="seconds per measurement (5; --quick 2)")
    ap.add_argument("--reps", type=int, help="interleaved repetitions, median taken (3; --quick 1)")
    ap.add_argument("--targets", help="comma list from %s (all by default)" % ",".join(ALL_TARGETS))
    ap.add_argument("--protocols", default="h1,h2", help="comma list from h1,h2 (both)")
    ap.add_argument("--conns", type=int, default=16, help="client connections (16)")
    ap.add_argument("--h2-streams", type=int, default=10,
                    help="concurrent streams per h2 connection at saturation (10)")
    ap.add_argument("--rate", type=int, default=2000, help="the fixed rate, req/s (2000)")
    ap.add_argument("--latency-skip", type=float, default=0.2,
                    help="seconds at the start of a fixed-rate run left out of the latency (0.2)")
    ap.add_argument("--settle", type=float, default=0.3, help="seconds between ready and measuring")
    ap.add_argument("--weft-proxy", help="weft-proxy binary (default build/bin/weft-proxy)")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--h2load", default=shutil.which("h2load") or "/usr/bin/h2load")
    ap.add_argument("--weft-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every weft-proxy")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--nice", type=int, default=-10,
                    help="niceness of every benchmark process (-10; needs root for < 0; 0: off)")
    ap.add_argument("--out", help="JSON path (default bench/results/<timestamp>-http.json)")
    args = ap.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 5)
    args.reps = args.reps or (1 if args.quick else 3)
    args.targets = [t for t in (args.targets or ",".join(ALL_TARGETS)).split(",") if t]
    args.protocols = [p for p in args.protocols.split(",") if p]
    for t in args.targets:
        if t not in ALL_TARGETS:
            ap.error("unknown target %r" % t)
    for p in args.protocols:
        if p not in PROTOCOLS:
            ap.error("unknown protocol %r" % p)
    if "direct" not in args.targets:
        args.targets.insert(0, "direct")  # the added latency is against it
    if args.rate % args.conns:
        ap.error("--rate must be a multiple of --conns (h2load paces each connection)")
    if args.reps < 1 or args.duration < 1:
        ap.error("--reps and --duration must be at least 1")
    return args


def main(run):
    args = parse_args(sys.argv[1:])
    run.raise_priority(args)  # may re-run bench/run in a session of its own
    args.weft_proxy = run.find_binary(args.weft_proxy, "bin/weft-proxy", "weft-proxy",
                                      "scripts/build release")
    for name in ("haproxy", "nginx", "h2load"):
        if not os.access(getattr(args, name), os.X_OK):
            sys.exit("bench/run: %s not found (scripts/setup installs it)" % name)
    run.plan_cpus(args)
    args.pinned = lambda cmd: run.pinned(cmd, args.load_cpu)

    cells, failed = [], []
    started = datetime.datetime.now(datetime.timezone.utc)
    n_cells = args.reps * len(args.protocols) * len(LOADS) * len(args.targets)
    log("bench/run --http: %d measurements of %ds (%s x sat,rate x %s x %d reps); %s" % (
        n_cells, args.duration, ",".join(args.protocols), ",".join(args.targets), args.reps,
        args.pinning))
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="weft-bench-http-") as tmp:
        origin = Origin(run, args, tmp)
        try:
            i = 0
            for rep in range(args.reps):
                for proto in args.protocols:
                    for load in LOADS:
                        for t in args.targets:
                            i += 1
                            head = "  [%2d/%d] rep %d %s %-4s %-13s" % (i, n_cells, rep + 1, proto,
                                                                       load, t)
                            try:
                                cell = run_cell(run, args, tmp, origin, proto, load, t, rep)
                            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                                log("%s FAILED: %s" % (head, e))
                                failed.append({"protocol": proto, "load": load, "target": t,
                                               "rep": rep, "error": str(e)})
                                continue
                            cells.append(cell)
                            s = summarize_cell(cell)
                            r = cell["result"]
                            lat = ("  p50 %dus p99 %dus" % (s["p50_us"], s["p99_us"])
                                   if "p50_us" in s else "")
                            log("%s %7.0f req/s%s  proxy %s us/req  load cpu %3.0f%%  "
                                "background %s%%%s" % (
                                    head, s["per_s"] or 0, lat, run.fmt(s["cpu_us_per_req"], ".1f"),
                                    s["load_cpu_util"] * 100, run.fmt(run.pct(s["background"]),
                                                                      ".0f"),
                                    "" if s["ok"] and s["verified"] else
                                    "  ERRORS: %d non-2xx, %d failed, %d errored, %d timeout; "
                                    "body bytes %s" % (r["non_2xx"], r["failed"], r["errored"],
                                                       r["timeout"], "ok" if r["verified"]
                                                       else "WRONG")))
                            if not s["ok"] or not s["verified"]:
                                for text in cell.get("proxy_log", []):
                                    for line in text.splitlines()[-3:]:
                                        log("      proxy log: " + line)
        finally:
            run.stop(origin.proc)
    elapsed = time.monotonic() - t_start

    agg = aggregate(run, cells, args.protocols, args.targets)
    rat = ratios(run, agg)
    print("weft-proxy HTTP benchmark, %s; %s, nice %d; %ds per measurement, %d interleaved run(s), "
          "medians; total %.0fs" % (started.strftime("%Y-%m-%d %H:%M UTC"), args.pinning,
                                    args.nice, args.duration, args.reps, elapsed))
    print("origin: nginx, 100-byte body, on the client's CPU; client: h2load, 1 thread. "
          "weft-proxy: 1 worker, identity off, detection on. HAProxy: nbthread 1, mode http. "
          "nginx: 1 process; h2 upstream via grpc_pass. 'pair' = two proxies in a row.")
    print_tables(run, args, agg, rat)

    result = {
        "mode": "http",
        "started": started.isoformat(),
        "elapsed_s": elapsed,
        "host": {"kernel": platform.release(), "cpus_available": args.cpus_available,
                 "nproc": os.cpu_count(), "pinning": args.pinning, "nice": args.nice},
        "versions": {"haproxy": run.version_of([args.haproxy, "-v"]),
                     "nginx": subprocess.run([args.nginx, "-v"], capture_output=True,
                                             text=True).stderr.strip(),
                     "h2load": run.version_of([args.h2load, "--version"]),
                     "weft_git": run.version_of(["git", "-C", run.REPO, "describe", "--always",
                                                 "--dirty"]),
                     "weft_proxy": args.weft_proxy,
                     "weft_proxy_mtime": datetime.datetime.fromtimestamp(
                         os.path.getmtime(args.weft_proxy), datetime.timezone.utc).isoformat()},
        "config": {k: getattr(args, k) for k in ("duration", "reps", "targets", "protocols",
                                                  "conns", "h2_streams", "rate", "latency_skip",
                                                  "weft_env", "quick")},
        "summary": agg,
        "ratios": rat,
        "target_checks": target_checks(agg, args.rate),
        "runs": cells,
        "failed": failed,
    }
    out = args.out or os.path.join(run.REPO, "bench", "results", started.strftime(
        "%Y%m%dT%H%M%SZ") + "-http" + ("-quick" if args.quick else "") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("\nJSON: %s" % os.path.relpath(out))
    bad = ["%s/%s/%s" % (p, t, load) for p, by_t in agg.items() for t, per in by_t.items()
           for load, m in per.items() if not m["all_ok"] or not m["all_verified"]]
    if bad:
        print("ERROR: non-2xx responses, failed requests or wrong body bytes in: %s (see the JSON)"
              % ", ".join(bad))
    if failed:
        print("ERROR: %d measurement(s) failed: %s" % (
            len(failed), "; ".join("%s/%s/%s: %s" % (f["protocol"], f["target"], f["load"],
                                                     f["error"]) for f in failed)))
    return 1 if bad or failed else 0
