#!/usr/bin/env python3
"""Driver for bench/discovery.sh (not meant to be run alone).

Every wharf given with --wharf NAME:PID:ADMIN_PORT watches the same Docker
daemon at the same time, so each phase is measured once for all of them under
the same conditions (and the host is populated only once). Phases:

1. CPU per unrelated event with N running unlabelled containers (--sizes):
   the host is filled up to N containers that carry no wharf label
   (`--network none`, so no bridge port is used), then `--cycles` times one
   more unlabelled container is run and removed (`docker run -d` + `docker rm
   -f`: start, kill, die, destroy and network events). CPU of each wharf
   (sum of /proc/PID/task/*/schedstat run time) during the cycles, minus its
   idle rate measured just before, ÷ the events it received (its own
   /api/state counter); its re-lists (syncs) and look-ups in the same window.
2. A burst of --burst labelled containers (`docker run -d`, 8 at a time):
   time from the last `docker run` returning to all of them ready in each
   wharf's /api/state.
3. `docker rm -f` of --kill of them in one call: for each container, Docker's
   own `kill` event timestamp → the first /api/state poll that no longer shows
   it ready (draining or gone); p50 / p99 / max per wharf. Also how late the
   `docker events` CLI received the same events (the daemon's delivery lag).
4. Re-list cost with one container carrying --labels unknown `wharf.*`
   labels: CPU per re-list while a labelled container is paused and unpaused
   (each event about a candidate asks for a re-list), without and with the
   many-label container running; then CPU per unrelated event with it.

Everything it creates carries --run-label and a name starting with --prefix;
it removes it all at the end (discovery.sh also does, by label, at exit).
Prints markdown tables; asserts nothing.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--wharf", action="append", required=True, help="NAME:PID:ADMIN_PORT")
p.add_argument("--log", action="append", default=[], help="NAME=PATH of that wharf's log")
p.add_argument("--image", required=True)
p.add_argument("--network", required=True)
p.add_argument("--run-label", required=True)
p.add_argument("--prefix", required=True)
p.add_argument("--sizes", default="10,300,1000")
p.add_argument("--cycles", type=int, default=12)
p.add_argument("--burst", type=int, default=200)
p.add_argument("--kill", type=int, default=100)
p.add_argument("--labels", type=int, default=2000)
p.add_argument("--pauses", type=int, default=10)
p.add_argument("--parallel", type=int, default=8)
p.add_argument("--min-free-gib", type=float, default=4.0)
a = p.parse_args()

now = time.monotonic
WHARFS = []
for spec in a.wharf:
    name, pid, port = spec.rsplit(":", 2)
    WHARFS.append((name, int(pid), int(port)))
NAMES = [w[0] for w in WHARFS]
LOGS = dict(spec.split("=", 1) for spec in a.log)


def logged_drain_lags(name):
    """wharf's own kill → draining lag per container id prefix, in ms, from its
    log ("stop signal: draining … id=… lag_us=…"): Docker's event timestamp to
    the backend out of rotation, with no poller in between."""
    lags = {}
    try:
        text = open(LOGS[name], errors="replace").read()
    except (KeyError, OSError):
        return lags
    for line in text.splitlines():
        if "stop signal: draining" not in line:
            continue
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        try:
            lags[fields["id"].strip('"')] = int(fields["lag_us"]) / 1e3
        except (KeyError, ValueError):
            pass
    return lags



def log(*args):
    print(*args, file=sys.stderr, flush=True)


def docker(*args, check=True):
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def cpu_ns(pid):
    """Run time of every live thread of PID, ns (schedstat: exact, not ticks)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


