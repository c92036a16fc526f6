#!/usr/bin/env python3
"""DHCP DORA latency probe for benchmarks: acts as a relay agent (giaddr = its own address,
replies come to its port 67, as perfdhcp does), runs one DISCOVER-OFFER-REQUEST-ACK exchange
after another with a fresh MAC each, for SECS seconds (or until SIGINT/SIGTERM) at most RATE per second, and prints one
line: "exchanges N timeouts T p50_ms X p99_ms Y max_ms Z".

    dora.py SERVER_IP RELAY_IP SECS [RATE [STOPFILE]]    (also stops once STOPFILE exists)
"""
import os
import signal
import socket
import struct
import sys
import time

server, relay, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
stopfile = sys.argv[5] if len(sys.argv) > 5 else None
TIMEOUT = 2.0

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((relay, 67))


def packet(xid, mac, msg_type, extra=b""):
    head = struct.pack(
        "!BBBBIHHIIII16s64s128s",
        1, 1, 6, 1, xid, 0, 0, 0, 0, 0,
        struct.unpack("!I", socket.inet_aton(relay))[0],
        mac + b"\0" * 10, b"", b"",
    )
    opts = bytes([53, 1, msg_type]) + extra + bytes([55, 3, 1, 3, 6, 255])
    return head + b"\x63\x82\x53\x63" + opts


def options(data):
    out, i = {}, 240
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        n = data[i + 1]
        out[code] = data[i + 2:i + 2 + n]
        i += 2 + n
    return out


def wait_reply(xid, want, deadline):
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(4096)
        except socket.timeout:
            return None
        if len(data) < 240 or struct.unpack("!I", data[4:8])[0] != xid:
            continue
        o = options(data)
        if o.get(53) == bytes([want]):
            return data, o


stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
lat, timeouts = [], 0
end = time.monotonic() + secs
n = 0
while time.monotonic() < end and not stop and not (stopfile and os.path.exists(stopfile)):
    n += 1
    t0 = time.monotonic()
    xid = struct.unpack("!I", os.urandom(4))[0]
    mac = b"\x02\xd0" + struct.pack("!I", (os.getpid() << 16 | n) & 0xFFFFFFFF)
    deadline = t0 + TIMEOUT
    sock.sendto(packet(xid, mac, 1), (server, 67))
    r = wait_reply(xid, 2, deadline)
    if r is not None:
        data, o = r
        extra = bytes([50, 4]) + data[16:20] + bytes([54, 4]) + o.get(54, b"\0\0\0\0")
        sock.sendto(packet(xid, mac, 3, extra), (server, 67))
        r = wait_reply(xid, 5, deadline)
    if r is None:
        timeouts += 1
    else:
        lat.append((time.monotonic() - t0) * 1000)
    pause = (t0 + 1 / rate) - time.monotonic()
    if pause > 0:
        time.sleep(pause)

lat.sort()


def pct(p):
    if not lat:
        return float("nan")
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]


print("exchanges %d timeouts %d p50_ms %.2f p99_ms %.2f max_ms %.2f"
      % (len(lat), timeouts, pct(50), pct(99), lat[-1] if lat else float("nan")))
