#!/usr/bin/env python3
"""Checks that every frame of a pcap (Ethernet, either byte order) belongs to MAC: the MAC is
its Ethernet source or destination, or the frame is a DHCP/BOOTP message whose client
hardware address is MAC. Prints "N frames, K others" and exits 1 when K > 0.
Usage: pcap-only.py PCAP MAC"""
import struct
import sys

data = open(sys.argv[1], "rb").read()
mac = bytes.fromhex(sys.argv[2].replace(":", ""))
magic = data[:4]
end = ">" if magic == bytes.fromhex("a1b2c3d4") else "<"
pos, n, others = 24, 0, 0
while pos + 16 <= len(data):
    _, _, incl, _ = struct.unpack(end + "IIII", data[pos:pos + 16])
    pos += 16
    f = data[pos:pos + incl]
    pos += incl
    n += 1
    if f[0:6] == mac or f[6:12] == mac:
        continue
    ok = False
    if f[12:14] == b"\x08\x00" and len(f) > 34 and f[23] == 17:
        ihl = (f[14] & 0x0f) * 4
        udp = f[14 + ihl:]
        ports = struct.unpack("!HH", udp[0:4])
        ok = bool({67, 68} & set(ports)) and udp[8 + 28:8 + 34] == mac
    others += 0 if ok else 1
print(f"{n} frames, {others} others")
sys.exit(1 if others or n == 0 else 0)
