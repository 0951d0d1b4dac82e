#!/usr/bin/env bash
#
# Services system test: conntrack and kube-proxy-style Service NAT through two
# VSwitch nodes joined by the VXLAN overlay, with real servers and clients.
#
# Topology (names start with vs-; pods 10.244.0.0/16, Services 10.96.0.0/12,
# underlay 198.18.0.0/24):
#
#                 vs-ul: Linux bridge vs-br
#          +-----------------------------+
#     ul0 198.18.0.1                ul0 198.18.0.2
#    vs-n1 (VSwitch, node-1)       vs-n2 (VSwitch, node-2)
#    pods  vs-n1-c   10.244.1.2    pods  vs-n2-c   10.244.2.2   (clients)
#          vs-n1-e1  10.244.1.3          vs-n2-e3  10.244.2.3   (endpoints)
#          vs-n1-e2  10.244.1.4
#    outside: vs-out 198.18.0.100 on the same underlay bridge, outside the
#    cluster: an external client of node ports and external IPs, and the
#    server pods' egress reaches (each node's uplink is ul0).
#
# Every endpoint runs tests/netns/svc-tools.py serve: TCP 8080 and UDP 5353,
# answering with its own name and the peer address it saw.  Both switches
# read the same Service/EndpointSlice manifests (services.manifests), which
# the test rewrites while traffic flows.
#
# Checks: ClusterIP TCP and UDP from a pod on the same node and on the other
# node (named targetPort, two ports in one Service); the node itself reaches a
# ClusterIP through its host interface; 300 connections spread over 3
# endpoints within a chi-square bound; ClientIP affinity sticks, then expires;
# hairpin (an endpoint reaching its own Service sees the gateway as peer); a
# Service without endpoints refuses at once (TCP: connection refused; UDP:
# ICMP port unreachable); an address in the Service CIDR no Service owns is
# refused; internalTrafficPolicy Local; removing the endpoint a UDP stream
# uses moves the stream to a remaining one at once (stale conntrack evicted);
# a broken manifest edit is reported and the running Services stay; the CLI
# lists connections (conntrack), Services, and traces the DNAT decision.
# Through the uplink: a NodePort from the outside client (externalTrafficPolicy
# Cluster: SNATed, any endpoint; Local: client IP kept, local endpoints only,
# none on the node = dropped); an external IP; egress from pods to the outside
# host masqueraded to the node address (TCP, UDP, ping), and the node's
# kernel never sees the steered packets.
#
# Usage: tests/netns/services-system.sh
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
require_cmd ip ping timeout ss sysctl awk nft nstat "$PY"

TOOLS="$SCRIPT_DIR/svc-tools.py"
UL_NS=vs-ul
OUT_NS=vs-out
OUT_IP=198.18.0.100
EXT_IP=198.18.1.10
UL_IF=ul0
HOST_IF=vsw0
make_workdir vs-services
WORK="$NETNS_WORKDIR"
BIN="$(vswitch_bin)"
MANIFESTS="$WORK/manifests"
mkdir -p "$MANIFESTS"

node_ns() { printf 'vs-n%s\n' "$1"; }
ul_ip() { printf '198.18.0.%s\n' "$1"; }
sock_of() { printf '%s/n%s.sock\n' "$WORK" "$1"; }
vs() { # vs NODE SUBCOMMAND ARGS...
    local n="$1"
    shift
    timeout 10 "$BIN" "$@" --socket "$(sock_of "$n")"
}
# Pods: key -> node, namespace, address, MAC.
PODS=(n1-c n1-e1 n1-e2 n2-c n2-e3)
declare -A POD_NODE=([n1-c]=1 [n1-e1]=1 [n1-e2]=1 [n2-c]=2 [n2-e3]=2)
declare -A POD_IP=([n1-c]=10.244.1.2 [n1-e1]=10.244.1.3 [n1-e2]=10.244.1.4 [n2-c]=10.244.2.2 [n2-e3]=10.244.2.3)
pod_ns() { printf 'vs-%s\n' "$1"; }

# ---------------------------------------------------------------- manifests

