#!/usr/bin/env bash
#
# Workers system test: two VSwitch nodes, each running two worker threads
# (datapath.workers: 2), joined by the VXLAN overlay.  Every TAP is a
# multi-queue TAP with one queue per worker and the overlay socket is shared
# by SO_REUSEPORT, so the kernel spreads flows over the workers by its own
# hash; the switch steers each flow to the worker its symmetric hash names and
# redirects NATed replies to the worker that owns the connection.
#
# Topology (names start with vw-; pods 10.244.0.0/16, Services 10.96.0.0/12,
# underlay 198.18.2.0/24):
#
#                 vw-ul: Linux bridge vw-br
#     ul0 198.18.2.1                ul0 198.18.2.2
#    vw-n1 (VSwitch, 2 workers)    vw-n2 (VSwitch, 2 workers)
#    pods  vw-n1-c   10.244.1.2    pods  vw-n2-e3  10.244.2.3
#          vw-n1-e1  10.244.1.3
#          vw-n1-e2  10.244.1.4
#
# Checks: both switches report two workers; ping same node and across nodes;
# 200 ClusterIP TCP connections (endpoints on both nodes) all answered, spread
# over all three endpoints; ClusterIP UDP; ClientIP affinity holds across
# workers; hairpin; 4 clients opening ClusterIP connections at once; iperf3
# TCP same node and across nodes; the steer stage
# handed packets between workers and conntrack redirected NATed replies, with
# no packet refused between workers; every connection listed once.
#
# Usage: tests/netns/workers-system.sh
#
# Output: `ok - ...` / `not ok - ...` per check, then `N passed, N failed`.
# Environment: VSWITCH=/path/to/vswitch (default <repo>/out/vswitch/vswitch).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$SCRIPT_DIR/lib.sh"

case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    "") ;;
    *) die "unknown argument: $1 (see --help)" ;;
esac

require_root
require_cmd ip ping timeout ss sysctl awk iperf3 "$PY"

TOOLS="$SCRIPT_DIR/svc-tools.py"
UL_NS=vw-ul
UL_IF=ul0
make_workdir vw-workers
WORK="$NETNS_WORKDIR"
BIN="$(vswitch_bin)"
MANIFESTS="$WORK/manifests"
mkdir -p "$MANIFESTS"

node_ns() { printf 'vw-n%s\n' "$1"; }
ul_ip() { printf '198.18.2.%s\n' "$1"; }
sock_of() { printf '%s/n%s.sock\n' "$WORK" "$1"; }
vs() { # vs NODE SUBCOMMAND ARGS...
    local n="$1"
    shift
    timeout 10 "$BIN" "$@" --socket "$(sock_of "$n")"
}
PODS=(n1-c n1-e1 n1-e2 n2-e3)
declare -A POD_NODE=([n1-c]=1 [n1-e1]=1 [n1-e2]=1 [n2-e3]=2)
declare -A POD_IP=([n1-c]=10.244.1.2 [n1-e1]=10.244.1.3 [n1-e2]=10.244.1.4 [n2-e3]=10.244.2.3)
pod_ns() { printf 'vw-%s\n' "$1"; }

cat >"$MANIFESTS/services.yaml" <<'EOF'
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    clusterIP: 10.96.0.10
    ports:
    - {name: http, protocol: TCP, port: 80, targetPort: 8080}
    - {name: dns, protocol: UDP, port: 53, targetPort: 5353}
- apiVersion: v1
  kind: Service
  metadata: {name: sticky, namespace: default}
  spec:
    clusterIP: 10.96.0.20
    ports: [{name: http, port: 80, targetPort: 8080}]
    sessionAffinity: ClientIP
- apiVersion: v1
  kind: Service
  metadata: {name: self, namespace: default}
  spec:
    clusterIP: 10.96.0.40
    ports: [{name: http, port: 80, targetPort: 8080}]
