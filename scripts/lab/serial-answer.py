#!/usr/bin/env python3
"""Answers questions on a VM's serial console (a QEMU chardev UNIX socket), like a person at it.

  serial-answer.py SOCKET TIMEOUT PROMPT ANSWER [PROMPT ANSWER ...]

Waits (at most TIMEOUT seconds in all) for each PROMPT to appear in what the console printed
since the previous answer, then types ANSWER and Enter, eight characters at a time. Exits 1 naming the prompt it did not see.
"""
import socket
import sys
import time

path, timeout = sys.argv[1], float(sys.argv[2])
pairs = list(zip(sys.argv[3::2], sys.argv[4::2]))
deadline = time.monotonic() + timeout
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
while True:
    try:
        s.connect(path)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"serial-answer: could not connect to {path}")
        time.sleep(0.5)
s.settimeout(1.0)
seen = b""
for prompt, answer in pairs:
    while prompt.encode() not in seen:
        if time.monotonic() > deadline:
            sys.exit(f"serial-answer: no {prompt!r} on the console; last output: {seen[-400:]!r}")
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        if not chunk:
            sys.exit("serial-answer: the console closed")
        seen += chunk
    seen = seen[seen.index(prompt.encode()) + len(prompt):]
    time.sleep(0.3)
    # Typed in small pieces, as a person (or a paste through a slow console) would: a long line
    # sent at once did not arrive whole on a loaded TCG guest (a 95-character key line; its echo
    # stopped at 92 and the answer never completed).
    data = answer.encode() + b"\r"
    for i in range(0, len(data), 8):
        s.sendall(data[i:i + 8])
        time.sleep(0.02)
print("serial-answer: all answered")