# write_manifests STREAM_ENDPOINTS...: the Services; the "stream" Service gets the given endpoints.
write_manifests() {
    cat >"$MANIFESTS/services.yaml" <<'EOF'
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    type: ClusterIP
    clusterIP: 10.96.0.10
    clusterIPs: [10.96.0.10]
    selector: {app: web}
    ports:
    - {name: http, protocol: TCP, port: 80, targetPort: http}
    - {name: dns, protocol: UDP, port: 53, targetPort: 5353}
- apiVersion: v1
  kind: Service
  metadata: {name: sticky, namespace: default}
  spec:
    clusterIP: 10.96.0.20
    ports: [{name: http, port: 80, targetPort: 8080}]
    sessionAffinity: ClientIP
    sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}
- apiVersion: v1
  kind: Service
  metadata: {name: empty, namespace: default}
  spec:
    clusterIP: 10.96.0.30
    ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, protocol: UDP, port: 53, targetPort: 5353}]
- apiVersion: v1
  kind: Service
  metadata: {name: self, namespace: default}
  spec:
    clusterIP: 10.96.0.40
    ports: [{name: http, port: 80, targetPort: 8080}]
- apiVersion: v1
  kind: Service
  metadata: {name: stream, namespace: default}
  spec:
    clusterIP: 10.96.0.50
    ports: [{name: dns, protocol: UDP, port: 53, targetPort: 5353}]
- apiVersion: v1
  kind: Service
  metadata: {name: local-only, namespace: default}
  spec:
    clusterIP: 10.96.0.60
    internalTrafficPolicy: Local
    ports: [{name: http, port: 80, targetPort: 8080}]
- apiVersion: v1
  kind: Service
  metadata: {name: np, namespace: default}
  spec:
    type: NodePort
    clusterIP: 10.96.0.70
    externalTrafficPolicy: Cluster
    externalIPs: [198.18.1.10]
    ports:
    - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
    - {name: dns, protocol: UDP, port: 53, targetPort: 5353, nodePort: 30053}
- apiVersion: v1
  kind: Service
  metadata: {name: np-local, namespace: default}
  spec:
    type: NodePort
    clusterIP: 10.96.0.80
    externalTrafficPolicy: Local
    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30081}]
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
        printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: stream-1\n  namespace: default\n  labels: {kubernetes.io/service-name: stream}\naddressType: IPv4\n'
        printf 'ports:\n- {name: dns, protocol: UDP, port: 5353}\nendpoints:\n'
        endpoints_yaml "$@"
        printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: local-only-1\n  namespace: default\n  labels: {kubernetes.io/service-name: local-only}\naddressType: IPv4\n'
        printf 'ports:\n- {name: http, protocol: TCP, port: 8080}\nendpoints:\n'
        endpoints_yaml n2-e3
        printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: np-1\n  namespace: default\n  labels: {kubernetes.io/service-name: np}\naddressType: IPv4\n'
        printf 'ports:\n- {name: http, protocol: TCP, port: 8080}\n- {name: dns, protocol: UDP, port: 5353}\nendpoints:\n'
        endpoints_yaml n1-e1 n2-e3
        printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: np-local-1\n  namespace: default\n  labels: {kubernetes.io/service-name: np-local}\naddressType: IPv4\n'
        printf 'ports:\n- {name: http, protocol: TCP, port: 8080}\nendpoints:\n'
        endpoints_yaml n1-e1
    } >"$MANIFESTS/endpointslices.yaml.tmp"
    mv "$MANIFESTS/endpointslices.yaml.tmp" "$MANIFESTS/endpointslices.yaml"
}

write_config() { # write_config N FILE
    local n="$1" file="$2"
    {
        printf 'node:\n  name: node-%s\n  podCIDR: 10.244.%s.0/24\n  clusterCIDR: 10.244.0.0/16\n' "$n" "$n"
        printf 'control:\n  socket: %s\n' "$(sock_of "$n")"
        printf 'state:\n  directory: %s/state-%s\n' "$WORK" "$n"
        printf 'host:\n  interface: %s\n' "$HOST_IF"
        printf 'uplink:\n  interface: %s\n  tap: vsw-up\n' "$UL_IF"
        printf 'services:\n  manifests: %s\n  serviceCIDR: 10.96.0.0/12\n  reloadSeconds: 0.2\n' "$MANIFESTS"
        printf 'overlay:\n  localAddress: %s\n  peers:\n' "$(ul_ip "$n")"
        overlay_peers_yaml "$n" 1 2
        printf 'ports:\n'
        tap_ports_yaml "$n" vs
    } >"$file"
}

