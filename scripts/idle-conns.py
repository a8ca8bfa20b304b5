#!/usr/bin/env python3
"""Memory per idle connection: open N TLS (ALPN h2) connections to a server,
send the HTTP/2 preface and an empty SETTINGS on each, keep them open, and
report the server's resident memory before and after (from /proc).

    scripts/idle-conns.py --port 8443 --pid PID [--count 10000]
"""
import argparse
import asyncio
import resource
import ssl
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--count", type=int, default=10000)
ap.add_argument("--parallel", type=int, default=200)
args = ap.parse_args()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no such process")


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


async def main():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    before = rss_kib(args.pid)
    conns, failed = [], 0
    sem = asyncio.Semaphore(args.parallel)

    async def one():
        nonlocal failed
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", args.port, ssl=ctx)
                w.write(PREFACE)
                await w.drain()
                await r.readexactly(9)  # the server's SETTINGS header
                conns.append((r, w))
            except Exception:
                failed += 1

    start = time.time()
    await asyncio.gather(*(one() for _ in range(args.count)))
    await asyncio.sleep(2)
    after = rss_kib(args.pid)
    n = len(conns)
    print(f"{n} idle connections open ({failed} failed) in {time.time() - start:.1f} s")
    print(f"server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: "
          f"{(after - before) / max(n, 1):.1f} KiB per idle connection")
    for _, w in conns:
        w.close()


asyncio.run(main())
