#!/usr/bin/env python3
"""UDP request/response latency, like netperf's UDP_RR: one datagram out, wait for the echo, repeat.

  udp-rr.py server ADDR PORT [--secs N]
      Echoes every datagram back to its sender until N seconds have passed (default 30) or a datagram "quit"
      arrives. Bounded in time, so a lost client never leaves it running.
  udp-rr.py client ADDR PORT [--count N] [--secs N] [--size B] [--timeout-ms T]
      Sends N requests (default 2000) of B bytes (default 18: a 64-byte frame) one at a time, each sent after the
      previous answer arrived (or timed out after T ms, default 200), stops early after --secs (default 20), then
      sends "quit". Prints one line: "transactions=K lost=L median_us=M p99_us=P mean_us=A".

The figure includes the Python loop on both ends (a few microseconds); the same script runs on every datapath, so
the differences between datapaths are the datapaths'.
"""
import argparse
import socket
import statistics
import sys
import time


def server(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.addr, args.port))
    deadline = time.monotonic() + args.secs
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return 0
        s.settimeout(left)
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            return 0
        if data == b"quit":
            return 0
        s.sendto(data, peer)


def client(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((args.addr, args.port))
    s.settimeout(args.timeout_ms / 1000.0)
    payload = bytearray(args.size)
    rtts = []
    lost = 0
    deadline = time.monotonic() + args.secs
    for i in range(args.count):
        if time.monotonic() > deadline:
            break
        payload[0:4] = i.to_bytes(4, "big")
        t0 = time.perf_counter_ns()
        s.send(payload)
        try:
            while True:
                data = s.recv(65535)
                if data[0:4] == payload[0:4]:
                    break  # an answer that arrived after its timeout is skipped
        except socket.timeout:
            lost += 1
            continue
        rtts.append((time.perf_counter_ns() - t0) / 1000.0)
    try:
        s.send(b"quit")
    except OSError:
        pass
    if len(rtts) < 10:
        print("too few answers: %d of %d (lost %d)" % (len(rtts), len(rtts) + lost, lost), file=sys.stderr)
        return 1
    rtts.sort()
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    print("transactions=%d lost=%d median_us=%.1f p99_us=%.1f mean_us=%.1f"
          % (len(rtts), lost, statistics.median(rtts), p99, statistics.fmean(rtts)))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--secs", type=float, default=None)
    p.add_argument("--size", type=int, default=18)
    p.add_argument("--timeout-ms", type=float, default=200)
    args = p.parse_args()
    if args.secs is None:
        args.secs = 30 if args.mode == "server" else 20
    if args.count < 1 or args.size < 4 or args.secs <= 0:
        p.error("--count >= 1, --size >= 4 and --secs > 0 are required")
    return server(args) if args.mode == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