EOF
{
    printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n'
    printf 'ports:\n- {name: http, protocol: TCP, port: 8080}\n- {name: dns, protocol: UDP, port: 5353}\nendpoints:\n'
    endpoints_yaml n1-e1 n1-e2 n2-e3
    printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: sticky-1\n  namespace: default\n  labels: {kubernetes.io/service-name: sticky}\naddressType: IPv4\n'
    printf 'ports:\n- {name: http, protocol: TCP, port: 8080}\nendpoints:\n'
    endpoints_yaml n1-e1 n1-e2 n2-e3
    printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: self-1\n  namespace: default\n  labels: {kubernetes.io/service-name: self}\naddressType: IPv4\n'
    printf 'ports:\n- {name: http, protocol: TCP, port: 8080}\nendpoints:\n'
    endpoints_yaml n1-e1
} >"$MANIFESTS/endpointslices.yaml"

write_config() { # write_config N FILE
    local n="$1" file="$2"
    {
        printf 'node:\n  name: node-%s\n  podCIDR: 10.244.%s.0/24\n  clusterCIDR: 10.244.0.0/16\n' "$n" "$n"
        printf 'datapath:\n  workers: 2\n'
        # Node 1's pods take in what the switch writes on CPU 0 (receive packet steering); node 2's in the switch's
        # writes, so traffic between them crosses both.
        if [[ "$n" == 1 ]]; then printf '  podRxCpus: "0"\n'; fi
        printf 'control:\n  socket: %s\n' "$(sock_of "$n")"
        printf 'state:\n  directory: %s/state-%s\n' "$WORK" "$n"
        printf 'services:\n  manifests: %s\n  serviceCIDR: 10.96.0.0/12\n' "$MANIFESTS"
        printf 'overlay:\n  localAddress: %s\n  peers:\n' "$(ul_ip "$n")"
        overlay_peers_yaml "$n" 1 2
        printf 'ports:\n'
        # Node 1's pods get a longer transmit queue than the kernel's 1000 (on a multi-queue TAP: every queue's ring).
        if [[ "$n" == 1 ]]; then tap_ports_yaml "$n" vw "txQueueLength: 4000"; else tap_ports_yaml "$n" vw; fi
    } >"$file"
}

for k in "${PODS[@]}"; do
    if ip netns list | awk '{print $1}' | grep -qxF -- "$(pod_ns "$k")"; then
        die "namespace $(pod_ns "$k") already exists (left over from an earlier run? remove it with: ip netns del $(pod_ns "$k"))"
    fi
done
underlay_bridge vw-br
for n in 1 2; do
    underlay_node "$n" vw vw-br
done
for k in "${PODS[@]}"; do
    ns_add "$(pod_ns "$k")"
    quiet_ns "$(pod_ns "$k")"
done

for n in 1 2; do
    cfg="$WORK/node-$n.yaml"
    write_config "$n" "$cfg"
    expect_ok "node-$n config with two workers is valid" "$BIN" config check "$cfg"
    start_bg "vw-n$n" ip netns exec "$(node_ns "$n")" "$BIN" run --config "$cfg"
done
for n in 1 2; do
    if wait_for 20 vs "$n" status; then
        pass "node-$n switch is up"
    else
        fail "node-$n switch is up" "$(bg_log "vw-n$n")"
        die "switch did not start"
    fi
    assert_contains "node-$n runs two workers" "$(vs "$n" status 2>&1)" "workers:    2"
done
for k in "${PODS[@]}"; do
    wait_for 10 ip -n "$(pod_ns "$k")" -4 addr show dev eth0 || die "pod $k has no address"
done
queues="$(in_ns "$(pod_ns n1-c)" ls /sys/class/net/eth0/queues 2>/dev/null | grep -c '^tx-' || true)"
if [[ "$queues" == 2 ]]; then pass "each pod TAP has one queue per worker (2 tx queues)"; else fail "pod TAP queues: $queues tx queues, want 2"; fi
rps_of() { in_ns "$(pod_ns "$1")" cat /sys/class/net/eth0/queues/rx-0/rps_cpus /sys/class/net/eth0/queues/rx-1/rps_cpus 2>&1 | tr '\n' ' '; }
if [[ "$(rps_of n1-c)" =~ ^0*1\ 0*1\ $ && "$(rps_of n2-e3)" =~ ^0+\ 0+\ $ ]]; then
    pass "podRxCpus: node-1 pod TAPs steer both receive queues to CPU 0 ($(rps_of n1-c)), node-2's do not ($(rps_of n2-e3))"
