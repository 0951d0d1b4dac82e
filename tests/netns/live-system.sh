#!/usr/bin/env bash
#
# Live data-plane system test: pods come and go through the control API while the switch forwards.
#
# Two VSwitch nodes on a VXLAN underlay. Node 1 (namespace vl-n1) has Services on (so every IPv4 flow is tracked) and
# two pods from its config file, vl-a and vl-b; node 2 has one pod, vl-c. While iperf3 TCP runs from vl-a to vl-b
# through a ClusterIP that a Service given to the API (`vswitch service apply`) DNATs to vl-b, 50 pods are added and removed one by one on node 1 through the CLI (`vswitch port add` / `port del`),
# as a container runtime would: the script creates each pod's namespace first, the switch creates the TAP, moves it in,
# addresses and routes it. Each added pod pings its gateway and a neighbour (vl-a) and sends UDP to vl-a before it is
# removed; after each pod the stream's Service gains two endpoints and loses them again (100 Service changes, pod b
# stays its endpoint throughout). Half-way, node 1 removes its peer node-2 (`vswitch peer del`: vl-c becomes unreachable) and adds it again
# (`peer add`: vl-c answers again).
#
# Checks: every port add and del succeeds and reports what it flushed; each added pod pings its gateway and its
# neighbour; after each removal the pod's MAC, neighbor and conntrack entries are gone and its TAP with them; the peer
# and its route go and come back; the 100 Service changes each recompile one Service; all of it while the iperf3
# stream runs through that Service, which never stalls for more than 1 s and
# keeps its connection; the API answers in JSON (`-o json`).
# Prints the median and p99 of the port add and del times and of the Service changes' time on the workers, as the
# switch reports them.
#
# Topology (names start with vl-; pods 10.244.0.0/16, underlay 198.18.3.0/24):
#
#                 vl-ul: Linux bridge vl-br
#     ul0 198.18.3.1                 ul0 198.18.3.2
#    vl-n1: VSwitch (10.244.1.1)    vl-n2: VSwitch (10.244.2.1)
#      vl-a 10.244.1.2                vl-c 10.244.2.2
#      vl-b 10.244.1.3
#      vl-p1 .. vl-p50  10.244.1.11 ..  (added and removed through the API)
#
# Usage: tests/netns/live-system.sh [--pods N]
#
# Output: `ok - ...` / `not ok - ...` per check, then `N passed, N failed`.
# Environment: VSWITCH=/path/to/vswitch (default <repo>/out/vswitch/vswitch).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$SCRIPT_DIR/lib.sh"

