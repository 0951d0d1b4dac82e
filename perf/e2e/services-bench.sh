#!/usr/bin/env bash
#
# End-to-end Service benchmark: new TCP connections per second from a client
# pod to a ClusterIP whose endpoint is a pod on the same node, on each datapath:
#
#   kernel    kube-proxy's iptables mode on a flannel-style node: bridge cni0
#             (gateway 10.244.1.1), veth pods, br_netfilter on, and the nat
#             chains kube-proxy writes (PREROUTING/OUTPUT -> KUBE-SERVICES ->
#             KUBE-SVC-… -> KUBE-SEP-… DNAT 10.244.1.3:8080)
#   vswitch   VSwitch with the same Service from a manifest; pods on TAPs
#
# Topology (names vk-): node namespace vk-node; pods vk-c 10.244.1.2 (client)
# and vk-s 10.244.1.3 (server); Service 10.96.0.10:80 -> 10.244.1.3:8080.
#
# Load: tests/netns/svc-tools.py connrate — connect, read the server's one-line
# answer, close, again, for DURATION seconds; the server (svc-tools.py serve)
# answers and closes.  Each datapath is measured twice: one client (one
# connection at a time, so every packet's trip is on the critical path) and
# CLIENTS client processes at once (--clients; the node's capacity for new
# connections).  Client and server are pinned to CPU 1; the switch to CPU 0
# (the kernel datapath runs in softirq on the client/server CPU).  Each run also
# reads how long CPU 1 and CPU 0 were idle (cpuidle: halted) and how often CPU 1
# went idle.  Each datapath gets fresh namespaces.  Median of RUNS runs; every
# run also counts failed connections.  Holds /tmp/vswitch-bench.lock for the
# whole run.
#
# Datapaths: kernel (above), vswitch (the shipped default: adaptive polling,
# datapath.adaptivePollMicros 200), vswitch-poll (the same switch in polling
# mode: datapath.busyPollMicros = --poll-us, default 100000 µs).
#
# Usage: perf/e2e/services-bench.sh [--runs N] [--only kernel,vswitch,vswitch-poll]
#                                   [--duration S] [--clients N] [--busy-poll-us N]
#                                   [--poll-us N] [--out FILE]
#   --clients N        client processes at once in the second measurement
#                      (2..64, default 4; 1 = measure one client only)
#   --busy-poll-us N   the vswitch row keeps polling N µs after traffic before
#                      sleeping (datapath.busyPollMicros; default 0)
#   --poll-us N        the same for the vswitch-poll row (default 100000)
#   --out FILE         the Markdown table (default out/bench-services.md); the
#                      per-run results go next to it as FILE.tsv
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../tests/netns/lib.sh
. "$SCRIPT_DIR/../../tests/netns/lib.sh"