else
    fail "podRxCpus: node-1 pod rps_cpus '$(rps_of n1-c)' (want 1 1), node-2 '$(rps_of n2-e3)' (want 0 0)"
fi
qlen_of() { ip -n "$(pod_ns "$1")" -o link show dev eth0 | sed -n 's/.* qlen \([0-9]*\).*/\1/p'; }
if [[ "$(qlen_of n1-c)" == 4000 && "$(qlen_of n2-e3)" == 1000 ]]; then
    pass "txQueueLength: node-1 pods' eth0 has qlen 4000, node-2's the kernel's 1000"
else
    fail "txQueueLength: node-1 pod qlen '$(qlen_of n1-c)' (want 4000), node-2 '$(qlen_of n2-e3)' (want 1000)"
fi
assert_contains "node-1 status shows where pods take in frames" "$(vs 1 status 2>&1)" "pod rx:     CPUs 0 (receive packet steering"
assert_contains "node-2 status shows where pods take in frames" "$(vs 2 status 2>&1)" "pod rx:     in the switch's writes"

for k in n1-e1 n1-e2 n2-e3; do
    start_bg "srv-$k" timeout 300 ip netns exec "$(pod_ns "$k")" "$PY" "$TOOLS" serve "$k" 8080 5353 290
    wait_for 5 tcp_listening "$(pod_ns "$k")" 8080 || die "server in $k did not start"
done

expect_ok "ping from a pod to a pod on the same node" in_ns "$(pod_ns n1-c)" ping -c 3 -i 0.2 -W 2 10.244.1.3
expect_ok "ping from a pod to a pod on the other node" in_ns "$(pod_ns n1-c)" ping -c 3 -i 0.2 -W 2 10.244.2.3

tcp_from() { # tcp_from POD HOST PORT COUNT: TCP client in POD; output in $OUT
    OUT="$(in_ns "$(pod_ns "$1")" timeout 120 "$PY" "$TOOLS" tcp "$2" "$3" "$4" 2 2>&1 || true)"
}
save_out() {
    local f
    f="$(mktemp "$WORK/out.XXXXXX")"
    printf '%s\n' "$OUT" >"$f"
    printf '%s\n' "$f"
}
served_by() { awk '$1 !~ /^ERR/ {print $1}' <<<"$OUT" | sort -u | tr '\n' ' '; }

tcp_from n1-c 10.96.0.10 80 200
ok_count="$(grep -c '^n.-e. 10.244.1.2:' <<<"$OUT" || true)"
if [[ "$ok_count" == 200 && "$(served_by | wc -w)" == 3 ]]; then
    pass "200 ClusterIP TCP connections across two workers: all answered, client IP kept, all 3 endpoints ($(served_by))"
else
    fail "200 ClusterIP TCP connections ($ok_count answered; endpoints: $(served_by))" "$(save_out)"
fi

OUT="$(in_ns "$(pod_ns n1-c)" timeout 60 "$PY" "$TOOLS" udp 10.96.0.10 53 30 0.01 2>&1 || true)"
ok_count="$(grep -c ' n.-e. 10.244.1.2:' <<<"$OUT" || true)"
if [[ "$ok_count" == 30 ]]; then pass "ClusterIP UDP: 30/30 answered"; else fail "ClusterIP UDP ($ok_count/30)" "$(save_out)"; fi

tcp_from n1-c 10.96.0.20 80 40
if [[ "$(served_by | wc -w)" == 1 && "$(grep -c '^n' <<<"$OUT")" == 40 ]]; then
    pass "ClientIP affinity holds across workers: 40 connections all went to $(served_by)"
else
    fail "ClientIP affinity across workers: 40 connections went to: $(served_by)" "$(save_out)"
fi

tcp_from n1-e1 10.96.0.40 80 10
if [[ "$(grep -c '^n1-e1 10.244.1.1:' <<<"$OUT")" == 10 ]]; then
    pass "hairpin through two workers: 10/10, masqueraded to the gateway"
