#!/usr/bin/env bash
#
# Cluster-store benchmark: how fast the store's changes are in force on every node, what 10,000 Services cost a node,
# and what following the store costs in CPU.
#
# Topology (names cb-; pods 10.244.0.0/16, Services 10.96.0.0/12, underlay 198.18.0.0/24): one etcd member in cb-n11
# (198.18.0.11, plain HTTP: the numbers are the switches', not TLS's); three VSwitch nodes cb-n1..cb-n3 (198.18.0.1-3)
# that lease their subnets and follow the store (leaseTTLSeconds 10), each with one pod; one plain-Linux flannel-style
# node cb-n9 (198.18.0.9, 10.244.250.0/24) with one pod, routed to the VSwitch nodes from their leases. Every pod runs
# tests/netns/svc-tools.py serve on TCP 8080.
#
# Measures, in order:
#   1. memory: each switch's resident set (VmRSS) before and after 10,000 Services with one EndpointSlice of 5
#      endpoints each (50,000 endpoints) are written to the store, and how long until every node has them in force;
#   2. apply latency: --changes times (default 100), with the 10,000 Services stored, a new Service (ClusterIP with
#      one endpoint, the node-1 pod) is applied through node 1's control API (POST /v1/objects, what `vswitch apply`
#      does); a prober in the pod of every node connects to it every 2 ms until it answers: the time from the apply to
#      the answer on the last node (median, p99, max), and the apply's own round trip;
#   3. lease latency: --rounds times (default 10), the flannel-style node's lease is written to the store (and
#      revoked after): the time from the write to a connection from the pod of every VSwitch node to the kernel
#      node's pod being answered (median, p99, max);
#   4. watch CPU: EndpointSlice changes at --rate per second (default 100) for --warmup seconds (default 30: the
#      runtime compiles the hot paths again at its higher tier meanwhile), then for --seconds (default 20): each
#      switch's CPU time (utime + stime) over that second window, as a share of one core, and the changes it received.
#
# Usage: perf/e2e/cluster-bench.sh [--services N] [--changes N] [--rounds N] [--rate R] [--warmup S] [--seconds S]
#                                  [--out FILE]
#   --out FILE   the Markdown summary (default out/bench-cluster.md)
# Holds /tmp/vswitch-bench.lock for the whole run.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../tests/netns/lib.sh
. "$SCRIPT_DIR/../../tests/netns/lib.sh"

SERVICES=10000
CHANGES=100
ROUNDS=10
RATE=100
SECONDS_CHURN=20
WARMUP=30
OUT="$REPO/out/bench-cluster.md"
TOOLS="$REPO/tests/netns/svc-tools.py"
DRIVER="$SCRIPT_DIR/cluster-driver.py"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        --services) SERVICES="$2"; shift 2 ;;
        --changes) CHANGES="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --seconds) SECONDS_CHURN="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

require_root
require_cmd ip bridge etcd etcdctl "$PY" curl
bench_lock

UL_NS=cb-ul
UL_BR=cb-br
UL_IF=ul0
PREFIX=/vswitch
ETCD_IP=198.18.0.11
ETCD_URL="http://$ETCD_IP:2379"
VS_NODES=(1 2 3)
KNODE=9
KSUB=10.244.250.0/24
KGW=10.244.250.1
KPOD=10.244.250.2
KVTEP=0e:00:0a:f4:fa:01

node_ns() { printf 'cb-n%s\n' "$1"; }
ul_ip() { printf '198.18.0.%s\n' "$1"; }

