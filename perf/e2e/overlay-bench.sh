#!/usr/bin/env bash
#
# End-to-end cross-node overlay benchmark: two nodes on an underlay bridge,
# one pod per node, pod-to-pod traffic routed and carried in VXLAN (VNI 1,
# UDP 4789), with the same measurements on each datapath:
#
#   kernel          flannel-style kernel nodes: vxlan device flannel.1 +
#                   bridge cni0 + veth pod, static route/neighbour/FDB per
#                   remote node; offloads (tx, tso, gso, gro) off on the pod
#                   interfaces and every veth end, as for the switch
#   kernel-offload  the same with all offloads left on (what a real kernel
#                   node does)
#   vswitch         VSwitch on both nodes (one `vswitch run --config` per
#                   node namespace); pods on TAPs; offloads off as above
#   vswitch-offload the same with the pods' and the underlay veths' offloads
#                   left on, as for kernel-offload: TCP reaches the switch as
#                   64 KB super-frames over the TAPs (offloads: true, the
#                   default), is cut into segments before VXLAN, leaves as one
#                   UDP GSO send per super-frame and is read back as a UDP GRO
#                   train that the receiving switch coalesces into a
#                   super-frame again
#   vswitch-rps, vswitch-offload-rps
#                   vswitch and vswitch-offload with datapath.podRxCpus set to
#                   the load CPU (0): the pods' kernels take in what the
#                   switches write to their TAPs on CPU 0 (receive packet
#                   steering), where the pods' applications run, instead of in
#                   the switches' writes on CPU 1
#
# Topology (names vv-, underlay 198.18.1.0/24, pods 10.244.0.0/16):
#
#   vv-ul: bridge vv-br --- ul0 198.18.1.1 vv-n1 --- pod vv-n1-p 10.244.1.2
#                       \-- ul0 198.18.1.2 vv-n2 --- pod vv-n2-p 10.244.2.2
#
# Every datapath gets fresh namespaces, torn down before the next one.  Pod
# MTU 1450 (underlay 1500 - 50).  iperf3 client and server run on CPU 0; both
# VSwitch processes (all their threads) share CPU 1.  The kernel datapaths have
# no switch process: routing and encapsulation run in softirq on the sending
# CPU (0).
#
# Measurements (each RUNS times, median reported):
#   warm-up  iperf3 -t 3 once per datapath, not measured (the switch's JIT
#            reaches its optimised code; the kernel's caches are warm too)
#   TCP   iperf3 -t 5 vv-n1-p -> vv-n2-p, receiver Gb/s and sender retransmits
#   ping  ping -c 50 -i 0.01, median RTT
#   for vswitch: CPU time both switch processes used during the TCP test, from
#   /proc/PID/task/*/schedstat (share of CPU 1)
#
# The whole run holds /tmp/vswitch-bench.lock (flock), so benchmarks never
# overlap on this machine.
#
# Usage: perf/e2e/overlay-bench.sh [--runs N] [--only LIST] [--out FILE] [--check]
#                                  [--profile DIR] [--tx-queue-length N]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../tests/netns/lib.sh
. "$SCRIPT_DIR/../../tests/netns/lib.sh"

ALL_DATAPATHS="kernel,kernel-offload,vswitch,vswitch-offload,vswitch-rps,vswitch-offload-rps"
RUNS=3
ONLY="$ALL_DATAPATHS"
OUT="$REPO/out/bench-overlay.md"
PROFILE_ARG=""
TX_QLEN=""
CHECK_ONLY=0
DURATION=5
WARMUP=3
PING_COUNT=50

UL_NS=vv-ul
UL_BR=vv-br
UL_IF=ul0
UL_MTU=1500
POD_MTU=1450
VNI=1
VXLAN_PORT=4789
CLUSTER_CIDR=10.244.0.0/16
HOST_IF=vsw0
NODES=(1 2)
IPERF_PORT=5201