# ---------------------------------------------------------------- topology

for k in "${PODS[@]}"; do
    if ip netns list | awk '{print $1}' | grep -qxF -- "$(pod_ns "$k")"; then
        die "namespace $(pod_ns "$k") already exists (left over from an earlier run? remove it with: ip netns del $(pod_ns "$k"))"
    fi
done
underlay_bridge vs-br
for n in 1 2; do
    underlay_node "$n" vs vs-br
    offloads_off "$UL_IF" "$(node_ns "$n")"
    offloads_off "p$n" "$UL_NS"
done
ns_add "$OUT_NS"
quiet_ns "$OUT_NS"
veth_add vs-out-b vs-out-n
link_to_ns vs-out-b "$UL_NS" pout
link_to_ns vs-out-n "$OUT_NS" eth0
in_ns "$UL_NS" ip link set pout master vs-br up
in_ns "$OUT_NS" ip link set eth0 up
in_ns "$OUT_NS" ip addr add "$OUT_IP/24" dev eth0
# The external IP is routed to node-1, as a router in front of the cluster would.
in_ns "$OUT_NS" ip route add "$EXT_IP/32" via "$(ul_ip 1)"
offloads_off eth0 "$OUT_NS"
offloads_off pout "$UL_NS"
for k in "${PODS[@]}"; do
    ns_add "$(pod_ns "$k")"
    quiet_ns "$(pod_ns "$k")"
done

write_manifests n1-e1 n1-e2
for n in 1 2; do
    cfg="$WORK/node-$n.yaml"
    write_config "$n" "$cfg"
    expect_ok "node-$n config is valid" "$BIN" config check "$cfg"
    start_bg "vs-n$n" ip netns exec "$(node_ns "$n")" "$BIN" run --config "$cfg"
done
for n in 1 2; do
    if wait_for 20 vs "$n" status; then
        pass "node-$n switch is up with its Services"
    else
        fail "node-$n switch is up with its Services" "$(bg_log "vs-n$n")"
        die "switch did not start"
    fi
done
for k in "${PODS[@]}"; do
    wait_for 10 ip -n "$(pod_ns "$k")" -4 addr show dev eth0 || die "pod $k has no address"
    in_ns "$(pod_ns "$k")" ethtool -K eth0 tx off >/dev/null 2>&1 || true
done

for k in n1-e1 n1-e2 n2-e3; do
    start_bg "srv-$k" timeout 300 ip netns exec "$(pod_ns "$k")" "$PY" "$TOOLS" serve "$k" 8080 5353 290
    wait_for 5 tcp_listening "$(pod_ns "$k")" 8080 || die "server in $k did not start"
done
start_bg srv-out timeout 300 ip netns exec "$OUT_NS" "$PY" "$TOOLS" serve outside 8080 5353 290
wait_for 5 tcp_listening "$OUT_NS" 8080 || die "server in $OUT_NS did not start"

# tcp_from POD HOST PORT COUNT [TIMEOUT]: run the TCP client in POD; output in $OUT.
tcp_from() {
    local pod="$1" host="$2" port="$3" count="$4" to="${5:-2}"
    OUT="$(in_ns "$(pod_ns "$pod")" timeout 120 "$PY" "$TOOLS" tcp "$host" "$port" "$count" "$to" 2>&1 || true)"
}
udp_from() { # udp_from POD HOST PORT COUNT INTERVAL [SPORT] [TIMEOUT]
    local pod="$1"
    shift
    OUT="$(in_ns "$(pod_ns "$pod")" timeout 120 "$PY" "$TOOLS" udp "$@" 2>&1 || true)"
}
# save_out: write $OUT to a file for a failure report; print its path.
save_out() {
    local f
    f="$(mktemp "$WORK/out.XXXXXX")"
    printf '%s\n' "$OUT" >"$f"
    printf '%s\n' "$f"
}
# served_by: the distinct server names in $OUT.
served_by() { awk '$1 !~ /^ERR/ {print $1}' <<<"$OUT" | sort -u | tr '\n' ' '; }

# ---------------------------------------------------------------- ClusterIP

vs 1 services >"$WORK/services.txt" 2>&1 || true
assert_contains "CLI lists the web Service's ClusterIP frontend" "$(cat "$WORK/services.txt")" "10.96.0.10:80/TCP"
assert_contains "named targetPort resolved to the slice's port 8080" "$(cat "$WORK/services.txt")" "10.244.1.3:8080"
assert_contains "Service without endpoints shown as refused" "$(cat "$WORK/services.txt")" "(none: refused)"

