#!/usr/bin/python3
"""The measuring half of perf/e2e/cluster-bench.sh (the script sets up the namespaces and processes).

  cluster-driver.py preload ETCD_URL PREFIX SERVICES ENDPOINTS_PER_SLICE
      Writes SERVICES Services (10.100.0.0/16 ClusterIPs) and one EndpointSlice each with ENDPOINTS_PER_SLICE
      endpoints into the store through etcd's JSON gateway, 50 objects per transaction, as `vswitch apply` stores them.
      Prints "<objects> <seconds>".

  cluster-driver.py apply-latency SOCKET COUNT ENDPOINT_IP PORT NETNS...
      COUNT times: POSTs a new Service (ClusterIP 10.97.x.y:PORT) with an EndpointSlice (ENDPOINT_IP:PORT) to the
      switch's control socket SOCKET (/v1/objects), then connects to it from each NETNS (a pod on each node, one
      thread each, every 2 ms) until the server answers. Prints one line per change:
      "<apply ms> <ms until the last node answered> <ms per node...>".

  cluster-driver.py lease-latency ETCD_URL PREFIX KEY VALUE TARGET_IP PORT ROUNDS PEER_CHECK... -- NETNS...
      ROUNDS times: puts the lease KEY=VALUE (on an etcd lease of 60 s), then connects from each NETNS to
      TARGET_IP:PORT until it answers; then revokes the lease and waits until each PEER_CHECK command (a shell
      command that exits 0 while the peer is still known) fails. Prints "<ms until the last node answered> <per node...>".

  cluster-driver.py churn ETCD_URL PREFIX RATE SECONDS SERVICES
      Changes EndpointSlices of the preloaded Services at RATE per second for SECONDS (one endpoint address each time).
      Prints "<changes> <seconds>".
"""
import base64
import ctypes
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def gateway(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def svc_json(ns, name, ip, port, target):
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": f"bench-{name}", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "p", "port": port, "protocol": "TCP", "targetPort": target}]},
    }


def slice_json(ns, name, svc, addrs, port):
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addrs],
    }


def bulk_ip(i):
    return f"10.100.{i // 250}.{i % 250 + 1}"


def bulk_endpoints(i, n, salt=0):
    return [f"10.244.{200 + (i + k) % 50}.{(i * 7 + k + salt) % 250 + 2}" for k in range(n)]


def preload(url, prefix, services, per_slice):
    t0 = time.monotonic()
    ops = []
    count = 0

    def flush():
        nonlocal ops
        if ops:
            gateway(url, "/v3/kv/txn", {"success": ops})
            ops = []

    for i in range(services):
        name = f"bulk-{i}"
        ops.append({"requestPut": {"key": b64(f"{prefix}/registry/services/bench/{name}"),
                                   "value": b64(json.dumps(svc_json("bench", name, bulk_ip(i), 80, 8080)))}})
        ops.append({"requestPut": {"key": b64(f"{prefix}/registry/endpointslices/bench/{name}-1"),
                                   "value": b64(json.dumps(slice_json("bench", f"{name}-1", name, bulk_endpoints(i, per_slice), 8080)))}})
        count += 2
        if len(ops) >= 50:
            flush()
    flush()
    print(count, round(time.monotonic() - t0, 2))


def enter(netns):
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns {netns}")
    os.close(fd)


class Prober(threading.Thread):
    """A thread inside a pod's network namespace that, on each target, connects until the server answers."""

    def __init__(self, netns):
        super().__init__(daemon=True)
        self.netns = netns
        self.target = None
        self.go = threading.Event()
        self.done = threading.Event()
        self.result = None

    def run(self):
        enter(self.netns)
        while True:
            self.go.wait()
            self.go.clear()
            (ip, port, t0, limit) = self.target
            self.result = None
            while time.monotonic() - t0 < limit:
                try:
                    with socket.create_connection((ip, port), timeout=0.2) as s:
                        s.settimeout(0.5)
                        if s.recv(100):
                            self.result = (time.monotonic() - t0) * 1000
                            break
                except OSError:
                    pass
                time.sleep(0.002)
            self.done.set()

    def probe(self, ip, port, t0, limit):
        self.done.clear()
        self.target = (ip, port, t0, limit)
        self.go.set()