ALL_DATAPATHS="kernel,vswitch,vswitch-poll"
RUNS=3
ONLY="$ALL_DATAPATHS"
DURATION=5
CLIENTS=4
BUSY_POLL_US=0
POLL_US=100000
OUT="$REPO/out/bench-services.md"
TOOLS="$REPO/tests/netns/svc-tools.py"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
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
        --duration)
            [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]?$ ]] || die "--duration needs 1..99 seconds"
            DURATION="$2"
            shift 2
            ;;
        --clients)
            if ! [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]?$ ]] || (($2 > 64)); then
                die "--clients needs 1..64"
            fi
            CLIENTS="$2"
            shift 2
            ;;
        --busy-poll-us)
            [[ $# -ge 2 && "$2" =~ ^[0-9]{1,6}$ ]] || die "--busy-poll-us needs 0..999999"
            BUSY_POLL_US="$2"
            shift 2
            ;;
        --poll-us)
            if ! [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]{0,6}$ ]] || (($2 > 1000000)); then
                die "--poll-us needs 1..1000000"
            fi
            POLL_US="$2"
            shift 2
            ;;
        --out)
            [[ $# -ge 2 ]] || die "--out needs a file name"
            OUT="$2"
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
require_cmd ip iptables taskset timeout flock ethtool "$PY"
bench_lock

make_workdir vk-bench
WORK="$NETNS_WORKDIR"
BIN="$(vswitch_bin)"
LOAD_CPU=1
SWITCH_CPU=0
if (($(nproc) < 2)); then LOAD_CPU=0; fi

namespaces() {
    local ns
    for ns in vk-node vk-c vk-s; do
        ns_add "$ns"
        quiet_ns "$ns"
    done
}

setup_kernel() {
    namespaces
    in_ns vk-node sysctl -qw net.ipv4.ip_forward=1
    in_ns vk-node ip link add cni0 type bridge
    in_ns vk-node ip addr add 10.244.1.1/24 dev cni0
    in_ns vk-node ip link set cni0 up
    local pod ip
    for pod in c s; do
        if [[ $pod == c ]]; then ip=10.244.1.2; else ip=10.244.1.3; fi
        ip -n vk-node link add "vk-$pod-h" type veth peer name eth0 netns "vk-$pod"
        in_ns vk-node ip link set "vk-$pod-h" master cni0 up
        in_ns "vk-$pod" ip addr add "$ip/24" dev eth0
        in_ns "vk-$pod" ip link set eth0 up
        in_ns "vk-$pod" ip route add default via 10.244.1.1
        offloads_off eth0 "vk-$pod"
        offloads_off "vk-$pod-h" vk-node
    done
    # Bridged replies from the endpoint to the client must pass the nat table (kube-proxy requires br_netfilter).
    in_ns vk-node sysctl -qw net.bridge.bridge-nf-call-iptables=1
    in_ns vk-node iptables -t nat -N KUBE-SERVICES
    in_ns vk-node iptables -t nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
    in_ns vk-node iptables -t nat -A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
    in_ns vk-node iptables -t nat -N KUBE-SVC-WEB
    in_ns vk-node iptables -t nat -N KUBE-SEP-WEB1
    in_ns vk-node iptables -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
    in_ns vk-node iptables -t nat -A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.244.1.3:8080" -j KUBE-SEP-WEB1
    in_ns vk-node iptables -t nat -A KUBE-SEP-WEB1 -p tcp -m comment --comment default/web:http -m tcp -j DNAT --to-destination 10.244.1.3:8080
}

setup_vswitch() { # setup_vswitch [BUSY_POLL_US]
    local busy_poll="${1:-$BUSY_POLL_US}"
    namespaces
    cat >"$WORK/services.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints: [{addresses: [10.244.1.3], nodeName: node-1}]
EOF
    cat >"$WORK/node.yaml" <<EOF
node: {name: node-1, podCIDR: 10.244.1.0/24}
control: {socket: $WORK/vs.sock}
datapath: {busyPollMicros: $busy_poll}
services: {manifests: $WORK/services.yaml}
ports:
  - {name: client, type: tap, interface: vk-tap-c, namespace: vk-c, address: 10.244.1.2/24, mac: "02:00:0a:f4:01:02"}
  - {name: server, type: tap, interface: vk-tap-s, namespace: vk-s, address: 10.244.1.3/24, mac: "02:00:0a:f4:01:03"}
EOF
    start_bg vswitch taskset -c "$SWITCH_CPU" ip netns exec vk-node "$BIN" run --config "$WORK/node.yaml"
    wait_for 20 timeout 5 "$BIN" status --socket "$WORK/vs.sock" || { indent_file "$(bg_log vswitch)"; die "the switch did not start"; }
    local pod
    for pod in c s; do
        wait_for 10 ip -n "vk-$pod" -4 addr show dev eth0
        offloads_off eth0 "vk-$pod"
    done
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# cpu_halts CPU: "<µs> <entries>": the time CPU has spent idle (halted) so far and how often it went idle, summed
# over its cpuidle states; "0 0" where the kernel has no cpuidle.
cpu_halts() {
    local t=0 u=0 s
    for s in /sys/devices/system/cpu/cpu"$1"/cpuidle/state*; do
        [[ -r "$s/time" && -r "$s/usage" ]] || continue
        t=$((t + $(<"$s/time")))
        u=$((u + $(<"$s/usage")))
    done
    printf '%s %s\n' "$t" "$u"
}

CLIENT_COUNTS=(1)
if ((CLIENTS > 1)); then CLIENT_COUNTS+=("$CLIENTS"); fi

measure() { # measure DATAPATH
    local dp="$1" r k line conns errs secs rate lt0 lu0 lt1 lu1 st0 st1 w0 w1 idle
    start_bg "server-$dp" taskset -c "$LOAD_CPU" ip netns exec vk-s timeout 600 "$PY" "$TOOLS" serve vk-s 8080 5353 590
    wait_for 5 tcp_listening vk-s 8080 || die "server did not start"
    # Warm-up: ARP, the first connection.
    in_ns vk-c timeout 10 "$PY" "$TOOLS" tcp 10.96.0.10 80 3 >/dev/null 2>&1 || true
    for k in "${CLIENT_COUNTS[@]}"; do for ((r = 1; r <= RUNS; r++)); do
        read -r lt0 lu0 <<<"$(cpu_halts "$LOAD_CPU")"
        read -r st0 _ <<<"$(cpu_halts "$SWITCH_CPU")"
        w0="$(date +%s%N)"
        line="$(taskset -c "$LOAD_CPU" ip netns exec vk-c timeout $((DURATION + 30)) "$PY" "$TOOLS" connrate 10.96.0.10 80 "$DURATION" "$k")"
        w1="$(date +%s%N)"
        read -r lt1 lu1 <<<"$(cpu_halts "$LOAD_CPU")"
        read -r st1 _ <<<"$(cpu_halts "$SWITCH_CPU")"
        read -r conns errs secs <<<"$line"
        rate="$(awk -v d="$conns" -v s="$secs" 'BEGIN {printf "%.0f", d / s}')"
        # The pods' CPU: idle share of the run's wall time and idle entries per connection; the switch's CPU: idle share.
        idle="$(awk -v lt=$((lt1 - lt0)) -v lu=$((lu1 - lu0)) -v st=$((st1 - st0)) -v w=$(((w1 - w0) / 1000)) -v c="$conns" \
            'BEGIN {printf "%.1f\t%.2f\t%.1f", 100 * lt / w, lu / (c > 0 ? c : 1), 100 * st / w}')"
        log "$dp, $k client(s), run $r: $conns connections in $secs s = $rate/s, $errs failed; CPU $LOAD_CPU idle %, its idle entries per connection, CPU $SWITCH_CPU idle %: ${idle//$'\t'/ }"
        printf '%s\t%s\t%s\t%s\t%s\n' "$dp" "$rate" "$errs" "$idle" "$k" >>"$RESULTS"
        sleep 1
    done; done
    bg_stop "server-$dp"
}

for dp in "${SELECTED[@]}"; do
    depth="$(cleanup_scope_begin)"
    log "datapath $dp"
    case "$dp" in
        vswitch-poll) setup_vswitch "$POLL_US" ;;
        *) "setup_$dp" ;;
    esac
    measure "$dp"
    cleanup_scope_end "$depth"
    # Deleting the namespaces frees tens of thousands of closed connections in a kernel worker, in the background.
    wait_idle 60
done

median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# scale_apply: a switch with SCALE_SERVICES Services of 5 endpoints each (perf/e2e/gen-services.py); change one
# Service's endpoints RUNS times in the manifest file and record what `vswitch reload` reports (read, compile, on the
# workers, in force, in ms); then change one Service given to the API RUNS times (`vswitch service apply`: no re-read).
SCALE_SERVICES=10000
scale_apply() {
    local gen="$SCRIPT_DIR/gen-services.py" r out
    mkdir -p "$WORK/scale"
    "$PY" "$gen" "$SCALE_SERVICES" 0 "$WORK/scale/cluster.yaml"
    cat >"$WORK/scale.yaml" <<EOF
node: {name: node-1, podCIDR: 10.244.1.0/24, clusterCIDR: 10.244.0.0/16}
control: {socket: $WORK/scale.sock}
services: {manifests: $WORK/scale/cluster.yaml, reloadSeconds: 3600}
ports: [{name: p, type: tap, interface: vk-tap-x}]
EOF
    ns_add vk-node
    start_bg vswitch-scale taskset -c "$SWITCH_CPU" ip netns exec vk-node "$BIN" run --config "$WORK/scale.yaml"
    wait_for 120 timeout 5 "$BIN" status --socket "$WORK/scale.sock" || { indent_file "$(bg_log vswitch-scale)"; die "the switch did not start"; }
    for ((r = 1; r <= RUNS; r++)); do
        "$PY" "$gen" "$SCALE_SERVICES" $((r % 2)) "$WORK/scale/cluster.yaml"
        out="$(timeout 60 "$BIN" reload --socket "$WORK/scale.sock")"
        log "change $r: $out"
        sed -n 's/.* in \([0-9.]*\) ms; .*compile \([0-9.]*\) ms, on the workers \([0-9.]*\) ms, in force \([0-9.]*\) ms.*/\1 \2 \3 \4/p' <<<"$out" >>"$WORK/scale.tsv"
    done
    for ((r = 1; r <= RUNS + 1; r++)); do
        {
            printf 'apiVersion: v1\nkind: Service\nmetadata: {name: api-0, namespace: default}\n'
            printf 'spec: {clusterIP: 10.111.0.1, ports: [{name: http, port: 80, targetPort: 8080}]}\n---\n'
            printf 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n'
            printf 'metadata: {name: api-0-1, namespace: default, labels: {kubernetes.io/service-name: api-0}}\n'
            printf 'addressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n'
            for e in 1 2 3 4 5; do printf '  - addresses: [10.244.9.%s]\n' $((e + r % 2)); done
        } >"$WORK/scale/api.yaml"
        out="$(timeout 60 "$BIN" service apply -f "$WORK/scale/api.yaml" --socket "$WORK/scale.sock")"
        log "API change $r: $out"
        # The first apply creates the Service; the others change it.
        if ((r > 1)); then
            sed -n 's/.*compile \([0-9.]*\) ms, on the workers \([0-9.]*\) ms, in force \([0-9.]*\) ms.*/\1 \2 \3/p' <<<"$out" >>"$WORK/scale-api.tsv"
        fi
    done
    bg_stop vswitch-scale
}

SCALE_LINE=""
SCALE_API=""
if [[ ",$ONLY," == *",vswitch,"* ]]; then
    depth="$(cleanup_scope_begin)"
    log "applying one changed Service among $SCALE_SERVICES"
    scale_apply
    cleanup_scope_end "$depth"
    SCALE_LINE="$(for c in 1 2 3 4; do awk -v c=$c '{print $c}' "$WORK/scale.tsv" | median; done | paste -sd' ')"
    SCALE_API="$(for c in 1 2 3; do awk -v c=$c '{print $c}' "$WORK/scale-api.tsv" | median; done | paste -sd' ')"
fi

mkdir -p "$(dirname "$OUT")"
{
    printf '# New TCP connections per second through a ClusterIP (same node)\n\n'
    printf '%s runs of %s s each, client and server on CPU %s, switch on CPU %s (vswitch: busy poll %s µs; vswitch-poll: %s µs); median.\n' "$RUNS" "$DURATION" "$LOAD_CPU" "$SWITCH_CPU" "$BUSY_POLL_US" "$POLL_US"
    printf 'Idle = time in the CPU'"'"'s cpuidle states (halted) over the run; idle entries = how often the CPU went idle; busy = the rest, a polling switch'"'"'s spinning included.\n\n'
    printf '| datapath | clients | connections/s (median) | runs | failed | vs kernel | CPU %s idle %% | CPU %s idle entries per connection | CPU %s idle %% | both CPUs busy, µs per connection |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n' \
        "$LOAD_CPU" "$LOAD_CPU" "$SWITCH_CPU"
    # sel DP K COLUMN: that column of every run of DP with K clients.
    sel() { awk -F'\t' -v d="$1" -v k="$2" -v c="$3" '$1 == d && $7 == k {print $c}' "$RESULTS"; }
    for k in "${CLIENT_COUNTS[@]}"; do
        kernel_med=""
        if [[ -n "$(sel kernel "$k" 2)" ]]; then kernel_med="$(sel kernel "$k" 2 | median)"; fi
        for dp in "${SELECTED[@]}"; do
            med="$(sel "$dp" "$k" 2 | median)"
            runs="$(sel "$dp" "$k" 2 | paste -sd, - | sed 's/,/, /g')"
            failed="$(sel "$dp" "$k" 3 | awk '{s += $1} END {print s + 0}')"
            ratio="-"
            if [[ -n "$kernel_med" ]]; then ratio="$(awk -v a="$med" -v b="$kernel_med" 'BEGIN {printf "%.2fx", a / b}')"; fi
            busy="$(awk -F'\t' -v d="$dp" -v k="$k" '$1 == d && $7 == k && $2 > 0 {printf "%.0f\n", (200 - $4 - $6) * 1e4 / $2}' "$RESULTS" | median)"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$dp" "$k" "$med" "$runs" "$failed" "$ratio" \
                "$(sel "$dp" "$k" 4 | median)" "$(sel "$dp" "$k" 5 | median)" "$(sel "$dp" "$k" 6 | median)" "$busy"
        done
    done
    if [[ -n "$SCALE_LINE" ]]; then
        read -r rd cp wk tot <<<"$SCALE_LINE"
        read -r acp awk_ atot <<<"$SCALE_API"
        # shellcheck disable=SC2016 # the backticks are Markdown, not a command substitution
        printf '\nOne Service changed among %s (5 endpoints each), median of %s: in the manifest file (`vswitch reload`): read %s ms, compile %s ms, on the workers %s ms, in force %s ms after the change began; through the API (`vswitch service apply`): compile %s ms, on the workers %s ms, in force %s ms.\n' \
            "$SCALE_SERVICES" "$RUNS" "$rd" "$cp" "$wk" "$tot" "$acp" "$awk_" "$atot"
    fi
} >"$OUT"
cp "$RESULTS" "${OUT%.md}.tsv"
cat "$OUT"
