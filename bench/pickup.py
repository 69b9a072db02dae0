#!/usr/bin/env python3
"""Driver for bench/pickup.sh (not meant to be run alone).

For each run i: `docker run -d` a demo container labelled wharf.pool=bench-<i>,
wharf.host=b<i>.test, then poll wharf with Host: b<i>.test until the first 200
(time measured from `docker run` returning); then `docker stop` it and poll
/api/state until pool bench-<i> has no ready backend (time measured from the
moment `docker stop` is called); then remove the container.

Prints one line per run and a summary; exits non-zero if any run timed out.
"""
import argparse
import atexit
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--admin", type=int, required=True)
p.add_argument("--runs", type=int, default=20)
p.add_argument("--image", required=True)
p.add_argument("--network", required=True)
p.add_argument("--run-label", required=True)
p.add_argument("--poll-interval-ms", type=float, default=0.0)
p.add_argument("--timeout", type=float, default=10.0)
a = p.parse_args()

now = time.monotonic
interval = a.poll_interval_ms / 1000.0


class Poller:
    """One keep-alive connection, reopened whenever it breaks."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path, host=None):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                headers = {"Host": host} if host else {}
                self.conn.request("GET", path, headers=headers)
                r = self.conn.getresponse()
                body = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, body
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        return 0, b""


def ready_backends(state, pool):
    for p in state.get("pools", []):
        if p.get("name") == pool:
            return sum(1 for b in p.get("backends", []) if b.get("state") == "ready")
    return 0


def docker(*args, check=True):
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


class Events:
    """`docker events` for our containers: Docker's own timestamps of start
    and kill, to tell wharf's share of a delay from the CLI's and the daemon's."""

    def __init__(self, label):
        self.seen = {}
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", f"label={label}",
             "--format", "{{.Action}} {{.TimeNano}} {{.ID}}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        atexit.register(self.close)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 3:
                with self.cond:
                    self.seen.setdefault((parts[2], parts[0]), int(parts[1]))
                    self.cond.notify_all()

    def wall_ns(self, cid, action, timeout=5.0):
        with self.cond:
            self.cond.wait_for(lambda: (cid, action) in self.seen, timeout)
            return self.seen.get((cid, action))

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


events = Events(a.run_label)
time.sleep(0.3)  # let the events stream attach before the first run
proxy = Poller(a.port)
admin = Poller(a.admin)
pickup, pickup_total, run_call, drained, stop_call = [], [], [], [], []
from_start_event, from_kill_event = [], []
polls = []
failed = 0
print(f"{'run':>4} {'docker run':>11} {'→ 200':>9} {'polls':>6} {'start ev→200':>13} {'docker stop':>12} {'→ drained':>10} {'kill ev→drained':>16}", file=sys.stderr)
for i in range(1, a.runs + 1):
    pool, host = f"bench-{i}", f"b{i}.test"
    t_call = now()
    cid = docker(
        "run", "-d", "--network", a.network,
        "--label", f"wharf.pool={pool}", "--label", f"wharf.host={host}",
        "--label", a.run_label, a.image,
    ).stdout.strip()
    t0 = now()
    n = 0
    while True:
        status, _ = proxy.get("/", host)
        n += 1
        if status == 200:
            t1 = now()
            w1 = time.time_ns()
            break
        if now() - t0 > a.timeout:
            t1 = None
            break
        if interval:
            time.sleep(interval)
    if t1 is None:
        print(f"{i:>4} no 200 within {a.timeout}s (last status {status})", file=sys.stderr)
        failed += 1
        docker("rm", "-f", cid, check=False)
        continue
    run_call.append((t0 - t_call) * 1000)
    pickup.append((t1 - t0) * 1000)
    pickup_total.append((t1 - t_call) * 1000)
    polls.append(n)
    start_ns = events.wall_ns(cid, "start")
    if start_ns:
        from_start_event.append((w1 - start_ns) / 1e6)

    # Let the start burst settle, then stop it and watch /api/state.
    time.sleep(0.2)
    s0 = now()
    stop = subprocess.Popen(["docker", "stop", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d1 = None
    stop_done = None
    while True:
        status, body = admin.get("/api/state")
        t = now()
        if stop_done is None and stop.poll() is not None:
            stop_done = t
        if status == 200 and ready_backends(json.loads(body), pool) == 0:
            d1 = t
            dw1 = time.time_ns()
            break
        if t - s0 > a.timeout:
            break
        if interval:
            time.sleep(interval)
    stop.wait()
    if stop_done is None:
        stop_done = now()
    docker("rm", "-f", cid, check=False)
    if d1 is None:
        print(f"{i:>4} still routed {a.timeout}s after docker stop", file=sys.stderr)
        failed += 1
        continue
    drained.append((d1 - s0) * 1000)
    kill_ns = events.wall_ns(cid, "kill")
    if kill_ns:
        from_kill_event.append((dw1 - kill_ns) / 1e6)
    stop_call.append((stop_done - s0) * 1000)
    sev = f"{(w1 - start_ns) / 1e6:>11.1f}ms" if start_ns else f"{'-':>13}"
    kev = f"{(dw1 - kill_ns) / 1e6:>14.1f}ms" if kill_ns else f"{'-':>16}"
    print(
        f"{i:>4} {run_call[-1]:>9.0f}ms {pickup[-1]:>7.1f}ms {n:>6} {sev} {stop_call[-1]:>10.0f}ms {drained[-1]:>8.1f}ms {kev}",
        file=sys.stderr,
    )


def row(name, xs):
    if not xs:
        return f"| {name:<50} | {'-':>8} | {'-':>8} | {'-':>8} |"
    return f"| {name:<50} | {statistics.median(xs):>8.1f} | {min(xs):>8.1f} | {max(xs):>8.1f} |"


print(f"| {'ms, ' + str(len(pickup)) + ' runs':<50} | {'median':>8} | {'min':>8} | {'max':>8} |")
print(f"| {'-' * 50} | {'-' * 7}: | {'-' * 7}: | {'-' * 7}: |")
print(row("pickup: docker run returned → first 200", pickup))
print(row("pickup incl. docker run: invoked → first 200", pickup_total))
print(row("(docker run -d itself)", run_call))
print(row("wharf's share: Docker's start event → first 200", from_start_event))
print(row("stop: docker stop called → not routed", drained))
print(row("(docker stop itself)", stop_call))
print(row("wharf's share: Docker's kill event → not routed", from_kill_event))
events.close()
if failed:
    print(f"{failed} run(s) failed", file=sys.stderr)
    sys.exit(1)
