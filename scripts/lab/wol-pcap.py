#!/usr/bin/env python3
"""Checks the Wake-on-LAN packets in a pcap (Ethernet): prints "MAC=ok" or "MAC=BAD" per magic
packet seen, sorted by MAC. A packet is ok when it goes to BROADCAST (IPv4) on UDP port 9, is
6 x 0xff then one MAC 16 times, and (with --link-broadcast) its Ethernet destination is
ff:ff:ff:ff:ff:ff, as a router forwarding a directed broadcast must send it.
Usage: wol-pcap.py PCAP BROADCAST [--link-broadcast]"""
import struct
import sys

data = open(sys.argv[1], "rb").read()
bcast = sys.argv[2]
link = "--link-broadcast" in sys.argv[3:]
pos, seen = 24, {}
while pos + 16 <= len(data):
    _, _, incl, _ = struct.unpack("<IIII", data[pos:pos + 16])
    pos += 16
    frame = data[pos:pos + incl]
    pos += incl
    if frame[12:14] != b"\x08\x00":
        continue
    ihl = (frame[14] & 0x0f) * 4
    ip = frame[14:14 + ihl]
    dst = ".".join(str(b) for b in ip[16:20])
    udp = frame[14 + ihl:14 + ihl + 8]
    dport = struct.unpack("!H", udp[2:4])[0]
    payload = frame[14 + ihl + 8:]
    ok = dst == bcast and dport == 9 and len(payload) >= 102 and payload[:6] == b"\xff" * 6 \
        and all(payload[6 + 6 * i:12 + 6 * i] == payload[6:12] for i in range(16)) \
        and (not link or frame[:6] == b"\xff" * 6)
    mac = ":".join(f"{b:02x}" for b in payload[6:12])
    seen[mac] = ok and seen.get(mac, True)
print(" ".join(f"{m}={'ok' if v else 'BAD'}" for m, v in sorted(seen.items())))