make_workdir cb-cluster
WORK="$NETNS_WORKDIR"
BIN="$(vswitch_bin)"
mkdir -p "$(dirname "$OUT")"
sock_of() { printf '%s/n%s.sock\n' "$WORK" "$1"; }
vs() {
    local n="$1"
    shift
    timeout 20 "$BIN" "$@" --socket "$(sock_of "$n")"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pyjson() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
median_p99() { # stdin: numbers; prints "median p99 max"
    sort -n | awk '{a[NR]=$1} END {if (NR == 0) {print "- - -"; exit} m = a[int((NR + 1) / 2)]; p = a[int(NR * 0.99 + 0.999)]; if (p == "") p = a[NR]; print m, p, a[NR]}'
}

underlay_bridge "$UL_BR"
for n in "${VS_NODES[@]}" "$KNODE" 11; do underlay_node "$n" cb "$UL_BR"; done
# The kernel node sends complete frames (its vxlan skbs with partial checksums would cross the veth unfinished) and
# takes no UDP GSO trains, as in tests/netns/overlay-system.sh.
offloads_off "$UL_IF" "$(node_ns "$KNODE")"
offloads_off "p$KNODE" "$UL_NS"

# The store.
start_bg etcd ip netns exec "$(node_ns 11)" etcd --name e1 --data-dir "$WORK/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://$ETCD_IP:2380" --initial-advertise-peer-urls "http://$ETCD_IP:2380" \
    --initial-cluster "e1=http://$ETCD_IP:2380" --quota-backend-bytes 4294967296 --log-level error
etcd_up() { in_ns "$(node_ns 11)" etcdctl --endpoints "$ETCD_URL" endpoint health >/dev/null 2>&1; }
wait_for 20 etcd_up || die "etcd did not start: $(tail -5 "$(bg_log etcd)")"
in_ns "$(node_ns 11)" etcdctl --endpoints "$ETCD_URL" put "$PREFIX/network/config" \
    '{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":4789}}' >/dev/null

# The VSwitch nodes, one pod each.
for n in "${VS_NODES[@]}"; do
    cat >"$WORK/n$n.yaml" <<EOF
node: {name: cb-n$n, clusterCIDR: 10.244.0.0/16}
control: {socket: $(sock_of "$n")}
state: {directory: $WORK/n$n-state}
overlay: {localAddress: $(ul_ip "$n")}
services: {}
cluster:
  prefix: $PREFIX
  leaseTTLSeconds: 10
  etcd: {endpoints: [$ETCD_URL]}
EOF
    ns_add "cb-p$n"
    quiet_ns "cb-p$n"
    start_bg "vs-n$n" ip netns exec "$(node_ns "$n")" "$BIN" run --config "$WORK/n$n.yaml"
done
declare -A POD_IP=() PID=()
for n in "${VS_NODES[@]}"; do
    ready() { vs "$1" cluster -o json 2>/dev/null | pyjson "d['state']" 2>/dev/null | grep -qx ready; }
    wait_for 30 ready "$n" || die "cb-n$n did not become ready: $(tail -5 "$(bg_log "vs-n$n")")"
    sub="$(vs "$n" cluster -o json | pyjson "d['subnet']")"
    POD_IP[$n]="${sub%.0/24}.2"
    vs "$n" port add pod --interface "cb$n-tap" --namespace "cb-p$n" --address "${POD_IP[$n]}/24" >/dev/null
    PID[$n]="$(bg_pid "vs-n$n")"
    start_bg "srv-$n" ip netns exec "cb-p$n" "$PY" "$TOOLS" serve "n$n" 8080 8080 3600
    log "cb-n$n: subnet $sub, pod ${POD_IP[$n]}, switch pid ${PID[$n]}"
done

# The kernel node: flannel.1, cni0 and a pod; routed to the VSwitch nodes from their leases.
kns="$(node_ns "$KNODE")"
flannel_node "$kns" 250 "$KVTEP" 1 4789 "$(ul_ip "$KNODE")" "$UL_IF" 1450 "$KGW"
ns_add cb-p9
quiet_ns cb-p9
veth_add cb-p9-h cb-p9-p
link_to_ns cb-p9-h "$kns"
link_to_ns cb-p9-p cb-p9 eth0
in_ns "$kns" ip link set cb-p9-h mtu 1450 master cni0 up
in_ns cb-p9 ip link set eth0 mtu 1450 up
in_ns cb-p9 ip addr add "$KPOD/24" dev eth0
in_ns cb-p9 ip route add default via "$KGW" dev eth0
for n in "${VS_NODES[@]}"; do
    js="$(vs "$n" cluster -o json)"
    sub="$(pyjson "d['subnet']" <<<"$js")"
    mac="$(pyjson "d['vtepMac']" <<<"$js")"
    o="${sub#10.244.}"
    flannel_peer "$kns" "${o%%.*}" "$sub" "$mac" "$(ul_ip "$n")"
done
start_bg srv-9 ip netns exec cb-p9 "$PY" "$TOOLS" serve n9 8080 8080 3600

{
    echo "# Cluster store benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, etcd $(etcd --version | awk '/etcd Version/ {print $3}'), one member (plain HTTP); 3 VSwitch nodes"
    echo
} >"$OUT"

# 1. Memory for SERVICES Services and 5 x SERVICES endpoints.
declare -A RSS0=()
for n in "${VS_NODES[@]}"; do RSS0[$n]="$(rss_kb "${PID[$n]}")"; done
T0="$(date +%s.%N)"
read -r objs secs < <(in_ns "$(node_ns 11)" "$PY" "$DRIVER" preload "$ETCD_URL" "$PREFIX" "$SERVICES" 5)
log "preload: $objs objects written in $secs s"
for n in "${VS_NODES[@]}"; do
    loaded() { vs "$1" cluster -o json 2>/dev/null | pyjson "d['objects'].get('services', 0) >= $SERVICES and d['objects'].get('endpointslices', 0) >= $SERVICES" | grep -qx True; }
    wait_for 300 loaded "$n" || die "cb-n$n did not take the $SERVICES Services within 300 s"
done
T1="$(date +%s.%N)"
sleep 3
{
    echo "## Memory: $SERVICES Services, $((SERVICES * 5)) endpoints"
    echo
    echo "Written to the store in $secs s; in force on all three nodes $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b - a}') s after the first write."
    echo
    echo "| node | RSS before | RSS after | difference |"
    echo "|---|---|---|---|"
    for n in "${VS_NODES[@]}"; do
        r1="$(rss_kb "${PID[$n]}")"
        echo "| cb-n$n | $((RSS0[$n] / 1024)) MiB | $((r1 / 1024)) MiB | $(((r1 - RSS0[$n]) / 1024)) MiB |"
    done
    echo
} >>"$OUT"

# 2. Apply -> answering on every node.
ns_list=()
for n in "${VS_NODES[@]}"; do ns_list+=("cb-p$n"); done
"$PY" "$DRIVER" apply-latency "$(sock_of 1)" "$CHANGES" "${POD_IP[1]}" 8080 "${ns_list[@]}" >"$WORK/apply.txt"
missed="$(awk '$2 == "-"' "$WORK/apply.txt" | wc -l)"
read -r am ap ax < <(awk '{print $1}' "$WORK/apply.txt" | median_p99)
read -r lm lp lx < <(awk '$2 != "-" {print $2}' "$WORK/apply.txt" | median_p99)
{
    echo "## From apply to answering on every node ($CHANGES changes, $SERVICES Services stored)"
    echo
    echo "| | median | p99 | max |"
    echo "|---|---|---|---|"
    echo "| apply (POST /v1/objects, written to the store) | $am ms | $ap ms | $ax ms |"
    echo "| apply → the new ClusterIP answers on all 3 nodes | $lm ms | $lp ms | $lx ms |"
    echo
    echo "Changes that did not answer on every node within 15 s: $missed."
    echo
} >>"$OUT"

# 3. Lease written -> pods on every VSwitch node reach the new node.
checks=()
for n in "${VS_NODES[@]}"; do checks+=("timeout 10 $BIN peers -o json --socket $(sock_of "$n") | grep -q '\"address\": \"$(ul_ip "$KNODE")\"'"); done
value="{\"PublicIP\":\"$(ul_ip "$KNODE")\",\"PublicIPv6\":null,\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"$KVTEP\"}}"
in_ns "$(node_ns 11)" "$PY" "$DRIVER" lease-latency "$ETCD_URL" "$PREFIX" 10.244.250.0-24 "$value" "$KPOD" 8080 "$ROUNDS" \
    "${checks[@]}" -- "${ns_list[@]}" >"$WORK/lease.txt" 2>"$WORK/lease.err" || true
read -r em ep ex < <(awk '$1 != "-" {print $1}' "$WORK/lease.txt" | median_p99)
{
    echo "## From a node's lease appearing to pods on every other node reaching it ($ROUNDS rounds)"
    echo
    echo "| | median | p99 | max |"
    echo "|---|---|---|---|"
    echo "| lease written → a connection from the pod of each of the 3 VSwitch nodes answered | $em ms | $ep ms | $ex ms |"
    echo
    echo "Rounds that did not reach every node within 20 s: $(awk '$1 == "-"' "$WORK/lease.txt" | wc -l)."
    echo
} >>"$OUT"
[[ ! -s "$WORK/lease.err" ]] || log "lease-latency: $(tail -5 "$WORK/lease.err")"

# 4. CPU of following RATE changes per second.
declare -A C0=() E0=()
events() { vs "$1" cluster -o json | pyjson "[w for w in d['watches'] if w['prefix'].endswith('registry/')][0]['events']"; }
in_ns "$(node_ns 11)" "$PY" "$DRIVER" churn "$ETCD_URL" "$PREFIX" "$RATE" "$WARMUP" "$SERVICES" >/dev/null
for n in "${VS_NODES[@]}"; do
    C0[$n]="$(cpu_ticks "${PID[$n]}")"
    E0[$n]="$(events "$n")"
done
read -r done_changes took < <(in_ns "$(node_ns 11)" "$PY" "$DRIVER" churn "$ETCD_URL" "$PREFIX" "$RATE" "$SECONDS_CHURN" "$SERVICES")
sleep 1
hz="$(getconf CLK_TCK)"
{
    echo "## Following $RATE EndpointSlice changes per second ($done_changes changes in $took s, $SERVICES Services stored)"
    echo
    echo "| node | CPU (share of one core) | changes received |"
    echo "|---|---|---|"
    for n in "${VS_NODES[@]}"; do
        c1="$(cpu_ticks "${PID[$n]}")"
        e1="$(events "$n")"
        echo "| cb-n$n | $(awk -v a="${C0[$n]}" -v b="$c1" -v hz="$hz" -v s="$took" 'BEGIN {printf "%.1f %%", 100 * (b - a) / hz / (s + 1)}') | $((e1 - E0[$n])) |"
    done
    echo
    echo "Measured after $WARMUP s of the same changes. Reproduce: \`perf/e2e/cluster-bench.sh --services $SERVICES --changes $CHANGES --rounds $ROUNDS --rate $RATE --warmup $WARMUP --seconds $SECONDS_CHURN\`"
} >>"$OUT"

for n in "${VS_NODES[@]}"; do bg_stop "vs-n$n" TERM 10; done
cat "$OUT"