def wait_all(probers):
    for p in probers:
        p.done.wait()
    return [p.result for p in probers]


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def apply_latency(sock, count, ep_ip, port, netns):
    probers = [Prober(n) for n in netns]
    for p in probers:
        p.start()
    for i in range(count):
        ip = f"10.97.{i // 250}.{i % 250 + 1}"
        name = f"lat-{i}"
        doc = json.dumps(svc_json("bench", name, ip, port, port)) + "\n---\n" + json.dumps(
            slice_json("bench", f"{name}-1", name, [ep_ip], port))
        t0 = time.monotonic()
        for p in probers:
            p.probe(ip, port, t0, 15)
        c = UnixHTTP(sock)
        c.request("POST", "/v1/objects", body=doc, headers={"Content-Type": "application/yaml"})
        r = c.getresponse()
        body = r.read()
        apply_ms = (time.monotonic() - t0) * 1000
        c.close()
        if r.status != 200:
            print(f"apply {i}: HTTP {r.status} {body[:200]!r}", file=sys.stderr)
        res = wait_all(probers)
        worst = None if any(x is None for x in res) else max(res)
        print(f"{apply_ms:.1f} {'-' if worst is None else f'{worst:.1f}'} " + " ".join('-' if x is None else f"{x:.1f}" for x in res), flush=True)
        time.sleep(0.05)


def lease_latency(url, prefix, key, value, target, port, rounds, checks, netns):
    probers = [Prober(n) for n in netns]
    for p in probers:
        p.start()
    for _ in range(rounds):
        lease = gateway(url, "/v3/lease/grant", {"TTL": 60})["ID"]
        t0 = time.monotonic()
        gateway(url, "/v3/kv/put", {"key": b64(f"{prefix}/network/subnets/{key}"), "value": b64(value), "lease": lease})
        for p in probers:
            p.probe(target, port, t0, 20)
        res = wait_all(probers)
        worst = None if any(x is None for x in res) else max(res)
        print(f"{'-' if worst is None else f'{worst:.1f}'} " + " ".join('-' if x is None else f"{x:.1f}" for x in res), flush=True)
        gateway(url, "/v3/lease/revoke", {"ID": lease})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(subprocess.run(c, shell=True).returncode == 0 for c in checks):
            time.sleep(0.1)
        time.sleep(0.2)


def churn(url, prefix, rate, seconds, services):
    t0 = time.monotonic()
    n = 0
    while True:
        now = time.monotonic() - t0
        if now >= seconds:
            break
        due = int(now * rate)
        while n < due:
            i = (n * 7919) % services
            name = f"bulk-{i}"
            gateway(url, "/v3/kv/put", {"key": b64(f"{prefix}/registry/endpointslices/bench/{name}-1"),
                                        "value": b64(json.dumps(slice_json("bench", f"{name}-1", name, bulk_endpoints(i, 5, n + 1), 8080)))})
            n += 1
        time.sleep(0.002)
    print(n, round(time.monotonic() - t0, 2))


def main(a):
    if a[0] == "preload":
        preload(a[1], a[2], int(a[3]), int(a[4]))
    elif a[0] == "apply-latency":
        apply_latency(a[1], int(a[2]), a[3], int(a[4]), a[5:])
    elif a[0] == "lease-latency":
        sep = a.index("--")
        lease_latency(a[1], a[2], a[3], a[4], a[5], int(a[6]), int(a[7]), a[8:sep], a[sep + 1:])
    elif a[0] == "churn":
        churn(a[1], a[2], float(a[3]), float(a[4]), int(a[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
