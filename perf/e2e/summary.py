#!/usr/bin/env python3
"""One table from the end-to-end benchmark results, with issue 5's targets and whether each is met.

  summary.py [--dir DIR] [--out FILE.md]

Reads the per-run results the bench scripts write next to their Markdown tables (DIR, default out/):
  bench-l2.tsv           perf/e2e/l2-bench.sh --out DIR/bench-l2.md            same node, offloads off
  bench-l2-offloads.tsv  perf/e2e/l2-bench.sh --offloads --out ...             same node, offloads on
  bench-overlay.tsv      perf/e2e/overlay-bench.sh --out DIR/bench-overlay.md  across nodes over VXLAN
  bench-services.tsv     perf/e2e/services-bench.sh --out DIR/bench-services.md  ClusterIP connections/s
A missing file leaves its rows out (with a note). Every figure is the median over that script's runs; ratios are
between datapaths measured in the same script run.
"""
import argparse
import os
import statistics
import sys


def load3(path):
    """dp -> metric -> [values] from 'dp<TAB>metric<TAB>value' lines (status lines kept as text)."""
    vals, status = {}, {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            continue
        dp, metric, value = parts
        if metric == "status":
            status[dp] = value
            continue
        try:
            vals.setdefault(dp, {}).setdefault(metric, []).append(float(value))
        except ValueError:
            pass  # notes
    return vals, status


def load_services(path):
    """services-bench.tsv: 'dp<TAB>connections/s<TAB>failed' per run, then (since stop 17) three CPU idle columns and
    the number of clients at once: conn_per_s for one client, conn_per_s_parallel for more."""
    vals = {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3:
            parallel = len(parts) >= 7 and parts[6] not in ("", "1")
            key = "conn_per_s_parallel" if parallel else "conn_per_s"
            vals.setdefault(parts[0], {}).setdefault(key, []).append(float(parts[1]))
            vals[parts[0]].setdefault("failed", []).append(float(parts[2]))
    return vals, {}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="out")
    p.add_argument("--out", default=None, help="also write the table as Markdown to this file")
    a = p.parse_args()

    sources = {
        "l2": ("bench-l2.tsv", load3),
        "l2o": ("bench-l2-offloads.tsv", load3),
        "ovl": ("bench-overlay.tsv", load3),
        "svc": ("bench-services.tsv", load_services),
    }
    data, missing = {}, []
    for key, (name, loader) in sources.items():
        path = os.path.join(a.dir, name)
        if os.path.exists(path):
            data[key] = loader(path)[0]
        else:
            missing.append(name)
    if not data:
        print("summary.py: no results in %s (run ./run.sh bench first)" % a.dir, file=sys.stderr)
        return 1

    def med(src, dp, metric):
        v = data.get(src, {}).get(dp, {}).get(metric)
        return statistics.median(v) if v else None

    # (measure, unit decimals, source, kernel dp, ovs dp, vswitch dp, polling dp, podRxCpus dp, metric, target kind,
    # target factor)
    # target kind: "ge-kernel"/"ge-ovs" = VSwitch >= factor x that; "le-kernel" = VSwitch <= factor x kernel.
    rows = [
        ("same node TCP, offloads off (Gb/s)", 2, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "tcp_gbps", "ge-ovs", 2.0),
        ("same node TCP, offloads on (Gb/s)", 2, "l2o", "bridge", None, "vswitch", "vswitch-poll", "vswitch-rps", "tcp_gbps", "ge-kernel", 0.6),
        ("same node UDP 64 B delivered (kpps)", 1, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "udp64_fwd_kpps", "ge-ovs", 2.0),
        ("same node UDP 64 B delivered, receiver dropping at prerouting (kpps)", 1, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "udp64_sink_kpps", None, None),
        ("same node UDP 64 B, highest rate with < 1% loss (kpps)", 1, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "udp64_max_kpps", "ge-ovs", 2.0),
        ("same node UDP 64 B loss at saturation (%)", 1, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "udp64_loss", None, None),
        ("switch CPU per delivered 64 B frame (µs)", 2, "l2", None, "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "udp64_cpu_us", None, None),
        ("same node ping median (ms)", 3, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "ping_ms", "le-kernel", 2.0),
        ("same node ping p99 (ms)", 3, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "ping_p99_ms", None, None),
        ("same node UDP request/response median (µs)", 0, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "rr_med_us", None, None),
        ("same node UDP request/response p99 (µs)", 0, "l2", "bridge", "ovs", "vswitch", "vswitch-poll", "vswitch-rps", "rr_p99_us", None, None),
        ("across nodes TCP, offloads off (Gb/s)", 2, "ovl", "kernel", None, "vswitch", None, "vswitch-rps", "tcp_gbps", "ge-kernel", 1.0),
        ("across nodes TCP, offloads on (Gb/s)", 2, "ovl", "kernel-offload", None, "vswitch-offload", None, "vswitch-offload-rps", "tcp_gbps", "ge-kernel", 0.5),
        ("across nodes ping median (ms)", 3, "ovl", "kernel", None, "vswitch", None, "vswitch-rps", "ping_ms", None, None),
        ("ClusterIP new TCP connections/s, one client", 0, "svc", "kernel", None, "vswitch", "vswitch-poll", None, "conn_per_s", "ge-kernel", 1.0),
        ("ClusterIP new TCP connections/s, clients at once (services-bench --clients, default 4)", 0, "svc", "kernel", None, "vswitch", "vswitch-poll", None, "conn_per_s_parallel", "ge-kernel", 1.0),
    ]

    def fmt(x, d):
        return "-" if x is None else "%.*f" % (d, x)

    def ratio(x, y):
        return None if x is None or y is None or y == 0 else x / y

    def verdict(kind, factor, k, o, v):
        if kind is None:
            return "", None
        base = k if kind in ("ge-kernel", "le-kernel") else o
        r = ratio(v, base)
        if r is None:
            return "", None
        ok = r >= factor if kind.startswith("ge") else r <= factor
        return ("yes" if ok else "no"), r

    target_text = {"ge-ovs": "≥ %g× OVS", "ge-kernel": "≥ %g× kernel", "le-kernel": "≤ %g× kernel"}
    cols = ["measure", "kernel", "OVS netdev", "C reference", "VSwitch", "VSwitch polling", "VSwitch podRxCpus",
            "VSwitch/kernel", "VSwitch/OVS", "target", "met", "met polling", "met podRxCpus"]
    table = []
    for name, d, src, kdp, odp, vdp, pdp, rdp, metric, kind, factor in rows:
        if src not in data:
            continue
        k = med(src, kdp, metric) if kdp else None
        o = med(src, odp, metric) if odp else None
        v = med(src, vdp, metric)
        pv = med(src, pdp, metric) if pdp else None
        rv = med(src, rdp, metric) if rdp else None
        # The minimal C forwarder (perf/e2e/ref/tpacket-v3-fwd.c) is measured in the same-node, offloads-off runs.
        c = med(src, "c-tpacket-v3", metric) if src == "l2" else None
        met, _ = verdict(kind, factor, k, o, v)
        metp, _ = verdict(kind, factor, k, o, pv) if pv is not None else ("", None)
        metr, _ = verdict(kind, factor, k, o, rv) if rv is not None else ("", None)
        # A ratio of loss percentages means nothing; the loss row shows the figures only.
        rk, ro = (None, None) if metric == "udp64_loss" else (ratio(v, k), ratio(v, o))
        table.append([name, fmt(k, d), fmt(o, d), fmt(c, d), fmt(v, d), fmt(pv, d), fmt(rv, d),
                      "-" if rk is None else "%.2f×" % rk, "-" if ro is None else "%.2f×" % ro,
                      (target_text[kind] % factor) if kind else "", met, metp, metr])

    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    print(line(cols))
    print("-+-".join("-" * w for w in widths))
    for r in table:
        print(line(r))
    notes = ["kernel = Linux bridge (same node), flannel-style vxlan device (across nodes), kube-proxy iptables DNAT "
             "(ClusterIP). C reference = a minimal C forwarder between the veths, TPACKET_V3 receive rings and "
             "sendmmsg, no switching (perf/e2e/ref/tpacket-v3-fwd.c; same node, offloads off). VSwitch = the shipped default (adaptive polling: the worker polls after traffic only while request/response gaps are under 200 µs, datapath.adaptivePollMicros); VSwitch polling "
             "= datapath.busyPollMicros (the worker keeps polling after traffic; the bench scripts' --poll-us). VSwitch podRxCpus = "
             "datapath.podRxCpus set to the load CPU: the pods' kernels take in what the switch writes to their TAPs on the CPU "
             "their applications run on (receive packet steering), not in the switch's writes."]
    if missing:
        notes.append("no results for: %s" % ", ".join(missing))
    for n in notes:
        print(n)
    if a.out:
        with open(a.out, "w") as f:
            f.write("# VSwitch end-to-end summary\n\n| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n")
            for r in table:
                f.write("| " + " | ".join(r) + " |\n")
            f.write("\n" + "\n\n".join(notes) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