node_ns() { printf 'vv-n%s\n' "$1"; }
pod_ns() { printf 'vv-n%s-p\n' "$1"; }
pod_ip() { printf '10.244.%s.2\n' "$1"; }
ul_ip() { printf '198.18.1.%s\n' "$1"; }
pod_cidr() { printf '10.244.%s.0/24\n' "$1"; }
gw_ip() { printf '10.244.%s.1\n' "$1"; }
vtep_mac() { printf '0e:00:0a:f4:%02x:01\n' "$1"; }

usage() {
    cat <<EOF
Usage: $0 [--runs N] [--only LIST] [--out FILE] [--check] [--profile DIR]
          [--tx-queue-length N]

Cross-node pod-to-pod benchmark over a VXLAN overlay: kernel flannel-style
nodes against VSwitch nodes (two nodes, one pod each, on an underlay bridge).

  --runs N     repetitions per measurement, the median is reported (default 3, max 9)
  --only LIST  comma-separated subset of: $ALL_DATAPATHS (default: all;
               vswitch is skipped with a note when the binary is missing: set
               VSWITCH=/path or build to out/vswitch/vswitch)
  --out FILE   write the result table as Markdown to FILE
               (default: out/bench-overlay.md in the repository)
  --check      set up each datapath, check pod-to-pod connectivity, tear down;
               no load, no table (a quick validation of the set-up)
  --profile DIR
               record a CPU profile (perf record -a -g) of both CPUs during
               each TCP test and write DIR/DP-tcp-RUN.txt: where each CPU's
               time went (by CPU and command, then by binary and the top
               symbols of each CPU).  DIR keeps the perf.data files.  Needs
               perf (linux-perf)
  --tx-queue-length N
               the VSwitch pods' transmit queue (ports[].txQueueLength, the
               qlen of the pod's eth0; default: the kernel's 1000).  The
               kernel's pods are veths, which have no such queue to overflow
  --help       this text

Holds $LOCK_FILE for the whole run (waits up to ${LOCK_WAIT}s for it).
Needs root, iproute2 (ip, bridge), iperf3, ping, ethtool, taskset, timeout,
flock, /usr/bin/python3.
EOF
}