PODS_N=50
while (($#)); do
    case "$1" in
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        --pods)
            PODS_N="$2"
            shift
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
[[ "$PODS_N" =~ ^[0-9]+$ ]] && ((PODS_N >= 1 && PODS_N <= 200)) || die "--pods: 1..200"

require_root
require_cmd ip ping timeout iperf3 awk "$PY"

BIN="$(vswitch_bin)"
[[ -x "$BIN" ]] || die "vswitch binary not found at $BIN (build it, or set VSWITCH)"
make_workdir vl
WORK="$NETNS_WORKDIR"
SOCK="$WORK/ctl/vswitch.sock"
SOCK2="$WORK/ctl2/vswitch.sock"
NODE=vl-n1
TOOLS="$SCRIPT_DIR/svc-tools.py"
UL_NS=vl-ul
UL_IF=ul0
node_ns() { printf 'vl-n%s\n' "$1"; }
ul_ip() { printf '198.18.3.%s\n' "$1"; }

vs() { # vs SUBCOMMAND ARGS...: the switch CLI against node 1's socket
    timeout 10 "$BIN" "$@" --socket "$SOCK"
}

for ns in "$NODE" vl-n2 vl-ul vl-a vl-b vl-c; do
    if ip netns list | awk '{print $1}' | grep -qxF -- "$ns"; then
        die "namespace $ns already exists (left over from an earlier run? remove it with: ip netns del $ns)"
    fi
done
underlay_bridge vl-br
underlay_node 1 vl vl-br
underlay_node 2 vl vl-br
for p in a b c; do
    ns_add "vl-$p"
    quiet_ns "vl-$p"
done

mkdir -p "$WORK/cluster"
cat >"$WORK/cluster/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 5201}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.3]}]
ports: [{name: http, port: 5201}]
EOF
cat >"$WORK/node.yaml" <<EOF
node: {name: live-1, podCIDR: 10.244.1.0/24}
control: {socket: $SOCK}
state: {directory: $WORK/state-1}
services: {manifests: $WORK/cluster}
overlay:
  localAddress: 198.18.3.1
  peers: [{name: node-2, address: 198.18.3.2, podCIDR: 10.244.2.0/24}]
ports:
  - {name: a, interface: vl-tap-a, namespace: vl-a, address: 10.244.1.2/24, mac: "02:00:0a:f4:01:02"}
  - {name: b, interface: vl-tap-b, namespace: vl-b, address: 10.244.1.3/24, mac: "02:00:0a:f4:01:03"}
EOF
cat >"$WORK/node2.yaml" <<EOF
node: {name: live-2, podCIDR: 10.244.2.0/24}
control: {socket: $SOCK2}
state: {directory: $WORK/state-2}
overlay:
  localAddress: 198.18.3.2
  peers: [{name: node-1, address: 198.18.3.1, podCIDR: 10.244.1.0/24}]
ports:
  - {name: c, interface: vl-tap-c, namespace: vl-c, address: 10.244.2.2/24, mac: "02:00:0a:f4:02:02"}
EOF
expect_ok "config is valid" "$BIN" config check "$WORK/node.yaml"
start_bg vswitch ip netns exec "$NODE" "$BIN" run --config "$WORK/node.yaml"
start_bg vswitch2 ip netns exec vl-n2 "$BIN" run --config "$WORK/node2.yaml"
if wait_for 20 vs status && wait_for 20 timeout 10 "$BIN" status --socket "$SOCK2"; then pass "switches are up"; else
    fail "switches are up" "$(bg_log vswitch; bg_log vswitch2)"
    die "switch did not start"
fi
wait_for 10 ip -n vl-b -4 addr show dev eth0 || die "pod b has no address"
wait_for 10 ip -n vl-c -4 addr show dev eth0 || die "pod c has no address"
expect_ok "pod a pings pod b" in_ns vl-a ping -c 2 -W 1 10.244.1.3
expect_ok "pod a pings pod c on node 2" in_ns vl-a ping -c 2 -W 1 10.244.2.2

# ---------------------------------------------------------------- the stream that must not stall

# The stream runs until the last change is made (then it is interrupted and its intervals read); its -t only bounds it.
IPERF_SECS=$((PODS_N * 6 + 60))
start_bg iperf-server ip netns exec vl-b timeout $((IPERF_SECS + 20)) iperf3 -s -1 -B 10.244.1.3
wait_for 5 in_ns vl-b sh -c "ss -Hltn | grep -q ':5201 '" || true
# The stream goes through a Service the API gives (10.96.0.20:5201 -> pod b), which changes 100 times below.
stream_svc() { # stream_svc EXTRA_ENDPOINT...: the manifest of the "stream" Service with pod b and the given endpoints
    printf 'apiVersion: v1\nkind: Service\nmetadata: {name: stream, namespace: default}\n'
    printf 'spec: {clusterIP: 10.96.0.20, ports: [{name: iperf, port: 5201}]}\n---\n'
    printf 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n'
    printf 'metadata: {name: stream-1, namespace: default, labels: {kubernetes.io/service-name: stream}}\n'
    printf 'addressType: IPv4\nports: [{name: iperf, port: 5201}]\nendpoints:\n'
    local a
    for a in 10.244.1.3 "$@"; do printf '  - addresses: [%s]\n' "$a"; done
}
stream_svc >"$WORK/stream-1.yaml"
stream_svc 10.244.1.98 10.244.1.99 >"$WORK/stream-3.yaml"
expect_ok "service apply: a Service through the API" vs service apply -f "$WORK/stream-1.yaml"
start_bg iperf ip netns exec vl-a timeout $((IPERF_SECS + 15)) iperf3 -c 10.96.0.20 -t "$IPERF_SECS" -i 0.5 -J
sleep 2

# ---------------------------------------------------------------- 50 pods come and go

start_bg udp-sink ip netns exec vl-a "$PY" "$TOOLS" serve pod-a 9 9 $((IPERF_SECS + 10))
ok_add=0 ok_ping=0 ok_del=0 ok_gone=0 ok_svc=0
loop_start=$SECONDS
: >"$WORK/times.txt"
for i in $(seq 1 "$PODS_N"); do
    ns="vl-p$i" ip="10.244.1.$((10 + i))" name="p$i" tap="vl-t$i"
    mac="$(printf '02:00:0a:f4:01:%02x' $((10 + i)))"
    ip netns add "$ns"
    cleanup sh -c "ip netns del $ns 2>/dev/null || true"
    quiet_ns "$ns"
    if out="$(vs port add "$name" --interface "$tap" --namespace "$ns" --address "$ip/24" --mac "$mac" 2>&1)"; then
        ok_add=$((ok_add + 1))
        sed -n 's/.* in \([0-9.]*\) ms$/add \1/p' <<<"$out" >>"$WORK/times.txt"
    else
        fail "port add $name" "$out"
        continue
    fi
    if in_ns "$ns" ping -c 1 -W 1 10.244.1.1 >/dev/null 2>&1 && in_ns "$ns" ping -c 1 -W 1 10.244.1.2 >/dev/null 2>&1; then
        ok_ping=$((ok_ping + 1))
    else
        fail "pod $name ($ip) pings its gateway and pod a" "$(vs ports 2>&1; vs neighbors 2>&1)"
    fi
    in_ns "$ns" timeout 5 "$PY" "$TOOLS" udp 10.244.1.2 9 1 0 0 1 >/dev/null 2>&1 || true
    tracked="$(vs conntrack 2>&1 | grep -c "src=$ip " || true)"
    if out="$(vs port del "$name" 2>&1)" && [[ "$out" == *"removed"* ]]; then
        ok_del=$((ok_del + 1))
        sed -n 's/.* removed in \([0-9.]*\) ms.*/del \1/p' <<<"$out" >>"$WORK/times.txt"
    else
        fail "port del $name" "$out"
        continue
    fi
    left="$( (vs mac 2>&1 | grep -ci "$mac" || true; vs neighbors 2>&1 | grep -c "^$ip " || true; vs conntrack 2>&1 | grep -c "=$ip " || true) | paste -sd' ')"
    if [[ "$left" == "0 0 0" ]] && ((tracked >= 1)) && [[ "$out" == *"flushed"*"of $ip"* ]] && ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
        ok_gone=$((ok_gone + 1))
    else
        fail "after port del $name: MAC/neighbor/conntrack entries left ($left), $tracked tracked before, TAP gone" "$out"
    fi
    ip netns del "$ns"
    # Two Service changes per pod: the stream's Service gains two endpoints and loses them again (pod b stays).
    for f in stream-3 stream-1; do
        if out="$(vs service apply -f "$WORK/$f.yaml" 2>&1)" && [[ "$out" == *"1 Service(s) changed"* ]]; then
            ok_svc=$((ok_svc + 1))
            sed -n 's/.* on the workers \([0-9.]*\) ms.*/svc \1/p' <<<"$out" >>"$WORK/times.txt"
        else
            fail "service apply $f" "$out"
        fi
    done
    if ((i == (PODS_N + 1) / 2)); then
        # Half-way: node 2 leaves node 1's overlay and comes back.
        out="$(vs peer del node-2 2>&1)" || fail "peer del node-2" "$out"
        if ! in_ns vl-a ping -c 1 -W 1 10.244.2.2 >/dev/null 2>&1 && ! vs routes 2>&1 | grep -q "10.244.2.0/24 *peer"; then
            pass "peer node-2 removed while the stream ran: its route is gone, pod c is unreachable ($out)"
        else
            fail "peer node-2 removed: route or reachability left" "$(vs routes 2>&1)"
        fi
        out="$(vs peer add node-2 --address 198.18.3.2 --pod-cidr 10.244.2.0/24 2>&1)" || fail "peer add node-2" "$out"
        if wait_for 5 in_ns vl-a ping -c 1 -W 1 10.244.2.2 && vs peers 2>&1 | grep -q "^node-2 *198.18.3.2 *10.244.2.0/24"; then
            pass "peer node-2 added again: pod c answers across the overlay ($out)"
        else
            fail "peer node-2 added again" "$(vs peers 2>&1)"
        fi
    fi
done
if pid_alive "$(bg_pid iperf)"; then pass "every change happened while the iperf3 stream ran"; else fail "the iperf3 stream ended before the last change"; fi
loop_secs=$((SECONDS - loop_start))
sleep 1
kill -INT "$(bg_pid iperf)" 2>/dev/null || true
if ((ok_add == PODS_N)); then pass "$PODS_N pods added through the CLI while the stream ran"; else fail "pods added: $ok_add of $PODS_N"; fi
if ((ok_ping == PODS_N)); then pass "every added pod pinged its gateway and its neighbour"; else fail "pods that pinged: $ok_ping of $PODS_N"; fi
if ((ok_del == PODS_N)); then pass "$PODS_N pods removed through the CLI"; else fail "pods removed: $ok_del of $PODS_N"; fi
if ((ok_svc == PODS_N * 2)); then
    pass "$((PODS_N * 2)) Service changes applied through the CLI while the stream ran through that Service"
else
    fail "Service changes applied: $ok_svc of $((PODS_N * 2))"
fi
line="$(vs services 2>&1 | grep 'default/stream' || true)"
if [[ "$line" == *" 10.244.1.3:5201* "* && "$line" != *10.244.1.98* ]]; then pass "the stream's Service is back to pod b alone"; else fail "stream Service endpoints: $line"; fi
if ((ok_gone == PODS_N)); then
    pass "every removed pod's MAC, neighbor and conntrack entries were flushed (and counted) and its TAP was gone"
else
    fail "pods whose state went with them: $ok_gone of $PODS_N"
fi

pct() { # pct KIND P: the P-th quantile (nearest rank) of the KIND times
    awk -v k="$1" '$1 == k {print $2}' "$WORK/times.txt" | sort -n |
        awk -v p="$2" '{a[NR] = $1} END {if (NR == 0) {print "-"; exit} print a[int((NR - 1) * p + 0.5) + 1]}'
}
add_med="$(pct add 0.5)" add_p99="$(pct add 0.99)" del_med="$(pct del 0.5)" del_p99="$(pct del 0.99)"
log "port add: median ${add_med} ms, p99 ${add_p99} ms; port del: median ${del_med} ms, p99 ${del_p99} ms (as the switch reports them, $PODS_N each)"
log "Service change on the workers: median $(pct svc 0.5) ms, p99 $(pct svc 0.99) ms ($((PODS_N * 2)) changes)"

json="$(vs ports -o json 2>&1 || true)"
if "$PY" -c 'import json,sys; p=json.loads(sys.argv[1]); assert sorted(x["name"] for x in p if x["role"] == "access") == ["a", "b"], p' "$json" 2>/dev/null; then
    pass "ports -o json: the API's JSON, only the config pods left"
else
    fail "ports -o json" "$json"
fi

# ---------------------------------------------------------------- the stream

bg_wait iperf 15 || true
# The stream was interrupted once the changes were done: its JSON has every 0.5 s interval; the only error allowed is
# the interrupt itself (a reset or a timeout would be the connection lost).
"$PY" - "$(bg_log iperf)" >"$WORK/stall.txt" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
iv = [i["sum"] for i in r.get("intervals", [])]
worst = run = 0.0
for s in iv:
    run = run + s["seconds"] if s["bytes"] == 0 else 0.0
    worst = max(worst, run)
secs = sum(s["seconds"] for s in iv)
gbps = sum(s["bytes"] for s in iv) * 8 / secs / 1e9 if secs else 0
err = r.get("error", "")
ok = err in ("", "interrupt - the client has terminated")
print(f"{len(iv)} {secs:.1f} {worst:.2f} {gbps:.2f} {'ok' if ok else 'lost'} {err}")
PY
read -r intervals secs stall gbps verdict err <"$WORK/stall.txt" || true
log "iperf3: $intervals intervals over ${secs:-?} s, longest stall ${stall:-?} s, ${gbps:-?} Gb/s; ${err:-no error}"
if [[ "${verdict:-}" == ok ]] && awk -v s="$stall" -v t="$secs" -v l="$loop_secs" 'BEGIN {exit !(s <= 1.0 && t >= l)}'; then
    pass "iperf3 TCP ran ${secs} s through all the changes: never stalled over 1 s (longest ${stall} s), the connection survived (${gbps} Gb/s)"
else
    fail "iperf3 through the changes: ${intervals:-?} intervals over ${secs:-?} s (changes took ${loop_secs} s), longest stall ${stall:-?} s, ${err:-}" "$(bg_log iperf)"
fi

bg_stop vswitch TERM 10
bg_stop vswitch2 TERM 10
if ! ip netns exec vl-a ip link show eth0 >/dev/null 2>&1; then pass "SIGTERM: the config pods' TAPs are gone"; else fail "SIGTERM cleanup"; fi
finish
