#!/usr/bin/python3
"""Servers and clients for the Service, live and restart tests (tests/netns/*-system.sh).

  svc-tools.py serve NAME TCP_PORT UDP_PORT LIFETIME
      TCP: answer every connection with one line "NAME PEER_IP:PEER_PORT" and close.
      UDP: answer every datagram with "NAME PEER_IP:PEER_PORT".  Exits after LIFETIME seconds.

  svc-tools.py tcp HOST PORT COUNT [TIMEOUT]
      COUNT connections one after another; one line per connection: the server's answer, or
      "ERR <exception name> <seconds>" (e.g. ERR ConnectionRefusedError 0.001).

  svc-tools.py connrate HOST PORT SECONDS [CLIENTS]
      New TCP connections one after another for SECONDS (connect, read the answer up to the server's
      close, close); prints
      "<connections completed> <errors> <seconds>".  With CLIENTS > 1 (at most 64), that many client
      processes do so at once and the line is their sum (seconds: the longest).

  svc-tools.py udp HOST PORT COUNT INTERVAL [SPORT] [TIMEOUT]
      COUNT datagrams from one socket (bound to SPORT when given), INTERVAL seconds apart; one line per
      datagram: "<monotonic time> <answer>" or "<time> ERR <name>".

  svc-tools.py echo-serve PORT LIFETIME
      TCP echo server: every connection gets back what it sends, until it closes. Exits after LIFETIME seconds.

  svc-tools.py stream HOST PORT SECONDS INTERVAL
      One TCP connection for SECONDS: a line every INTERVAL seconds, each waited for as it comes back. Prints
      "<rounds> <longest gap between two answered rounds, s> <error or ->" at the end; stops at the first error
      (a reset, a timeout of 30 s): the connection did not survive.

  svc-tools.py flows HOST PORT COUNT
      COUNT datagrams, each from a socket of its own on source ports 20000 on (COUNT tracked flows), each
      waiting up to 1 s for its answer.
      Prints "<answered> <sent>".
"""
import socket
import sys
import threading
import time


def serve(name, tcp_port, udp_port, lifetime):
    stop_at = time.monotonic() + lifetime

    def tcp():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", tcp_port))
        s.listen(1024)
        s.settimeout(0.5)
        while time.monotonic() < stop_at:
            try:
                c, a = s.accept()
            except socket.timeout:
                continue
            try:
                c.sendall(f"{name} {a[0]}:{a[1]}\n".encode())
            except OSError:
                pass
            finally:
                c.close()

    def udp():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", udp_port))
        u.settimeout(0.5)
        while time.monotonic() < stop_at:
            try:
                _, a = u.recvfrom(2048)
            except socket.timeout:
                continue
            u.sendto(f"{name} {a[0]}:{a[1]}".encode(), a)

    threads = [threading.Thread(target=tcp, daemon=True), threading.Thread(target=udp, daemon=True)]
    for t in threads:
        t.start()
    print("serving", flush=True)
    while time.monotonic() < stop_at:
        time.sleep(0.2)


def tcp_client(host, port, count, timeout):
    for _ in range(count):
        t0 = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.settimeout(timeout)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(256)
                    if not chunk:
                        break
                    data += chunk
                print(data.decode().strip() or "ERR EmptyAnswer 0", flush=True)
        except OSError as e:
            print(f"ERR {type(e).__name__} {time.monotonic() - t0:.3f}", flush=True)


def conn_rate(host, port, seconds):
    done = errors = 0
    start = time.monotonic()
    stop = start + seconds
    while time.monotonic() < stop:
        t0 = time.monotonic()
        phase = "connect"
        s = socket.socket()
        try:
            s.settimeout(2)
            s.connect((host, port))
            phase = "read"
            if s.recv(256):
                # Read on until the server's close, so the server closes first and keeps the TIME_WAIT: a client that
                # closed first would hold one per connection, and with tens of thousands of them every connect()
                # searches long for a free port.
                while s.recv(256):
                    pass
                done += 1
            else:
                errors += 1
                print(f"connrate: empty answer, local port {s.getsockname()[1]}", file=sys.stderr, flush=True)
        except OSError as e:
            errors += 1
            try:
                local = s.getsockname()[1]
            except OSError:
                local = "?"
            print(f"connrate: {type(e).__name__} in {phase} after {time.monotonic() - t0:.3f} s, local port {local}",
                  file=sys.stderr, flush=True)
        finally:
            s.close()
    print(f"{done} {errors} {time.monotonic() - start:.3f}", flush=True)


