#!/usr/bin/env python3
"""Sends a corpus of malformed DHCP and TFTP packets to a server (lab use only).

usage: send-corpus.py SERVER_IP  -- prints how many packets were sent.
Each packet targets a decoder edge: truncation, bad lengths, wrong op/htype, garbage options,
huge option lengths, options running past the end, unknown TFTP opcodes, unterminated strings.
"""
import random, socket, struct, sys

server = sys.argv[1]
rnd = random.Random(7)

def bootp(op=1, htype=1, hlen=6, options=b"", xid=0x1234):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, htype, hlen, 0, xid, 0, 0,
                      b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, bytes.fromhex("525400cc0001") + b"\0" * 10,
                      b"\0" * 64, b"\0" * 128)
    return hdr + b"\x63\x82\x53\x63" + options

dhcp = [
    b"", b"\x01", bootp()[:100], bootp()[:239],
    bootp(op=2, options=b"\x35\x01\x02\xff"),             # a reply, not a request
    bootp(htype=6, hlen=16, options=b"\x35\x01\x01\xff"),  # not Ethernet
    bootp(options=b"\x35\x05\x01\xff"),                    # option 53 length runs past end
    bootp(options=b"\x35\x01\x01\x5e\x01\x00\xff"),        # option 94 with bad length
    bootp(options=b"\x35\x01\x01\x50\x02\x00\x00\xff"),    # rapid commit with data
    bootp(options=b"\x35\x01\x01\x51\x01\x00\xff"),        # client FQDN too short
    bootp(options=b"\x35\x01\x01\x32\x02\x0a\x00\xff"),    # requested IP of 2 bytes
    bootp(options=b"\x35\x01\x01\x36\x03\x0a\x00\x00\xff"),  # server id of 3 bytes
    bootp(options=b"\x35\x01\x01\x5d\x01\x00\xff"),        # arch of 1 byte
    bootp(options=b"\x35\x01\x01\x52\x04\x01\x09\x00\x00\xff"),  # relay sub-option overrun
    bootp(options=b"\x35\x01\x63\xff"),                    # message type 99
    bootp(options=b"\x35\x01\x03" + b"\x0c\xff" + b"A" * 255 + b"\xff"),
    bootp(options=bytes(rnd.randrange(256) for _ in range(300))),
]
for _ in range(200):
    p = bytearray(bootp(options=b"\x35\x01\x01\x3c\x09PXEClient\x5d\x02\x00\x07\xff"))
    for _ in range(rnd.randrange(1, 6)):
        p[rnd.randrange(len(p))] = rnd.randrange(256)
    dhcp.append(bytes(p[: rnd.randrange(200, len(p) + 1)]))

tftp = [b"", b"\x00", b"\x00\x01", b"\x00\x09\x00\x00", b"\x00\x01file-without-nul",
        b"\x00\x01f\x00octet", b"\x00\x01f\x00octet\x00blksize\x00", b"\x00\x01\xff\xfe\x00octet\x00",
        b"\x00\x02upload\x00octet\x00", b"\x00\x04\x00\x01", b"\x00\x05\x00\x01oops",
        b"\x00\x01f\x00octet\x00blksize\x00-5\x00windowsize\x0099999999999\x00"]
tftp += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 600))) for _ in range(100)]

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0
for p in dhcp:
    s.sendto(p, (server, 67)); n += 1
for p in tftp:
    s.sendto(p, (server, 69)); n += 1
print(n)
