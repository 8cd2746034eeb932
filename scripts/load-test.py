#!/usr/bin/env python3
"""Load test of `sine serve` on loopback (standard library only).

Starts `sine serve` on a free port with the bundled model, then N requests from C concurrent
clients: txt2img at 64 px (A1111 route), progress polls, and malformed requests (bad JSON, a bad
field, an unknown route). Reports latency p50/p95 per kind, responses by class, and the server's
resident memory after each half of the run (it should stay flat: no growth from the first half to
the second) and its peak (VmHWM).

    scripts/load-test.py --sine build/sine [--requests 200] [--clients 8] [--steps 10] [--json out.json]
"""
import argparse
import http.client
import json
import random
import statistics
import subprocess
import sys
import threading
import time


def rss_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sine", default="build/sine")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="the server's CPU threads")
    ap.add_argument("--json", default="")
    ap.add_argument("--max-rss-growth-mb", type=float, default=0,
                    help="fail when the RSS grows more than this from the first half to the second (0: report only)")
    ap.add_argument("--data", default="/tmp/sine-load-test", help="the server's artefact folder")
    args = ap.parse_args()

    server = subprocess.Popen([args.sine, "-q", "--threads", str(args.threads), "serve", "--port", "0",
                               "--data", args.data, "--queue", str(args.clients)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    if not line.startswith("listening "):
        sys.exit(f"sine serve did not start: {line!r}")
    port = int(line.split()[1])

    rng = random.Random(0)
    plan = []
    for i in range(args.requests):
        r = rng.random()
        kind = "malformed" if r < 0.10 else ("progress" if r < 0.55 else "txt2img")
        plan.append((i, kind))
    results = []  # (index, kind, status or exception name, seconds)
    lock = threading.Lock()
    next_index = [0]
    half_rss = {}

    def request(i, kind):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        headers = {"Content-Type": "application/json"}
        if kind == "txt2img":
            body = json.dumps({"prompt": "a red circle in the center on a white background", "steps": args.steps,
                               "cfg_scale": 5, "seed": i, "width": 64, "height": 64})
            conn.request("POST", "/sdapi/v1/txt2img", body, headers)
        elif kind == "progress":
            conn.request("GET", "/sdapi/v1/progress?skip_current_image=true")
        else:
            bad = i % 3
            if bad == 0:
                conn.request("POST", "/sdapi/v1/txt2img", "{not json", headers)
            elif bad == 1:
                conn.request("POST", "/sdapi/v1/txt2img", json.dumps({"steps": "many"}), headers)
            else:
                conn.request("GET", "/sdapi/v1/nowhere")
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status

    def client():
        while True:
            with lock:
                if next_index[0] >= len(plan):
                    return
                i, kind = plan[next_index[0]]
                next_index[0] += 1
                if next_index[0] == len(plan) // 2:
                    half_rss["first"] = rss_kb(server.pid, "VmRSS")
            t0 = time.perf_counter()
            try:
                status = request(i, kind)
            except Exception as e:  # a connection error counts as its own class
                status = type(e).__name__
            with lock:
                results.append((i, kind, status, time.perf_counter() - t0))

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    half_rss["second"] = rss_kb(server.pid, "VmRSS")
    peak = rss_kb(server.pid, "VmHWM")
    server.terminate()
    server.wait(timeout=60)

    by_kind = {}
    classes = {}
    for _, kind, status, seconds in results:
        by_kind.setdefault(kind, []).append(seconds)
        cls = f"{status // 100}xx" if isinstance(status, int) else status
        classes.setdefault(kind, {}).setdefault(cls, 0)
        classes[kind][cls] += 1
    print(f"{len(results)} requests, {args.clients} clients, {wall:.1f} s wall, txt2img {args.steps} steps at 64 px")
    print(f"{'kind':<10} {'n':>4} {'p50 ms':>9} {'p95 ms':>9}  responses")
    for kind in ("txt2img", "progress", "malformed"):
        v = by_kind.get(kind, [])
        print(f"{kind:<10} {len(v):>4} {1000 * percentile(v, 50):>9.1f} {1000 * percentile(v, 95):>9.1f}  "
              f"{json.dumps(classes.get(kind, {}), sort_keys=True)}")
    print(f"server RSS after the first half {half_rss.get('first', 0) / 1024:.0f} MB, after the second "
          f"{half_rss['second'] / 1024:.0f} MB, peak {peak / 1024:.0f} MB")
    report = {"requests": len(results), "clients": args.clients, "wall_seconds": wall,
              "latency_ms": {k: {"p50": 1000 * percentile(v, 50), "p95": 1000 * percentile(v, 95), "n": len(v)}
                             for k, v in by_kind.items()},
              "responses": classes, "rss_mb": {"first_half": half_rss.get("first", 0) / 1024,
                                               "second_half": half_rss["second"] / 1024, "peak": peak / 1024}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    bad = [r for r in results if not isinstance(r[2], int) or (r[1] != "malformed" and r[2] != 200)
           or (r[1] == "malformed" and r[2] not in (400, 404))]
    if bad:
        print(f"unexpected responses: {bad[:5]}")
        sys.exit(1)
    growth = (half_rss["second"] - half_rss.get("first", 0)) / 1024
    if args.max_rss_growth_mb > 0 and growth > args.max_rss_growth_mb:
        print(f"RSS grew {growth:.0f} MB from the first half to the second (limit {args.max_rss_growth_mb:.0f} MB)")
        sys.exit(1)


if __name__ == "__main__":
    main()