tcp_from n1-c 10.96.0.10 80 30
ok_count="$(grep -c '^n.-e. 10.244.1.2:' <<<"$OUT" || true)"
if [[ "$ok_count" == 30 ]]; then pass "ClusterIP TCP from a pod on the same node: 30/30 answered, client IP preserved"; else fail "ClusterIP TCP from a pod on the same node ($ok_count/30)" "$(save_out)"; fi
tcp_from n2-c 10.96.0.10 80 30
ok_count="$(grep -c '^n.-e. 10.244.2.2:' <<<"$OUT" || true)"
if [[ "$ok_count" == 30 ]]; then pass "ClusterIP TCP from a pod on the other node: 30/30 answered, client IP preserved"; else fail "ClusterIP TCP from a pod on the other node ($ok_count/30)" "$(save_out)"; fi
assert_contains "connections from node-2 reach endpoints on node-1 across the overlay" "$(served_by)" "n1-e"

udp_from n1-c 10.96.0.10 53 20 0.01
ok_count="$(grep -c ' n.-e. 10.244.1.2:' <<<"$OUT" || true)"
if [[ "$ok_count" == 20 ]]; then pass "ClusterIP UDP (second port of the Service) from the same node: 20/20"; else fail "ClusterIP UDP from the same node ($ok_count/20)" "$(save_out)"; fi
udp_from n2-c 10.96.0.10 53 20 0.01
ok_count="$(grep -c ' n.-e. 10.244.2.2:' <<<"$OUT" || true)"
if [[ "$ok_count" == 20 ]]; then pass "ClusterIP UDP from the other node: 20/20"; else fail "ClusterIP UDP from the other node ($ok_count/20)" "$(save_out)"; fi

OUT="$(in_ns "$(node_ns 1)" timeout 20 "$PY" "$TOOLS" tcp 10.96.0.10 80 5 2>&1 || true)"
ok_count="$(grep -c '^n.-e. 10.244.1.1:' <<<"$OUT" || true)"
if [[ "$ok_count" == 5 ]]; then pass "the node reaches a ClusterIP through its host interface (source: the gateway)"; else fail "node -> ClusterIP ($ok_count/5)" "$(save_out)"; fi

# ---------------------------------------------------------------- distribution

tcp_from n1-c 10.96.0.10 80 300
chi="$(awk '$1 !~ /^ERR/ {c[$1]++; n++} END {
    e = n / 3; x = 0; for (k in c) x += (c[k] - e) ^ 2 / e; k = 0; for (s in c) k++;
    printf "%d %d %.2f %s %s %s\n", n, k, x, c["n1-e1"], c["n1-e2"], c["n2-e3"] }' <<<"$OUT")"
read -r total kinds chi2 c1 c2 c3 <<<"$chi"
log "300 connections: n1-e1=$c1 n1-e2=$c2 n2-e3=$c3, chi-square $chi2 (2 d.f.)"
if [[ "$total" == 300 && "$kinds" == 3 ]] && awk -v x="$chi2" 'BEGIN {exit !(x < 13.82)}'; then
    pass "300 connections spread over 3 endpoints (chi-square $chi2 < 13.82, p > 0.001)"
else
    fail "300 connections spread over 3 endpoints (total $total, endpoints $kinds, chi-square $chi2)" "$(save_out)"
fi

# ---------------------------------------------------------------- affinity

tcp_from n1-c 10.96.0.20 80 20
if [[ "$(served_by | wc -w)" == 1 && "$(grep -c '^n' <<<"$OUT")" == 20 ]]; then
    pass "ClientIP affinity: 20 connections all go to $(served_by)"
else
    fail "ClientIP affinity: 20 connections went to: $(served_by)" "$(save_out)"
fi
seen=""
for _ in 1 2 3 4 5 6 7 8; do
    sleep 2.3
    tcp_from n1-c 10.96.0.20 80 1
    seen+=" $(served_by)"
done
distinct="$(tr ' ' '\n' <<<"$seen" | grep . | sort -u | wc -l)"
if ((distinct >= 2)); then
    pass "ClientIP affinity expires after timeoutSeconds (2 s): 8 later connections reached $distinct endpoints"
