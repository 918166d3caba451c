#!/usr/bin/env python3
"""Opens N MCP sessions on a running engine (one keep-alive connection),
then prints the engine's RSS: before, with the sessions open, and once
they have expired. Used by bench/memory.sh; see docs/performance.md.

    bench/sessions.py HOST:PORT PID N ADMIN_TOKEN
"""
import http.client
import json
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def sessions(host, token):
    c = http.client.HTTPConnection(host)
    c.request("GET", "/_kiln/v1/admin/mcp", headers={"authorization": f"Bearer {token}"})
    return json.loads(c.getresponse().read())["sessions"]


def main():
    host, pid, n, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    before = rss_kib(pid)
    c = http.client.HTTPConnection(host)
    body = json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}},
    })
    started = time.time()
    opened = 0
    for _ in range(n):
        c.request("POST", "/mcp", body=body, headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        })
        r = c.getresponse()
        r.read()
        opened += r.status == 200
    took = time.time() - started
    during = rss_kib(pid)
    deadline = time.time() + 120
    while sessions(host, token) > 0 and time.time() < deadline:
        time.sleep(0.5)
    # The engine trims its heap every 5 s once sessions were released.
    time.sleep(7)
    after = rss_kib(pid)
    print(f"sessions opened: {opened}/{n} in {took:.1f} s")
    print(f"rss KiB: before {before}, with sessions {during} (+{(during - before) // 1024} MiB, "
          f"{(during - before) * 1024 // max(opened, 1)} B/session), after expiry {after} "
          f"(+{(after - before) // 1024} MiB)")


main()