while (($# > 0)); do
    case "$1" in
        --runs)
            [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive integer"
            RUNS="$2"
            shift 2
            ;;
        --only)
            [[ $# -ge 2 ]] || die "--only needs a list"
            ONLY="$2"
            shift 2
            ;;
        --out)
            [[ $# -ge 2 ]] || die "--out needs a file name"
            OUT="$2"
            shift 2
            ;;
        --check)
            CHECK_ONLY=1
            shift
            ;;
        --profile)
            [[ $# -ge 2 && -n "$2" ]] || die "--profile needs a directory"
            PROFILE_ARG="$2"
            shift 2
            ;;
        --tx-queue-length)
            [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--tx-queue-length needs a positive integer"
            TX_QLEN="$2"
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
    esac
done
bench_check_selection

require_root
require_cmd ip bridge iperf3 ping ethtool taskset timeout ss flock "$PY"
[[ -z "$PROFILE_ARG" ]] || profile_enable "$PROFILE_ARG"

# ---------------------------------------------------------------- one benchmark at a time

bench_lock

make_workdir vv-bench
WORK="$NETNS_WORKDIR"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
BIN="$(vswitch_bin)"

NCPU="$(nproc)"
if ((NCPU >= 2)); then
    LOAD_CPU=0
    SWITCH_CPU=1
    PIN_NOTE="iperf3 client+server and ping pinned to CPU $LOAD_CPU; both VSwitch processes (all threads) share CPU $SWITCH_CPU; the kernel datapaths route and encapsulate in softirq on the sending CPU ($LOAD_CPU)"
else
    LOAD_CPU=""
    SWITCH_CPU=""
    PIN_NOTE="only $NCPU CPU: no pinning"
fi

pinned_load() { # pinned_load CMD...: run CMD on the load CPU
    if [[ -n "$LOAD_CPU" ]]; then
        taskset -c "$LOAD_CPU" "$@"
    else
        "$@"
    fi
}

record() { # record DATAPATH METRIC VALUE
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"
}

# ---------------------------------------------------------------- topology

# underlay OFFLOADS(on|off): fresh underlay namespace, bridge and node namespaces.
underlay() {
    local offl="$1" n
    underlay_bridge "$UL_BR"
    for n in "${NODES[@]}"; do
        underlay_node "$n" vv "$UL_BR" "$UL_MTU"
        if [[ "$offl" == off ]]; then
            offloads_off "$UL_IF" "$(node_ns "$n")"
            offloads_off "p$n" "$UL_NS"
        fi
    done
}

# kernel_node N OFFLOADS: flannel vxlan backend + bridge CNI plugin, one pod.
kernel_node() {
    local n="$1" offl="$2" ns pns m host peer
    ns="$(node_ns "$n")"
    pns="$(pod_ns "$n")"
    flannel_node "$ns" "$n" "$(vtep_mac "$n")" "$VNI" "$VXLAN_PORT" "$(ul_ip "$n")" "$UL_IF" "$POD_MTU" "$(gw_ip "$n")"
    ns_add "$pns"
    quiet_ns "$pns"
    host="$pns-h"
    peer="$pns-x"
    veth_add "$host" "$peer"
    link_to_ns "$host" "$ns"
    link_to_ns "$peer" "$pns" eth0
    in_ns "$ns" ip link set dev "$host" mtu "$POD_MTU" master cni0 up
    in_ns "$pns" ip link set dev eth0 mtu "$POD_MTU" up
    in_ns "$pns" ip addr add "$(pod_ip "$n")/24" dev eth0
    in_ns "$pns" ip route add default via "$(gw_ip "$n")" dev eth0
    if [[ "$offl" == off ]]; then
        offloads_off "$host" "$ns"
        offloads_off eth0 "$pns"
    fi
    for m in "${NODES[@]}"; do
        [[ "$m" != "$n" ]] || continue
        flannel_peer "$ns" "$m" "$(pod_cidr "$m")" "$(vtep_mac "$m")" "$(ul_ip "$m")"
    done
}

setup_kernel() { # setup_kernel on|off
    local n
    underlay "$1"
    for n in "${NODES[@]}"; do
        kernel_node "$n" "$1"
    done
}

write_vswitch_config() { # write_vswitch_config N FILE [POD_RX_CPUS]
    local n="$1" file="$2" rx="${3:-}" m
    {
        printf 'node:\n  name: node-%s\n  podCIDR: %s\n  clusterCIDR: %s\n' "$n" "$(pod_cidr "$n")" "$CLUSTER_CIDR"
        if [[ -n "$rx" ]]; then printf 'datapath:\n  podRxCpus: "%s"\n' "$rx"; fi
        printf 'control:\n  socket: %s/n%s.sock\n' "$WORK" "$n"
        printf 'host:\n  interface: %s\n' "$HOST_IF"
        printf 'overlay:\n  localAddress: %s\n  port: %s\n  vni: %s\n  underlayMtu: %s\n  learning: true\n  peers:\n' \
            "$(ul_ip "$n")" "$VXLAN_PORT" "$VNI" "$UL_MTU"
        for m in "${NODES[@]}"; do
            [[ "$m" != "$n" ]] || continue
            printf '    - name: node-%s\n      address: %s\n      podCIDR: %s\n' "$m" "$(ul_ip "$m")" "$(pod_cidr "$m")"
        done
        printf 'ports:\n  - name: pod\n    type: tap\n    interface: vv%s-tap\n    namespace: %s\n    ifName: eth0\n    address: %s/24\n' \
            "$n" "$(pod_ns "$n")" "$(pod_ip "$n")"
        if [[ -n "$TX_QLEN" ]]; then printf '    txQueueLength: %s\n' "$TX_QLEN"; fi
    } >"$file"
}

vs_ready() { # vs_ready N
    timeout 5 "$BIN" ports --socket "$WORK/n$1.sock"
}

log_port_counters() { # log_port_counters N: packets and super-frames per port, for the log
    local line
    line="$(timeout 5 "$BIN" metrics --socket "$WORK/n$1.sock" 2>/dev/null | awk '
        match($0, /^vswitch_port_(rx|tx)_(packets|super_frames)_total/) {
            metric = substr($0, 14, RLENGTH - 19)
            port = $0; sub(/.*port="/, "", port); sub(/".*/, "", port)
            if (!(port in seen)) { seen[port] = 1; order[++n] = port }
            v[port, metric] = $NF
        }
        END {
            for (i = 1; i <= n; i++) {
                p = order[i]
                printf "%s%s rx %d (%d super-frames) tx %d (%d super-frames)", (i > 1 ? "; " : ""), p,
                    v[p, "rx_packets"], v[p, "rx_super_frames"], v[p, "tx_packets"], v[p, "tx_super_frames"]
            }
        }')"
    [[ -n "$line" ]] && log "node-$1 ports: $line"
    return 0
}

pod_has_addr() { # pod_has_addr N
    in_ns "$(pod_ns "$1")" ip -o addr show dev eth0 | grep -qF " $(pod_ip "$1")/"
}

declare -A VS_PID=()
setup_vswitch() { # setup_vswitch on|off [POD_RX_CPUS]: the pods' and the underlay's offloads; datapath.podRxCpus
    local offloads="$1" rx="${2:-}" n cfg pid deadline
    underlay "$offloads"
    for n in "${NODES[@]}"; do
        cfg="$WORK/node-$n.yaml"
        write_vswitch_config "$n" "$cfg" "$rx"
        # The pod namespace exists before the switch starts, as a container
        # runtime would make it; the switch moves its TAP in as eth0.
        ns_add "$(pod_ns "$n")"
        quiet_ns "$(pod_ns "$n")"
        if ! timeout 20 "$BIN" config check "$cfg" >"$WORK/config-check-$n.txt" 2>&1; then
            log "vswitch config check rejected $cfg:"
            indent_file "$WORK/config-check-$n.txt" 20
            return 1
        fi
        # Started under taskset: every thread the switch creates inherits CPU 1.
        if [[ -n "$SWITCH_CPU" ]]; then
            start_bg "vs-n$n" taskset -c "$SWITCH_CPU" ip netns exec "$(node_ns "$n")" "${PROFILE_ENV[@]}" "$BIN" run --config "$cfg"
        else
            start_bg "vs-n$n" ip netns exec "$(node_ns "$n")" "${PROFILE_ENV[@]}" "$BIN" run --config "$cfg"
        fi
        pid="$BG_PID"
        profile_switch_started "$pid"
        VS_PID[$n]=$pid
        deadline=$((SECONDS + 30))
        until vs_ready "$n" >/dev/null 2>&1; do
            if ! pid_alive "$pid" || ((SECONDS >= deadline)); then
                log "vswitch node-$n did not become ready; its log:"
                indent_file "$(bg_log "vs-n$n")"
                return 1
            fi
            sleep 0.2
        done
        if ! wait_for 15 pod_has_addr "$n"; then
            log "node-$n: the TAP with $(pod_ip "$n") did not appear in $(pod_ns "$n")"
            indent_file "$(bg_log "vs-n$n")"
            return 1
        fi
        quiet_ns "$(pod_ns "$n")"
        if [[ "$offloads" == off ]]; then
            offloads_off eth0 "$(pod_ns "$n")"
            if wait_for 10 ip -n "$(node_ns "$n")" link show dev "$HOST_IF"; then
                offloads_off "$HOST_IF" "$(node_ns "$n")"
            fi
        fi
        log "vswitch node-$n: pid $pid, CPUs $(taskset -cp "$pid" 2>/dev/null | awk '{print $NF}'), threads $(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    done
}

# ---------------------------------------------------------------- measurements

# switch_cpu_ns: total CPU time (ns) used so far by every thread of both switches.
switch_cpu_ns() {
    local n total=0 f v
    for n in "${!VS_PID[@]}"; do
        for f in /proc/"${VS_PID[$n]}"/task/*/schedstat; do
            read -r v _ <"$f" 2>/dev/null || continue
            total=$((total + v))
        done
    done
    printf '%s\n' "$total"
}

warm_up() { # warm_up DP: one unmeasured TCP transfer of WARMUP seconds
    start_bg "srv-$1-warmup" timeout $((WARMUP + 25)) ip netns exec "$(pod_ns 2)" \
        taskset -c "${LOAD_CPU:-0}" iperf3 -s -1 -B "$(pod_ip 2)" -p "$IPERF_PORT"
    if wait_for 5 tcp_listening "$(pod_ns 2)" "$IPERF_PORT"; then
        in_ns "$(pod_ns 1)" timeout $((WARMUP + 15)) taskset -c "${LOAD_CPU:-0}" \
            iperf3 -c "$(pod_ip 2)" -p "$IPERF_PORT" -t "$WARMUP" >/dev/null 2>&1 || log "$1: warm-up transfer failed"
    fi
    bg_wait "srv-$1-warmup" 10 || bg_stop "srv-$1-warmup"
}

measure_tcp() { # measure_tcp DP RUN
    local dp="$1" run="$2" name rc=0 line gbps retr cpu0 cpu1 t0 t1
    name="$dp-tcp-$run"
    start_bg "srv-$name" timeout $((DURATION + 25)) ip netns exec "$(pod_ns 2)" \
        taskset -c "${LOAD_CPU:-0}" iperf3 -s -1 -B "$(pod_ip 2)" -p "$IPERF_PORT"
    if ! wait_for 5 tcp_listening "$(pod_ns 2)" "$IPERF_PORT"; then
        log "iperf3 server did not start"
        indent_file "$(bg_log "srv-$name")"
        bg_stop "srv-$name"
        return 1
    fi
    cpu0="$(switch_cpu_ns)"
    t0="$(date +%s%N)"
    profile_start "$name" $((DURATION - 2))
    in_ns "$(pod_ns 1)" timeout $((DURATION + 15)) \
        taskset -c "${LOAD_CPU:-0}" iperf3 -c "$(pod_ip 2)" -p "$IPERF_PORT" \
        -t "$DURATION" -J >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
    t1="$(date +%s%N)"
    cpu1="$(switch_cpu_ns)"
    profile_report "$name" "$PIN_NOTE"
    bg_wait "srv-$name" 10 || bg_stop "srv-$name"
    if ((rc != 0)); then
        log "iperf3 client failed (exit $rc)"
        indent_file "$WORK/$name.err" 5
        indent_file "$WORK/$name.json" 5
        return 1
    fi
    line="$("$PY" - "$WORK/$name.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
e = d["end"]
print("%.3f %d" % (e["sum_received"]["bits_per_second"] / 1e9, e.get("sum_sent", {}).get("retransmits", 0)))
EOF
)" || return 1
    read -r gbps retr <<<"$line"
    record "$dp" tcp_gbps "$gbps"
    record "$dp" tcp_retr "$retr"
    if [[ "$dp" == vswitch* ]]; then
        # Share of one CPU over the client's wall time (both switches together).
        record "$dp" switch_cpu_pct "$("$PY" -c "print('%.0f' % (100.0 * ($cpu1 - $cpu0) / max(1, $t1 - $t0)))")"
    fi
    log "$dp run $run: TCP $gbps Gb/s, $retr retransmits"
}

measure_ping() { # measure_ping DP RUN
    local med
    in_ns "$(pod_ns 1)" timeout 20 taskset -c "${LOAD_CPU:-0}" \
        ping -c "$PING_COUNT" -i 0.01 -W 1 "$(pod_ip 2)" >"$WORK/ping-$1-$2.txt" 2>&1 || true
    med="$("$PY" - "$WORK/ping-$1-$2.txt" <<'EOF'
import re, statistics, sys
rtts = [float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read())]
if len(rtts) < 10:
    sys.exit("too few ping replies: %d" % len(rtts))
print("%.3f" % statistics.median(rtts))
EOF
)" || return 1
    record "$1" ping_ms "$med"
    log "$1 run $2: ping median $med ms"
}

ping_ok() {
    in_ns "$(pod_ns 1)" timeout 5 ping -c 1 -W 1 "$(pod_ip 2)"
}

run_datapath() { # run_datapath DP
    local dp="$1" scope run ok=1
    scope="$(cleanup_scope_begin)"
    log "=== $dp: setting up"
    VS_PID=()
    case "$dp" in
        kernel) setup_kernel off ;;
        kernel-offload) setup_kernel on ;;
        vswitch) setup_vswitch off || ok=0 ;;
        vswitch-offload) setup_vswitch on || ok=0 ;;
        vswitch-rps) setup_vswitch off "$LOAD_CPU" || ok=0 ;;
        vswitch-offload-rps) setup_vswitch on "$LOAD_CPU" || ok=0 ;;
    esac
    if ((ok)) && ! wait_for 15 ping_ok; then
        log "$dp: no connectivity $(pod_ns 1) -> $(pod_ns 2) ($(pod_ip 2))"
        ok=0
    fi
    if ((ok)) && ! in_ns "$(pod_ns 1)" timeout 10 ping -M "do" -s 1422 -c 2 -i 0.2 -W 1 "$(pod_ip 2)" >/dev/null 2>&1; then
        log "$dp: a full-size (1450-byte) packet does not cross the overlay"
        ok=0
    fi
    if ((ok)); then
        record "$dp" status ok
        if ((CHECK_ONLY)); then
            log "$dp: set-up ok, pods reach each other (1450-byte packets too)"
        else
            warm_up "$dp"
            for ((run = 1; run <= RUNS; run++)); do
                measure_tcp "$dp" "$run" || log "$dp run $run: TCP measurement failed"
                measure_ping "$dp" "$run" || log "$dp run $run: ping measurement failed"
            done
            if [[ "$dp" == vswitch* ]]; then
                for n in "${NODES[@]}"; do log_port_counters "$n"; done
            fi
        fi
    else
        record "$dp" status "failed (setup or connectivity; see log above)"
    fi
    for n in "${!VS_PID[@]}"; do
        kill -TERM "${VS_PID[$n]}" 2>/dev/null || true
    done
    log "=== $dp: tearing down"
    cleanup_scope_end "$scope"
}

# ---------------------------------------------------------------- main

log "overlay-bench: runs=$RUNS datapaths=${SELECTED[*]} duration=${DURATION}s$( ((CHECK_ONLY)) && echo ' (--check: set-up only, no measurements)')"
log "$PIN_NOTE"

check_idle

START=$SECONDS
for dp in "${SELECTED[@]}"; do
    if [[ "$dp" == vswitch* && ! -x "$BIN" ]]; then
        log "NOTE: skipping $dp: VSwitch binary not found at $BIN (set VSWITCH=/path/to/vswitch)"
        record "$dp" status "skipped (no binary at $BIN)"
        continue
    fi
    if [[ "$dp" == *-rps && -z "$LOAD_CPU" ]]; then
        log "NOTE: skipping $dp: one CPU, no other CPU to steer the pods' receive work to"
        record "$dp" status "skipped (one CPU)"
        continue
    fi
    run_datapath "$dp"
done
ELAPSED=$((SECONDS - START))

if ((CHECK_ONLY)); then
    if grep -q $'\tstatus\tfailed' "$RESULTS"; then
        log "--check: some datapath failed"
        exit 1
    fi
    log "--check: every selected datapath set up and connected"
    exit 0
fi

VERSION="$(git -C "$REPO" log -1 --format=%h 2>/dev/null || echo unknown)"
QLEN_NOTE=""
if [[ -n "$TX_QLEN" ]]; then QLEN_NOTE=" VSwitch pods' txQueueLength $TX_QLEN;"; fi
HEADER="runs=$RUNS (median) after a ${WARMUP}s warm-up, iperf3 TCP -t $DURATION, ping -c $PING_COUNT -i 0.01; 2 nodes, underlay MTU $UL_MTU, pod MTU $POD_MTU, VXLAN VNI $VNI UDP $VXLAN_PORT; $PIN_NOTE; kernel $(uname -r), $NCPU CPUs;$QLEN_NOTE repo $VERSION; CPU busy before start ${BUSY_AT_START}%; elapsed ${ELAPSED}s"

mkdir -p "$(dirname "$OUT")"
"$PY" - "$RESULTS" "$OUT" "$HEADER" "${SELECTED[@]}" <<'EOF'
import statistics, sys
results, out, header, order = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
vals, status = {}, {}
for line in open(results):
    dp, metric, value = line.rstrip("\n").split("\t", 2)
    if metric == "status":
        status[dp] = value
    else:
        vals.setdefault(dp, {}).setdefault(metric, []).append(float(value))

def med(dp, m):
    v = vals.get(dp, {}).get(m)
    return statistics.median(v) if v else None

def fmt(x, p):
    return "-" if x is None else ("%.*f" % (p, x))

def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else "%.2f" % (a / b)

names = {"kernel": "kernel flannel-style, offloads off",
         "kernel-offload": "kernel flannel-style, offloads on",
         "vswitch": "VSwitch (2 switches on CPU 1), offloads off",
         "vswitch-offload": "VSwitch (2 switches on CPU 1), offloads on",
         "vswitch-rps": "VSwitch, pods take in on CPU 0 (podRxCpus), offloads off",
         "vswitch-offload-rps": "VSwitch, pods take in on CPU 0 (podRxCpus), offloads on"}
cols = ["datapath", "TCP Gb/s", "TCP retransmits", "ping median ms", "switch CPU %",
        "TCP / kernel", "ping / kernel", "TCP / kernel-offload", "status"]
rows = []
for dp in order:
    t, p = med(dp, "tcp_gbps"), med(dp, "ping_ms")
    cpu = med(dp, "switch_cpu_pct")
    rows.append([names[dp], fmt(t, 2), fmt(med(dp, "tcp_retr"), 0), fmt(p, 3), fmt(cpu, 0),
                 ratio(t, med("kernel", "tcp_gbps")), ratio(p, med("kernel", "ping_ms")),
                 ratio(t, med("kernel-offload", "tcp_gbps")), status.get(dp, "not run")])

widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
print()
print(header)
print(line(cols))
print("-+-".join("-" * w for w in widths))
for r in rows:
    print(line(r))

with open(out, "w") as f:
    f.write("# VSwitch cross-node overlay benchmark\n\n")
    f.write(header + "\n\n")
    f.write("| " + " | ".join(cols) + " |\n")
    f.write("|" + "|".join("---" for _ in cols) + "|\n")
    for r in rows:
        f.write("| " + " | ".join(r) + " |\n")
    f.write("\nPod-to-pod across two nodes (vv-n1-p 10.244.1.2 -> vv-n2-p 10.244.2.2), routed and carried in VXLAN. "
            "Ratios are medians divided by the kernel medians (TCP: higher is better; ping: lower is better). "
            "switch CPU % = CPU time of both VSwitch processes (all threads, /proc/PID/task/*/schedstat) during the "
            "TCP test, as a share of one CPU; both run on CPU 1, so 100 % means that CPU was saturated. "
            "Offloads off = ethtool -K tx/tso/gso/gro off on the pod interfaces, the veth ends and the switch's host TAP.\n")
EOF
cp "$RESULTS" "${OUT%.md}.tsv"
log "Markdown table written to $OUT, per-run results to ${OUT%.md}.tsv"

if grep -q $'\tstatus\tfailed' "$RESULTS"; then
    exit 1
fi