class Admin:
    """One keep-alive connection to a wharf's admin API."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def state(self):
        for _ in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.conn.request("GET", "/api/state")
                r = self.conn.getresponse()
                body = r.read()
                if r.status == 200:
                    return json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        return None


def discovery(state):
    """(events, full re-lists, look-ups of single containers) so far."""
    d = (state or {}).get("discovery") or {}
    return d.get("events", 0), d.get("syncs", 0), d.get("lookups", 0)


def pool_backends(state, pool):
    for p in (state or {}).get("pools", []):
        if p.get("name") == pool:
            return p.get("backends", [])
    return []


# --- containers --------------------------------------------------------------
unlabelled = []  # ids of the filler containers
seq = [0]


def run_unlabelled():
    seq[0] += 1
    return docker(
        "run", "-d", "--network", "none", "--name", f"{a.prefix}-u{seq[0]}",
        "--label", a.run_label, a.image,
    ).stdout.strip()


def free_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1048576
    return 0.0


def fill_to(n):
    """Run unlabelled containers until the host runs n of ours (fewer if memory runs short)."""
    t0 = now()
    with cf.ThreadPoolExecutor(a.parallel) as ex:
        while len(unlabelled) < n:
            if free_gib() < a.min_free_gib:
                log(f"  stopping at {len(unlabelled)} containers: {free_gib():.1f} GiB available")
                break
            batch = min(n - len(unlabelled), 50)
            unlabelled.extend(ex.map(lambda _: run_unlabelled(), range(batch)))
    log(f"  {len(unlabelled)} unlabelled containers running ({now() - t0:.0f} s to start them)")
    return len(unlabelled)


def running_total():
    return len(docker("ps", "-q").stdout.split())


def snapshot():
    """(cpu ns, events, syncs, lookups) per wharf."""
    out = {}
    for name, pid, port in WHARFS:
        ev, sy, lk = discovery(ADMINS[name].state())
        out[name] = (cpu_ns(pid), ev, sy, lk)
    return out


def idle_rates(seconds=3.0):
    s0, t0 = snapshot(), now()
    time.sleep(seconds)
    s1, t1 = snapshot(), now()
    return {n: (s1[n][0] - s0[n][0]) / (t1 - t0) for n in NAMES}


def measure(work):
    """Run work(); per wharf: (CPU ns above idle, events, syncs, seconds, lookups)."""
    idle = idle_rates()
    s0, t0 = snapshot(), now()
    work()
    time.sleep(1.0)  # the re-list after the last event, and its 250 ms second look
    s1, t1 = snapshot(), now()
    out = {}
    for n in NAMES:
        cpu = s1[n][0] - s0[n][0] - idle[n] * (t1 - t0)
        out[n] = (max(cpu, 0.0), s1[n][1] - s0[n][1], s1[n][2] - s0[n][2], t1 - t0, s1[n][3] - s0[n][3])
    return out


def unrelated_cycles():
    for i in range(a.cycles):
        cid = docker(
            "run", "-d", "--network", "none", "--name", f"{a.prefix}-x{seq[0]}-{i}",
            "--label", a.run_label, a.image,
        ).stdout.strip()
        docker("rm", "-f", cid)


ADMINS = {name: Admin(port) for name, _, port in WHARFS}
results = {"unrelated": [], "burst": {}, "kill": {}, "relist": []}

# --- 1. unrelated events -----------------------------------------------------
for size in [int(s) for s in a.sizes.split(",") if s]:
    log(f"phase 1: {size} running unlabelled containers")
    got = fill_to(size)
    m = measure(unrelated_cycles)
    results["unrelated"].append((got, running_total(), m))
    for n in NAMES:
        cpu, ev, sy, _, lk = m[n]
        log(f"  {n}: {cpu / 1e6:.1f} ms CPU, {ev} events, {sy} re-lists, {lk} look-ups → {cpu / max(ev, 1) / 1e3:.0f} µs/event")

# --- 2. a burst of labelled containers -------------------------------------
pool = f"{a.prefix}-burst"
log(f"phase 2: burst of {a.burst} labelled containers (pool {pool})")
ready_at = {n: None for n in NAMES}
stop_polling = threading.Event()


def poll_ready(name):
    adm = Admin(ADMINS[name].port)
    while not stop_polling.is_set():
        st = adm.state()
        ready = sum(1 for b in pool_backends(st, pool) if b.get("state") == "ready")
        if ready >= a.burst:
            ready_at[name] = now()
            return
        time.sleep(0.002)


pollers = [threading.Thread(target=poll_ready, args=(n,), daemon=True) for n in NAMES]
for t in pollers:
    t.start()
labelled = []


def run_labelled(i):
    return docker(
        "run", "-d", "--network", a.network, "--name", f"{a.prefix}-b{i}",
        "--label", f"wharf.pool={pool}", "--label", f"wharf.host={pool}.test",
        "--label", a.run_label, a.image,
    ).stdout.strip()


t_first = now()
with cf.ThreadPoolExecutor(a.parallel) as ex:
    labelled = list(ex.map(run_labelled, range(a.burst)))
t_last = now()
for t in pollers:
    t.join(timeout=60)
stop_polling.set()
results["burst"] = {
    "runs_s": t_last - t_first,
    "lag": {n: (None if ready_at[n] is None else (ready_at[n] - t_last) * 1000) for n in NAMES},
}
for n in NAMES:
    lag = results["burst"]["lag"][n]
    log(f"  {n}: all {a.burst} ready {'never (60 s)' if lag is None else f'{lag:.0f} ms'} after the last docker run returned ({t_last - t_first:.1f} s of docker runs)")

# --- 3. docker rm -f of many labelled containers ---------------------------
victims = labelled[: a.kill]
log(f"phase 3: docker rm -f of {len(victims)} labelled containers")
kill_ns, kill_seen_ns = {}, {}
ev_proc = subprocess.Popen(
    ["docker", "events", "--filter", "type=container", "--filter", "event=kill",
     "--filter", f"label={a.run_label}", "--format", "{{.TimeNano}} {{.ID}}"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
)


def read_events():
    for line in ev_proc.stdout:
        parts = line.split()
        if len(parts) == 2:
            kill_ns.setdefault(parts[1], int(parts[0]))
            kill_seen_ns.setdefault(parts[1], time.time_ns())


threading.Thread(target=read_events, daemon=True).start()
time.sleep(0.5)  # let the events stream attach
gone_ns = {n: {} for n in NAMES}
stop_polling = threading.Event()
victim_set = set(victims)


def poll_gone(name):
    adm = Admin(ADMINS[name].port)
    seen = gone_ns[name]
    while not stop_polling.is_set() and len(seen) < len(victim_set):
        st = adm.state()
        t = time.time_ns()
        if st is None:
            continue
        ready = {b.get("id") for b in pool_backends(st, pool) if b.get("state") == "ready"}
        for cid in victim_set:
            if cid not in seen and cid not in ready:
                seen[cid] = t


pollers = [threading.Thread(target=poll_gone, args=(n,), daemon=True) for n in NAMES]
for t in pollers:
    t.start()
t0 = now()
docker("rm", "-f", *victims)
rm_s = now() - t0
deadline = now() + 30
for t in pollers:
    t.join(timeout=max(0.0, deadline - now()))
stop_polling.set()
time.sleep(0.3)
ev_proc.terminate()


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


delivery = [(kill_seen_ns[c] - kill_ns[c]) / 1e6 for c in victims if c in kill_ns]
results["kill"] = {"rm_s": rm_s, "events": len(kill_ns), "delivery": delivery, "lag": {}, "own": {}, "logged": {}}
for n in NAMES:
    by_prefix = logged_drain_lags(n)
    results["kill"]["logged"][n] = [by_prefix[c[:12]] for c in victims if c[:12] in by_prefix]
    lags = [(gone_ns[n][c] - kill_ns[c]) / 1e6 for c in victims if c in kill_ns and c in gone_ns[n]]
    results["kill"]["lag"][n] = lags
    # From when the CLI got the event: about wharf's own share (it is
    # delivered to both at about the same time), never below 0.
    results["kill"]["own"][n] = [
        max(0.0, (gone_ns[n][c] - kill_seen_ns[c]) / 1e6) for c in victims if c in kill_seen_ns and c in gone_ns[n]
    ]
    missing = len(victims) - len(lags)
    log(f"  {n}: kill → not ready p50 {pct(lags, .5)} p99 {pct(lags, .99)} max {max(lags) if lags else None} ms ({missing} not seen)")
docker("rm", "-f", *labelled[a.kill:], check=False)
labelled = []

# --- 4. re-list cost with thousands of unknown labels ----------------------
log(f"phase 4: re-list cost with one container carrying {a.labels} unknown wharf.* labels")
pp = f"{a.prefix}-paused"
probe = docker(
    "run", "-d", "--network", a.network, "--name", pp, "--label", f"wharf.pool={pp}",
    "--label", a.run_label, a.image,
).stdout.strip()
time.sleep(1.0)


def pause_cycles():
    for _ in range(a.pauses):
        docker("pause", probe)
        time.sleep(0.3)  # each pause and unpause its own burst
        docker("unpause", probe)
        time.sleep(0.3)


plain = measure(pause_cycles)
with tempfile.NamedTemporaryFile("w", suffix=".labels", delete=False) as f:
    for i in range(a.labels):
        f.write(f"wharf.unknown{i}=value-{i}\n")
    label_file = f.name
many = docker(
    "run", "-d", "--network", a.network, "--name", f"{a.prefix}-labels", "--label-file", label_file,
    "--label", f"wharf.pool={a.prefix}-labels", "--label", a.run_label, a.image,
).stdout.strip()
os.unlink(label_file)
time.sleep(2.0)
heavy = measure(pause_cycles)
heavy_unrelated = measure(unrelated_cycles)
results["relist"] = (plain, heavy, heavy_unrelated)
for n in NAMES:
    for what, m in (("without", plain), ("with", heavy)):
        cpu, ev, sy, _, _ = m[n]
        log(f"  {n} {what}: {cpu / 1e6:.1f} ms CPU, {sy} re-lists → {cpu / max(sy, 1) / 1e6:.2f} ms/re-list")
docker("rm", "-f", probe, many, check=False)

# --- tables ------------------------------------------------------------------


def f1(x, unit=""):
    return "-" if x is None else f"{x:,.1f}{unit}"


cols = " | ".join(NAMES)
sep = " | ".join("---:" for _ in NAMES)
print(f"| CPU per unrelated event (µs) | {cols} |")
print(f"| --- | {sep} |")
for got, total, m in results["unrelated"]:
    cells = " | ".join(f"{m[n][0] / max(m[n][1], 1) / 1e3:,.0f}" for n in NAMES)
    print(f"| {got} unlabelled containers running ({total} on the host) | {cells} |")
for got, total, m in results["unrelated"]:
    cells = " | ".join(f"{m[n][1]} / {m[n][2]} / {m[n][4]}" for n in NAMES)
    print(f"| … events received / re-lists / look-ups made, {got} containers | {cells} |")
cells = " | ".join(f"{heavy_unrelated[n][0] / max(heavy_unrelated[n][1], 1) / 1e3:,.0f}" for n in NAMES)
print(f"| with the {a.labels}-label container, {len(unlabelled)} containers | {cells} |")
print()
b = results["burst"]
print(f"| burst of {a.burst} labelled containers ({b['runs_s']:.1f} s of `docker run`, {a.parallel} at a time) | {cols} |")
print(f"| --- | {sep} |")
cells = " | ".join(f1(b["lag"][n], " ms") if b["lag"][n] is not None else "not all ready in 60 s" for n in NAMES)
print(f"| last `docker run` returned → all ready | {cells} |")
print()
k = results["kill"]
print(f"| `docker rm -f` of {len(victims)} labelled containers ({k['rm_s']:.1f} s): kill event → not ready, ms | {cols} |")
print(f"| --- | {sep} |")
for label, q in (("p50", .5), ("p99", .99), ("max", 1.0)):
    cells = " | ".join(f1(pct(k["lag"][n], q)) for n in NAMES)
    print(f"| {label} | {cells} |")
cells = " | ".join(f"{len(k['lag'][n])} / {k['events']}" for n in NAMES)
print(f"| seen / kill events | {cells} |")
for label, q in (("p50", .5), ("p99", .99), ("max", 1.0)):
    cells = " | ".join(f1(pct(k["own"][n], q)) for n in NAMES)
    print(f"| {label} from when the `docker events` CLI received it (wharf's own share) | {cells} |")
cells = " | ".join(f"{f1(pct(k['logged'][n], .5))} / {f1(pct(k['logged'][n], .99))} / {f1(max(k['logged'][n]) if k['logged'][n] else None)} ({len(k['logged'][n])})" for n in NAMES)
print(f"| p50 / p99 / max from wharf's log: event timestamp → draining, no poller (containers) | {cells} |")
d = k["delivery"]
print(f"| (the `docker events` CLI received the same events: p50 {f1(pct(d, .5))}, p99 {f1(pct(d, .99))}, max {f1(max(d) if d else None)} ms after their timestamps) | {' | '.join('' for _ in NAMES)} |")
print()
print(f"| re-list cost (ms CPU per re-list, pause/unpause of a labelled container) | {cols} |")
print(f"| --- | {sep} |")
for what, m in (("without", plain), (f"with one {a.labels}-label container", heavy)):
    cells = " | ".join(f"{m[n][0] / max(m[n][2], 1) / 1e6:.2f} ({m[n][2]} re-lists)" for n in NAMES)
    print(f"| {what} | {cells} |")