else
    fail "ClientIP affinity expires (8 connections 2.3 s apart all reached:$seen)"
fi

# ---------------------------------------------------------------- hairpin, refusal, policies

tcp_from n1-e1 10.96.0.40 80 3
if [[ "$(grep -c '^n1-e1 10.244.1.1:' <<<"$OUT")" == 3 ]]; then
    pass "hairpin: an endpoint reaching its own Service is answered by itself, masqueraded to the gateway"
else
    fail "hairpin" "$(save_out)"
fi

tcp_from n1-c 10.96.0.30 80 1 3
if [[ "$OUT" =~ ^ERR\ ConnectionRefusedError\ 0\.[0-4] ]]; then
    pass "Service without endpoints: TCP connection refused at once ($OUT)"
else
    fail "Service without endpoints: TCP connection refused at once (got: $OUT)"
fi
udp_from n1-c 10.96.0.30 53 1 0 0 2
if [[ "$OUT" == *"ERR ConnectionRefusedError"* ]]; then
    pass "Service without endpoints: UDP gets ICMP port unreachable (connection refused)"
else
    fail "Service without endpoints: UDP refused (got: $OUT)"
fi
tcp_from n1-c 10.96.7.7 80 1 3
if [[ "$OUT" =~ ^ERR\ ConnectionRefusedError ]]; then
    pass "an unowned Service CIDR address is refused, not routed away"
else
    fail "unowned Service CIDR address refused (got: $OUT)"
fi

tcp_from n2-c 10.96.0.60 80 5
if [[ "$(grep -c '^n2-e3 ' <<<"$OUT")" == 5 ]]; then pass "internalTrafficPolicy Local: a client on the endpoint's node is served"; else fail "internalTrafficPolicy Local, same node" "$(save_out)"; fi
tcp_from n1-c 10.96.0.60 80 1 1
if [[ "$OUT" == ERR* ]]; then pass "internalTrafficPolicy Local: no local endpoint on node-1, connection dropped ($OUT)"; else fail "internalTrafficPolicy Local, other node (got: $OUT)"; fi

# ---------------------------------------------------------------- uplink: node ports, external IPs, egress

out_tcp() { # out_tcp HOST PORT COUNT [TIMEOUT]: TCP client in the outside namespace
    OUT="$(in_ns "$OUT_NS" timeout 120 "$PY" "$TOOLS" tcp "$@" 2>&1 || true)"
}
n1_tcp_in() { in_ns "$(node_ns 1)" nstat -asz TcpInSegs | awk '$1 == "TcpInSegs" {print $2}'; }

segs_before="$(n1_tcp_in)"
out_tcp "$(ul_ip 1)" 30080 20
segs_after="$(n1_tcp_in)"
ok_count="$(grep -c '^n.-e. 10.244.1.1:' <<<"$OUT" || true)"
if [[ "$ok_count" == 20 ]]; then
    pass "NodePort (ETP Cluster) from the outside client: 20/20 answered, client SNATed to node-1's gateway (endpoints: $(served_by))"
else
    fail "NodePort from outside, ETP Cluster ($ok_count/20 answered via the gateway)" "$(save_out)"
fi
assert_contains "NodePort (ETP Cluster) reaches the endpoint on the other node too" "$(served_by)" "n2-e3"
if [[ -n "$segs_before" && "$segs_before" == "$segs_after" ]]; then
    pass "the node's kernel saw none of the node-port segments (TcpInSegs unchanged)"
else
    fail "node-1 kernel TcpInSegs moved from $segs_before to $segs_after during the NodePort test"
fi
OUT="$(in_ns "$OUT_NS" timeout 60 "$PY" "$TOOLS" udp "$(ul_ip 2)" 30053 10 0.01 2>&1 || true)"
ok_count="$(grep -c ' n.-e. 10.244.2.1:' <<<"$OUT" || true)"
if [[ "$ok_count" == 10 ]]; then pass "UDP NodePort on node-2 from outside: 10/10, SNATed to node-2's gateway"; else fail "UDP NodePort on node-2 from outside ($ok_count/10)" "$(save_out)"; fi

out_tcp "$(ul_ip 1)" 30081 10
if [[ "$(grep -c "^n1-e1 $OUT_IP:" <<<"$OUT")" == 10 ]]; then
    pass "NodePort with externalTrafficPolicy Local: served by the node's own endpoint, the client address $OUT_IP preserved"