else
    fail "hairpin through two workers" "$(save_out)"
fi

start_bg iperf-e1 timeout 60 ip netns exec "$(pod_ns n1-e1)" iperf3 -s -1
start_bg iperf-e3 timeout 60 ip netns exec "$(pod_ns n2-e3)" iperf3 -s -1
wait_for 5 tcp_listening "$(pod_ns n1-e1)" 5201 || die "iperf3 server in n1-e1 did not start"
wait_for 5 tcp_listening "$(pod_ns n2-e3)" 5201 || die "iperf3 server in n2-e3 did not start"
for dst in 10.244.1.3 10.244.2.3; do
    res="$(in_ns "$(pod_ns n1-c)" timeout 30 iperf3 -c "$dst" -t 3 -P 4 -J 2>/dev/null || true)"
    gbps="$(printf '%s' "$res" | "$PY" -c 'import json,sys
try: print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("0")')"
    log "iperf3 -P 4 to $dst through two workers: $gbps Gb/s"
    if awk -v g="$gbps" 'BEGIN {exit !(g > 0.05)}'; then
        pass "iperf3 TCP, 4 streams, to $dst through two workers ($gbps Gb/s)"
    else
        fail "iperf3 TCP to $dst through two workers ($gbps Gb/s)"
    fi
done

counters="$(vs 1 counters 2>&1 || true)"
printf '%s\n' "$counters" >"$WORK/counters-n1.txt"
handed="$(awk '$1 == "steer" && $2 == "handed-off" {print $3}' <<<"$counters")"
redirected="$(awk '$1 == "conntrack" && $2 == "handed-off" {print $3}' <<<"$counters")"
local_pkts="$(awk '$1 == "steer" && $2 == "local" {print $3}' <<<"$counters")"
log "node-1 steer: ${local_pkts:-?} packets served by the worker that read them, ${handed:-?} handed over; conntrack redirected ${redirected:-?}"
if [[ "${handed:-0}" -gt 0 ]]; then pass "node-1 steered packets between its workers (steer handed-off $handed)"; else fail "steer handed-off on node-1: '${handed:-}'" "$WORK/counters-n1.txt"; fi
if [[ "${redirected:-0}" -gt 0 ]]; then pass "NATed replies reached the worker owning their connection (conntrack handed-off $redirected)"; else fail "conntrack handed-off on node-1: '${redirected:-}'" "$WORK/counters-n1.txt"; fi
if grep -q 'hand-off-refused' <<<"$counters"; then fail "no packet refused between workers" "$WORK/counters-n1.txt"; else pass "no packet refused between workers"; fi

assert_contains "metrics show the per-worker hand-off counters, none refused" "$(vs 1 metrics 2>&1 || true)" \
    'vswitch_worker_handoffs_refused_total{node="node-1",worker="1"} 0'

ct="$(vs 1 conntrack 100000 2>&1 || true)"
dups="$(grep -o 'src=[0-9.]* dst=10.96.0.10 sport=[0-9]* dport=80' <<<"$ct" | sort | uniq -d | wc -l)"
listed="$(grep -c 'dst=10.96.0.10 sport=[0-9]* dport=80' <<<"$ct" || true)"
if [[ "$dups" == 0 && "$listed" -ge 200 ]]; then
    pass "conntrack lists each of the $listed ClusterIP connections once, across workers"
else
    fail "conntrack across workers: $listed listed, $dups duplicated"
fi

# Four clients opening connections at once (the services bench's capacity load): every one answered.
read -r conns errs secs <<<"$(in_ns "$(pod_ns n1-c)" timeout 30 "$PY" "$TOOLS" connrate 10.96.0.10 80 2 4 2>"$WORK/connrate.err" || echo "0 -1 0")"
if [[ "$errs" == 0 ]] && ((conns >= 100)); then
    pass "4 clients at once for $secs s through a ClusterIP across two workers: $conns connections, none failed"
else
    fail "4 clients at once through a ClusterIP: $conns connections, $errs failed" "$WORK/connrate.err"
fi

finish