def conn_rate_parallel(host, port, seconds, clients):
    """CLIENTS forked copies of conn_rate, each reporting its line through a pipe; their sum."""
    import os
    readers = []
    for _ in range(clients):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 1
            try:
                sys.stdout = os.fdopen(w, "w")
                conn_rate(host, port, seconds)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        readers.append((pid, r))
    done = errors = 0
    longest = 0.0
    for pid, r in readers:
        with os.fdopen(r) as f:
            line = f.read().split()
        os.waitpid(pid, 0)
        if len(line) != 3:
            errors += 1
            continue
        done += int(line[0])
        errors += int(line[1])
        longest = max(longest, float(line[2]))
    print(f"{done} {errors} {longest:.3f}", flush=True)


def udp_client(host, port, count, interval, sport, timeout):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if sport:
        u.bind(("0.0.0.0", sport))
    u.connect((host, port))
    u.settimeout(timeout)
    for i in range(count):
        t0 = time.monotonic()
        try:
            u.send(f"ping {i}".encode())
            data = u.recv(2048)
            print(f"{t0:.3f} {data.decode()}", flush=True)
        except OSError as e:
            print(f"{t0:.3f} ERR {type(e).__name__}", flush=True)
        rest = interval - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)


def echo_serve(port, lifetime):
    stop_at = time.monotonic() + lifetime
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    s.settimeout(0.5)

    def serve_one(c):
        c.settimeout(max(1.0, stop_at - time.monotonic()))
        try:
            while True:
                data = c.recv(4096)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    print("serving", flush=True)
    while time.monotonic() < stop_at:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()


def stream(host, port, seconds, interval):
    c = socket.create_connection((host, port), timeout=5)
    c.settimeout(30)
    stop_at = time.monotonic() + seconds
    rounds, gap, last, err = 0, 0.0, time.monotonic(), "-"
    f = c.makefile("rb")
    try:
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            c.sendall(f"round {rounds} {'x' * 100}\n".encode())
            line = f.readline()
            if not line:
                err = "closed-by-peer"
                break
            now = time.monotonic()
            gap = max(gap, now - last)
            last = now
            rounds += 1
            rest = interval - (now - t0)
            if rest > 0:
                time.sleep(rest)
    except OSError as e:
        err = type(e).__name__
    print(f"{rounds} {gap:.3f} {err}", flush=True)


def flows(host, port, count):
    answered = 0
    for i in range(count):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(1.0)
        try:
            # A port of its own for each flow (20000 on): COUNT distinct tuples.
            u.bind(("0.0.0.0", 20000 + i))
            u.sendto(b"flow", (host, port))
            u.recv(2048)
            answered += 1
        except OSError:
            pass
        finally:
            u.close()
    print(f"{answered} {count}", flush=True)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    mode = argv[1]
    if mode == "serve":
        serve(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    elif mode == "tcp":
        tcp_client(argv[2], int(argv[3]), int(argv[4]), float(argv[5]) if len(argv) > 5 else 2.0)
    elif mode == "connrate":
        clients = int(argv[5]) if len(argv) > 5 else 1
        if not 1 <= clients <= 64:
            print("connrate: CLIENTS must be 1..64", file=sys.stderr)
            return 2
        if clients == 1:
            conn_rate(argv[2], int(argv[3]), float(argv[4]))
        else:
            conn_rate_parallel(argv[2], int(argv[3]), float(argv[4]), clients)
    elif mode == "echo-serve":
        echo_serve(int(argv[2]), float(argv[3]))
    elif mode == "stream":
        stream(argv[2], int(argv[3]), float(argv[4]), float(argv[5]))
    elif mode == "flows":
        flows(argv[2], int(argv[3]), int(argv[4]))
    elif mode == "udp":
        udp_client(argv[2], int(argv[3]), int(argv[4]), float(argv[5]),
                   int(argv[6]) if len(argv) > 6 else 0, float(argv[7]) if len(argv) > 7 else 1.0)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