else
    fail "NodePort ETP Local on node-1 (client address preserved)" "$(save_out)"
fi
out_tcp "$(ul_ip 2)" 30081 1 1
if [[ "$OUT" == ERR* ]]; then pass "NodePort ETP Local on a node without a local endpoint: dropped ($OUT)"; else fail "NodePort ETP Local without local endpoint (got: $OUT)"; fi
out_tcp "$(ul_ip 1)" 30099 1 2
if [[ "$OUT" =~ ^ERR\ ConnectionRefusedError ]]; then
    pass "a node port no Service uses stays the kernel's (connection refused by node-1's stack)"
else
    fail "unused node port refused by the kernel (got: $OUT)"
fi

out_tcp "$EXT_IP" 80 10
if [[ "$(grep -c '^n.-e. 10.244.1.1:' <<<"$OUT")" == 10 ]]; then pass "externalIP from outside: 10/10 answered (ETP Cluster, SNATed)"; else fail "externalIP from outside" "$(save_out)"; fi

tcp_from n1-c "$OUT_IP" 8080 10
if [[ "$(grep -c "^outside $(ul_ip 1):" <<<"$OUT")" == 10 ]]; then
    pass "egress TCP from a pod to the outside host: 10/10, source masqueraded to the node address $(ul_ip 1)"
else
    fail "egress TCP masqueraded to the node address" "$(save_out)"
fi
port="$(awk -F'[: ]' '$1 == "outside" {print $3; exit}' <<<"$OUT")"
if [[ -n "$port" ]] && ((port >= 61440 && port <= 65535)); then pass "masqueraded source port $port is in 61440-65535"; else fail "masquerade source port ($port)" "$(save_out)"; fi
udp_from n2-c "$OUT_IP" 5353 10 0.01
if [[ "$(grep -c " outside $(ul_ip 2):" <<<"$OUT")" == 10 ]]; then
    pass "egress UDP from a pod on node-2: 10/10, masqueraded to $(ul_ip 2)"
else
    fail "egress UDP masqueraded" "$(save_out)"
fi
if in_ns "$(pod_ns n1-c)" ping -c 3 -i 0.2 -W 2 "$OUT_IP" >/dev/null 2>&1; then pass "ping from a pod to the outside host (ICMP echo masqueraded)"; else fail "ping from a pod to the outside host"; fi
tcp_from n1-c "$OUT_IP" 9 1 2
if [[ "$OUT" =~ ^ERR\ ConnectionRefusedError ]]; then
    pass "egress to a closed outside port: the outside host's RST comes back through the masquerade"
else
    fail "egress RST through masquerade (got: $OUT)"
fi
udp_from n1-c "$OUT_IP" 9 1 0 0 2
if [[ "$OUT" == *"ERR ConnectionRefusedError"* ]]; then
    pass "egress UDP to a closed outside port: the ICMP port unreachable is translated back to the pod"
else
    fail "egress ICMP error through masquerade (got: $OUT)"
fi
tcp_from n1-c "$(ul_ip 1)" 22 1 2
if [[ "$OUT" =~ ^ERR\ ConnectionRefusedError ]]; then pass "a pod reaches its node's own address (the node's stack answers; not masqueraded)"; else fail "pod -> node address (got: $OUT)"; fi
up="$(vs 1 uplink 2>&1 || true)"
assert_contains "CLI shows the uplink's steering rules" "$up" "fwd to"
assert_contains "CLI shows the steered node ports" "$up" "30080"

# ---------------------------------------------------------------- CLI: conntrack, trace

vs 1 trace add 20 >/dev/null
tcp_from n1-c 10.96.0.10 80 1
sleep 0.3
trace="$(vs 1 trace show 20 2>&1 || true)"
assert_contains "trace shows the Service decision" "$trace" "Service default/web:http ClusterIP 10.96.0.10:80/TCP: DNAT to endpoint"
assert_contains "trace names the rule that picked the endpoint" "$trace" "by random of 3"
udp_from n1-c 10.96.0.10 53 1 0 40053
ct="$(vs 1 conntrack 2>&1 || true)"
assert_contains "conntrack lists the UDP flow with its DNAT" "$ct" "src=10.244.1.2 dst=10.96.0.10 sport=40053 dport=53"
assert_contains "conntrack shows the Service of a DNATed flow" "$ct" "service=default/web:dns"
assert_contains "conntrack shows TCP states" "$ct" "TIME_WAIT"

