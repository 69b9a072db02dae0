#!/usr/bin/env python3
"""Client of bench/pinned.sh's idle run (not meant to be run alone).

Opens N TCP connections to a proxy on loopback and leaves them idle, then reads
the proxy's memory from /proc: before, with all of them open, and after the
client has closed them all. Two variants:

- request: each connection first sends one HTTP/1.1 GET and reads the whole
  response (keep-alive), then stays open, as a browser's idle connection does;
- silent: each connection sends nothing (a client that connected and stalled);
- partial: each connection sends the first byte of a request and stalls (what
  a slow or hostile client holds: the proxy has started reading a head).

Connections are opened a few hundred at a time so that no proxy's listen
backlog overflows (a dropped SYN costs a 1 s retransmit, not memory). Before
reading the memory the client checks how many connections the proxy still holds
open (it may close some, e.g. a slow-client guard): those figures count only if
that is N.

Prints one line of key=value pairs; exits non-zero if a connection failed.
"""
import argparse
import asyncio
import collections
import os
import resource
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--pids", required=True, help="the proxy's PIDs, space-separated")
p.add_argument("--conns", type=int, default=10000)
p.add_argument("--variant", choices=["request", "silent", "partial"], required=True)
p.add_argument("--concurrency", type=int, default=200)
p.add_argument("--settle", type=float, default=2.0, help="seconds before each reading")
p.add_argument("--timeout", type=float, default=10.0)
a = p.parse_args()
pids = [int(x) for x in a.pids.split()]
REQUEST = b"GET / HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: wharf-bench-idle\r\n\r\n"


def status_kb(field):
    """A /proc/PID/status field in kB, summed over the proxy's processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def open_fds():
    """Open file descriptors of the proxy's processes."""
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except FileNotFoundError:
            pass
    return n


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"status {status.decode()}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise RuntimeError("chunked response: the backend should send Content-Length")
    if length:
        await reader.readexactly(length)


async def open_one(sem, conns, errors):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", a.port), a.timeout
            )
            if a.variant == "request":
                writer.write(REQUEST)
                await writer.drain()
                await asyncio.wait_for(read_response(reader), a.timeout)
            elif a.variant == "partial":
                writer.write(REQUEST[:1])
                await writer.drain()
            conns.append((reader, writer))
        except Exception as e:  # counted and reported, never hidden
            errors[type(e).__name__] += 1


async def wait_fds_below(limit, deadline):
    """Wait until the proxy has closed its side (fd count back down)."""
    end = time.monotonic() + deadline
    while open_fds() > limit and time.monotonic() < end:
        await asyncio.sleep(0.1)


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < a.conns + 100:
        sys.exit(f"open-file limit {hard} is below {a.conns} connections + 100")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    await asyncio.sleep(a.settle)
    rss_before, fds_before = status_kb("VmRSS"), open_fds()
    conns, errors = [], collections.Counter()
    sem = asyncio.Semaphore(a.concurrency)
    t0 = time.monotonic()
    await asyncio.gather(*(open_one(sem, conns, errors) for _ in range(a.conns)))
    open_s = time.monotonic() - t0

    await asyncio.sleep(a.settle)  # also lets EOFs from the proxy arrive
    still_open = sum(1 for r, w in conns if not r.at_eof() and not w.is_closing())
    rss_open, hwm, fds_open = status_kb("VmRSS"), status_kb("VmHWM"), open_fds()

    for _, w in conns:
        w.close()
    await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
    await wait_fds_below(fds_before + 50, 30.0)
    await asyncio.sleep(a.settle)
    rss_after, fds_after = status_kb("VmRSS"), open_fds()

    errs = ",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "-"
    print(
        f"rss_before={rss_before} rss_open={rss_open} hwm={hwm} rss_after={rss_after} "
        f"opened={len(conns)} still_open={still_open} fds_before={fds_before} "
        f"fds_open={fds_open} fds_after={fds_after} open_s={open_s:.2f} errors={errs}"
    )
    return 1 if errors else 0


sys.exit(asyncio.run(main()))