# ---------------------------------------------------------------- live endpoint removal

# A UDP client streams to the "stream" Service from one socket (one conntrack entry);
# half-way the endpoint it uses is removed from the manifest.
start_bg udp-stream ip netns exec "$(pod_ns n1-c)" timeout 30 "$PY" "$TOOLS" udp 10.96.0.50 53 200 0.02 40100 0.5
wait_for 5 grep -q ' n1-e' "$(bg_log udp-stream)" || true
first="$(awk '$2 ~ /^n1-e/ {print $2; exit}' "$(bg_log udp-stream)")"
sleep 1
if [[ "$first" == n1-e1 ]]; then keep=n1-e2; else keep=n1-e1; fi
change_at="$(awk '{print $1}' /proc/uptime)"
write_manifests "$keep"
bg_wait udp-stream 30 || true
awk -v gone="$first" -v keep="$keep" '
    $2 == gone {last_gone = $1; before++} $2 == keep {if (!first_keep) first_keep = $1; after++}
    $2 == "ERR" {err++}
    END {printf "%s %d %s %d %s %d\n", last_gone, before, first_keep, after, (err ? err : 0), NR}' "$(bg_log udp-stream)" >"$WORK/stream.txt"
read -r last_gone before first_keep after errs total <"$WORK/stream.txt"
log "stream: $before answers from $first (removed), then $after from $keep; $errs unanswered of $total"
if [[ -n "$first" ]] && ((before > 10 && after > 50)) && awk -v a="$last_gone" -v b="$first_keep" 'BEGIN {exit !(a < b)}'; then
    pass "removing the endpoint a UDP stream uses: the next datagrams go to the remaining endpoint, none to the removed one ($errs lost)"
else
    fail "UDP stream moved to the remaining endpoint (first=$first before=$before after=$after)" "$(bg_log udp-stream)"
fi
_=$change_at
ct="$(vs 1 status 2>&1; vs 1 conntrack 2>&1 || true)"
assert_contains "conntrack counts the evicted connection" "$ct" "evicted by endpoint changes"

# ---------------------------------------------------------------- bad manifests keep the Services

cp "$MANIFESTS/services.yaml" "$WORK/services.good"
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec:\n  clusterIP: 10.96.0.99\n  ports: [{port: 70000}]\n' >"$MANIFESTS/zz-broken.yaml"
sleep 1
reload="$(vs 1 reload 2>&1 || true)"
assert_contains "a broken manifest is reported with its file and field" "$reload" "zz-broken.yaml"
tcp_from n1-c 10.96.0.10 80 5
if [[ "$(grep -c '^n' <<<"$OUT")" == 5 ]]; then pass "after a broken manifest edit the running Services stay in force"; else fail "Services kept after a broken edit" "$(save_out)"; fi
rm -f "$MANIFESTS/zz-broken.yaml"

# ---------------------------------------------------------------- shutdown

bg_stop vs-n1 TERM 10
left="$(ip -n "$(node_ns 1)" -o link show 2>/dev/null | grep -c -e "$HOST_IF" -e vsw-up || true)"
if [[ "$left" == 0 ]]; then pass "SIGTERM: the switch removed its interfaces"; else fail "SIGTERM cleanup ($left left)"; fi
tables="$(in_ns "$(node_ns 1)" nft list tables 2>&1 || true)"
if [[ "$tables" != *vswitch* ]]; then pass "SIGTERM: the steering tables are gone"; else fail "SIGTERM: steering tables left: $tables"; fi
# A switch that dies without cleaning up must not leave the node black-holing its node ports:
# the kernel drops the tables with their owner.
bg_stop vs-n2 KILL 10
tables="$(in_ns "$(node_ns 2)" nft list tables 2>&1 || true)"
out_tcp "$(ul_ip 2)" 30080 1 2
if [[ "$tables" != *vswitch* && "$OUT" =~ ^ERR\ ConnectionRefusedError ]]; then
    pass "SIGKILL: the kernel removed the steering tables with their owner; node-2's node port is the kernel's again (refused, not black-holed)"
else
    fail "SIGKILL: tables [$tables], node port answer [$OUT]"
fi

finish
