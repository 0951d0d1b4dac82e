#!/usr/bin/env bash
#
# Four-node overlay system test: L3 routing + VXLAN between three VSwitch
# nodes and one plain-kernel flannel-style node.
#
# Topology (all names start with vo-; pods in 10.244.0.0/16, underlay in
# 198.18.0.0/24):
#
#                       vo-ul: Linux bridge vo-br, ports p1..p4
#        +------------------+------------------+------------------+
#    ul0 198.18.0.1     ul0 198.18.0.2     ul0 198.18.0.3     ul0 198.18.0.4
#   vo-n1 (VSwitch)    vo-n2 (VSwitch)    vo-n3 (VSwitch)    vo-n4 (kernel: flannel.1 + cni0)
#   10.244.1.0/24      10.244.2.0/24      10.244.3.0/24      10.244.4.0/24
#   pods vo-n1-pa .2   vo-n2-pa .2        vo-n3-pa .2        vo-n4-pa .2   (veth on cni0)
#        vo-n1-pb .3   vo-n2-pb .3        vo-n3-pb .3        vo-n4-pb .3
#
# Each VSwitch node runs `vswitch run --config` inside its node namespace
# (ip netns exec vo-nN), with its own control socket; the pod namespaces
# exist first (as a container runtime makes them), the switch creates the
# TAPs and moves them in as eth0, owns the gateway 10.244.N.1, creates the
# host interface vsw0 and tunnels to the three other nodes over UDP 4789, VNI 1.
# Pods get MTU 1450 (underlay 1500 - 50) except vo-n1-pb and vo-n2-pb, which
# are configured with `mtu: 1500` to exercise "Frag needed" and PMTU discovery
# through the overlay.  Node 4 is built with iproute2 only, exactly like a
# flannel vxlan node (static route + neighbour + FDB entry per remote node).
#
# Checks: config accepted; switches start; pods, gateway, router MAC, host
# interface; every pod pings every other pod (8 pods, 56 pairs, including the
# kernel node <-> VSwitch interop); iperf3 TCP VSwitch<->VSwitch and
# VSwitch<->kernel; node host stack -> local and remote pods; pod -> its
# node's own address (default route to the host interface); tshark on the
# underlay decodes VXLAN (VNI 1, UDP dst 4789) with the right outer/inner
# addresses and MACs; MTU 1450 boundary; "Frag needed" mtu 1450 from the
# gateway for a 1500-MTU pod and PMTU discovery for TCP; TTL exceeded;
# Destination Net Unreachable for an unowned /24; the CLI shows peers, routes
# and learned entries; SIGTERM removes everything the switches created.
#
# Usage: tests/netns/overlay-system.sh [--kernel-reference]
#
#   --kernel-reference   nodes 1-3 are kernel flannel-style nodes too (no
#                        VSwitch): runs every check that does not need the
#                        switch against Linux itself, which validates the
#                        test's expectations and the topology.
#
# Output: one `ok - ...` / `not ok - ...` line per check, then
# `N passed, N failed`.  Exit status is non-zero if any check failed.
#
# Environment: VSWITCH=/path/to/vswitch (default: <repo>/out/vswitch/vswitch),
# NETNS_DEBUG=1 to see the cleanup commands.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$SCRIPT_DIR/lib.sh"

REFERENCE=0
case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    --kernel-reference) REFERENCE=1 ;;
    "") ;;
    *) die "unknown argument: $1 (see --help)" ;;
esac

require_root
require_cmd ip bridge ping iperf3 tshark ethtool timeout ss sysctl "$PY"

# ---------------------------------------------------------------- the cluster

NODES=(1 2 3 4)
if ((REFERENCE)); then
    VS_NODES=()
    KERNEL_NODES=(1 2 3 4)
else
    VS_NODES=(1 2 3)
    KERNEL_NODES=(4)
fi
declare -A IS_VS=()
for n in "${VS_NODES[@]}"; do IS_VS[$n]=1; done

UL_NS=vo-ul
UL_BR=vo-br
UL_IF=ul0          # underlay interface name inside each node namespace
UL_MTU=1500
VNI=1
VXLAN_PORT=4789
POD_MTU=1450       # UL_MTU - 50
CLUSTER_CIDR=10.244.0.0/16
HOST_IF=vsw0       # the switch's host interface in the node namespace
UNOWNED_IP=10.244.99.2

node_ns() { printf 'vo-n%s\n' "$1"; }
ul_ip() { printf '198.18.0.%s\n' "$1"; }
pod_cidr() { printf '10.244.%s.0/24\n' "$1"; }
gw_ip() { printf '10.244.%s.1\n' "$1"; }
# Router / VTEP MAC: 0e:00 followed by the 4 bytes of the gateway 10.244.N.1.
vtep_mac() { printf '0e:00:0a:f4:%02x:01\n' "$1"; }

# Pods: key NODE+LETTER (1a, 1b, ... 4b).
PODS=()
declare -A POD_NODE=() POD_NS=() POD_IP=() POD_MTU_OF=() POD_MAC=() POD_TAP=() POD_NAME=()
for n in "${NODES[@]}"; do
    for l in a b; do
        k="$n$l"
        PODS+=("$k")
        POD_NODE[$k]=$n
        POD_NS[$k]="vo-n$n-p$l"
        POD_NAME[$k]="n$n-p$l"
        if [[ $l == a ]]; then POD_IP[$k]="10.244.$n.2"; else POD_IP[$k]="10.244.$n.3"; fi
        POD_MAC[$k]="$(printf '02:00:0a:f4:%02x:%02x' "$n" "${POD_IP[$k]##*.}")"
        POD_TAP[$k]="vo$n-tap-$l"
        POD_MTU_OF[$k]=$POD_MTU
    done
done
# Two "big" pods, configured with MTU 1500 on VSwitch nodes 1 and 2.
BIG_SRC=1b
BIG_DST=2b
POD_MTU_OF[$BIG_SRC]=1500
POD_MTU_OF[$BIG_DST]=1500

make_workdir vo-overlay
WORK="$NETNS_WORKDIR"
BIN="$(vswitch_bin)"

sock_of() { printf '%s/n%s.sock\n' "$WORK" "$1"; }
vs() { # vs NODE SUBCOMMAND ARGS...: the switch CLI against node NODE's socket
    local n="$1"
    shift
    timeout 10 "$BIN" "$@" --socket "$(sock_of "$n")"
}

# Keep namespaces quiet: no IPv6 (router/neighbour solicitations).
ns_exists() {
    ip netns list | awk '{print $1}' | grep -qxF -- "$1"
}

# ---------------------------------------------------------------- underlay

if ((REFERENCE)); then
    log "mode: kernel reference (all four nodes are kernel flannel-style nodes; VSwitch-only checks skipped)"
else
    log "mode: VSwitch on nodes ${VS_NODES[*]}, kernel flannel-style node(s) ${KERNEL_NODES[*]}"
fi

# Leftovers would make the results meaningless: refuse to start.
for k in "${PODS[@]}"; do
    if ns_exists "${POD_NS[$k]}"; then
        die "namespace ${POD_NS[$k]} already exists (left over from an earlier run? remove it with: ip netns del ${POD_NS[$k]})"
    fi
done

underlay_bridge "$UL_BR"

for n in "${NODES[@]}"; do
    underlay_node "$n" vo "$UL_BR" "$UL_MTU"
    # Kernel nodes send complete frames: a kernel vxlan skb whose inner
    # checksum is CHECKSUM_PARTIAL keeps it unfinished across a veth into
    # another namespace, and the switch's UDP socket would hand the inner
    # frame on as is. Their bridge port takes no UDP GSO trains either (they
    # are cut and checksummed in software on the way to them). The switches'
    # underlay keeps its offloads, as a node's NIC would: their UDP GSO trains
    # reach the other switches' GRO sockets whole.
    if [[ " ${KERNEL_NODES[*]} " == *" $n "* ]]; then
        offloads_off "$UL_IF" "$(node_ns "$n")"
        offloads_off "p$n" "$UL_NS"
    fi
done

# ---------------------------------------------------------------- kernel (flannel-style) nodes

# kernel_pod K: veth pod K on its node's cni0, default route via the gateway.
kernel_pod() {
    local k="$1" n ns pns host peer
    n="${POD_NODE[$k]}"
    ns="$(node_ns "$n")"
    pns="${POD_NS[$k]}"
    host="${pns}-h"
    peer="${pns}-p"
    ns_add "$pns"
    quiet_ns "$pns"
    veth_add "$host" "$peer"
    link_to_ns "$host" "$ns"
    link_to_ns "$peer" "$pns" eth0
    in_ns "$ns" ip link set dev "$host" mtu "${POD_MTU_OF[$k]}" master cni0 up
    in_ns "$pns" ip link set dev eth0 address "${POD_MAC[$k]}" mtu "${POD_MTU_OF[$k]}" up
    in_ns "$pns" ip addr add "${POD_IP[$k]}/24" dev eth0
    in_ns "$pns" ip route add default via "$(gw_ip "$n")" dev eth0
}

# kernel_node N: what flannel's vxlan backend + the bridge CNI plugin set up.
kernel_node() {
    local n="$1" ns m
    ns="$(node_ns "$n")"
    flannel_node "$ns" "$n" "$(vtep_mac "$n")" "$VNI" "$VXLAN_PORT" "$(ul_ip "$n")" "$UL_IF" "$POD_MTU" "$(gw_ip "$n")"
    kernel_pod "${n}a"
    kernel_pod "${n}b"
    for m in "${NODES[@]}"; do
        [[ "$m" != "$n" ]] || continue
        flannel_peer "$ns" "$m" "$(pod_cidr "$m")" "$(vtep_mac "$m")" "$(ul_ip "$m")"
    done
}

for n in "${KERNEL_NODES[@]}"; do
    kernel_node "$n"
done

# ---------------------------------------------------------------- VSwitch nodes

write_config() { # write_config N FILE
    local n="$1" file="$2" m k l
    {
        printf 'node:\n'
        printf '  name: node-%s\n' "$n"
        printf '  podCIDR: %s\n' "$(pod_cidr "$n")"
        printf '  clusterCIDR: %s\n' "$CLUSTER_CIDR"
        printf 'control:\n'
        printf '  socket: %s\n' "$(sock_of "$n")"
        printf 'state:\n  directory: %s/state-%s\n' "$WORK" "$n"
        printf 'host:\n'
        printf '  interface: %s\n' "$HOST_IF"
        printf 'overlay:\n'
        printf '  localAddress: %s\n' "$(ul_ip "$n")"
        printf '  port: %s\n' "$VXLAN_PORT"
        printf '  vni: %s\n' "$VNI"
        printf '  underlayMtu: %s\n' "$UL_MTU"
        printf '  learning: true\n'
        printf '  peers:\n'
        for m in "${NODES[@]}"; do
            [[ "$m" != "$n" ]] || continue
            printf '    - name: node-%s\n' "$m"
            printf '      address: %s\n' "$(ul_ip "$m")"
            printf '      podCIDR: %s\n' "$(pod_cidr "$m")"
            # The kernel node's VTEP MAC is given explicitly; the VSwitch
            # peers' are left to the default derivation (which must agree
            # with the router MAC those switches pick for themselves).
            if [[ -z "${IS_VS[$m]:-}" ]]; then
                printf '      vtepMac: "%s"\n' "$(vtep_mac "$m")"
            fi
        done
        printf 'ports:\n'
        for l in a b; do
            k="$n$l"
            printf '  - name: pod-%s\n' "$l"
            printf '    type: tap\n'
            printf '    interface: %s\n' "${POD_TAP[$k]}"
            printf '    namespace: %s\n' "${POD_NS[$k]}"
            printf '    ifName: eth0\n'
            printf '    address: %s/24\n' "${POD_IP[$k]}"
            printf '    mac: "%s"\n' "${POD_MAC[$k]}"
            if [[ "${POD_MTU_OF[$k]}" != "$POD_MTU" ]]; then
                printf '    mtu: %s\n' "${POD_MTU_OF[$k]}"
            fi
        done
        # Nodes 1 and 2 also carry one pod of a flat L2 subnet spanning both
        # nodes (Weave sleeve style): no gateway, reachable only through
        # flood-and-learn over the overlay.
        if [[ "$n" == 1 || "$n" == 2 ]]; then
            printf '  - name: pod-l2\n'
            printf '    type: tap\n'
            printf '    interface: vo%s-tap-l\n' "$n"
            printf '    namespace: %s\n' "$(l2_ns "$n")"
            printf '    ifName: eth0\n'
            printf '    address: %s/24\n' "$(l2_ip "$n")"
            printf '    mac: "%s"\n' "$(l2_mac "$n")"
        fi
    } >"$file"
}

l2_ns() { printf 'vo-n%s-pl' "$1"; }
l2_ip() { printf '10.244.200.%s' "$1"; }
l2_mac() { printf '02:00:0a:f4:c8:%02x' "$1"; }

show_switch_log() { # show_switch_log N
    log "vswitch node-$1 log ($(bg_log "vs-n$1")):"
    indent_file "$(bg_log "vs-n$1")" 60
}

# shellcheck disable=SC2317 # only called indirectly, through wait_for
pod_addr_ok() { # pod_addr_ok K: eth0 in the pod namespace is up with its address
    local k="$1" out
    out="$(ip -n "${POD_NS[$k]}" -o addr show dev eth0 2>/dev/null)" || return 1
    [[ "$out" == *" ${POD_IP[$k]}/24 "* ]] || return 1
    ip -n "${POD_NS[$k]}" -o link show dev eth0 | grep -qE '[<,]UP[,>]'
}

declare -A VS_PID=()
start_switch() { # start_switch N: returns 1 when the switch is not up
    local n="$1" cfg pid deadline
    cfg="$WORK/node-$n.yaml"
    start_bg "vs-n$n" ip netns exec "$(node_ns "$n")" "$BIN" run --config "$cfg"
    pid="$BG_PID"
    VS_PID[$n]=$pid
    deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if vs "$n" ports >/dev/null 2>&1; then
            pass "node-$n: switch started (pid $pid, control socket answers)"
            return 0
        fi
        pid_alive "$pid" || break
        sleep 0.2
    done
    if pid_alive "$pid"; then
        fail "node-$n: switch started (control socket did not answer within 30 s)"
    else
        local rc=0
        wait "$pid" 2>/dev/null || rc=$?
        fail "node-$n: switch started (process exited with status $rc)"
    fi
    show_switch_log "$n"
    return 1
}

if ((${#VS_NODES[@]} > 0)); then
    if [[ ! -x "$BIN" ]]; then
        fail "vswitch binary present (not found or not executable: $BIN; build it or set VSWITCH)"
        finish
    fi
    for n in "${VS_NODES[@]}"; do
        write_config "$n" "$WORK/node-$n.yaml"
        # The pod namespaces exist before the switch starts, as a container
        # runtime makes them.  (createNamespace: true is not usable here: a
        # switch under `ip netns exec` has a private mount namespace, so the
        # namespaces it would create are invisible outside it; see README.)
        for l in a b; do
            ns_add "${POD_NS[$n$l]}"
            quiet_ns "${POD_NS[$n$l]}"
        done
        if [[ "$n" == 1 || "$n" == 2 ]]; then
            ns_add "$(l2_ns "$n")"
            quiet_ns "$(l2_ns "$n")"
        fi
    done
    cfg_ok=1
    for n in "${VS_NODES[@]}"; do
        out="$WORK/config-check-$n.txt"
        if timeout 20 "$BIN" config check "$WORK/node-$n.yaml" >"$out" 2>&1; then
            pass "node-$n: vswitch config check accepts the overlay config"
        else
            fail "node-$n: vswitch config check accepts the overlay config" "$out"
            indent_file "$WORK/node-$n.yaml" 80
            cfg_ok=0
        fi
    done
    ((cfg_ok)) || finish
    started=1
    for n in "${VS_NODES[@]}"; do
        start_switch "$n" || started=0
    done
    ((started)) || finish

    for n in "${VS_NODES[@]}"; do
        for l in a b; do
            k="$n$l"
            if wait_for 15 pod_addr_ok "$k"; then
                pass "${POD_NAME[$k]}: TAP moved into ${POD_NS[$k]} as eth0 with ${POD_IP[$k]}/24, up"
            else
                fail "${POD_NAME[$k]}: TAP moved into ${POD_NS[$k]} as eth0 with ${POD_IP[$k]}/24, up"
                ip -n "${POD_NS[$k]}" addr >&2 2>/dev/null || true
                continue
            fi
            quiet_ns "${POD_NS[$k]}"
            # Pods "a" keep their offloads (TSO super-frames and partial checksums
            # cross the switch, the tunnel carries them as UDP GSO/GRO trains);
            # pods "b" send complete frames: both ways are tested.
            [[ "$k" == *b ]] && offloads_off eth0 "${POD_NS[$k]}"
            mtu="$(ip -n "${POD_NS[$k]}" -o link show dev eth0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')"
            if [[ "$mtu" == "${POD_MTU_OF[$k]}" ]]; then
                pass "${POD_NAME[$k]}: eth0 MTU $mtu$([[ ${POD_MTU_OF[$k]} == "$POD_MTU" ]] && echo ' (overlay default = underlayMtu - 50)')"
            else
                fail "${POD_NAME[$k]}: eth0 MTU ${mtu:-?} (want ${POD_MTU_OF[$k]})"
            fi
            routes="$(ip -n "${POD_NS[$k]}" route show default 2>&1 || true)"
            assert_contains "${POD_NAME[$k]}: default route via the gateway $(gw_ip "$n")" \
                "$routes" "via $(gw_ip "$n") "
        done
        # Host interface: gateway address and a route for the cluster CIDR.
        ns="$(node_ns "$n")"
        if wait_for 10 ip -n "$ns" link show dev "$HOST_IF"; then
            offloads_off "$HOST_IF" "$ns"
        fi
        addrs="$(ip -n "$ns" -o addr show dev "$HOST_IF" 2>&1 || true)"
        assert_contains "node-$n: host interface $HOST_IF has $(gw_ip "$n")/24" "$addrs" " $(gw_ip "$n")/24 "
        routes="$(ip -n "$ns" route show 2>&1 || true)"
        if grep -E "^$CLUSTER_CIDR .*dev $HOST_IF( |$)" <<<"$routes" >/dev/null; then
            pass "node-$n: route $CLUSTER_CIDR dev $HOST_IF in the node namespace"
        else
            printf '%s\n' "$routes" >"$WORK/routes-$n.txt"
            fail "node-$n: route $CLUSTER_CIDR dev $HOST_IF in the node namespace" "$WORK/routes-$n.txt"
        fi
        # The overlay lives in the switch, not in a kernel VXLAN device.
        vx="$(ip -n "$ns" -o link show type vxlan 2>&1 || true)"
        if [[ -z "$vx" ]]; then
            pass "node-$n: no kernel vxlan device (the switch does the encapsulation)"
        else
            fail "node-$n: no kernel vxlan device (found: $vx)"
        fi
    done
fi

# ---------------------------------------------------------------- pod to pod

# Warm up: ARP towards the gateways (and, with learning, the first flood).
for k in "${PODS[@]}"; do
    in_ns "${POD_NS[$k]}" timeout 3 ping -c 1 -W 1 "$(gw_ip "${POD_NODE[$k]}")" >/dev/null 2>&1 || true
done

if ((${#VS_NODES[@]} > 0)); then
    # The gateway is answered with the router MAC.
    for n in "${VS_NODES[@]}"; do
        k="${n}a"
        neigh="$(ip -n "${POD_NS[$k]}" neigh show "$(gw_ip "$n")" dev eth0 2>&1 || true)"
        assert_contains "${POD_NAME[$k]}: gateway $(gw_ip "$n") resolves to the router MAC $(vtep_mac "$n")" \
            "${neigh,,}" "lladdr $(vtep_mac "$n")"
    done
fi

for s in "${PODS[@]}"; do
    for d in "${PODS[@]}"; do
        [[ "$s" != "$d" ]] || continue
        expect_ok "ping ${POD_NAME[$s]} (${POD_IP[$s]}) -> ${POD_NAME[$d]} (${POD_IP[$d]})" \
            in_ns "${POD_NS[$s]}" timeout 10 ping -c 3 -W 1 -i 0.2 "${POD_IP[$d]}"
    done
done

# Flood-and-learn: the flat-L2 pods on nodes 1 and 2 find each other by ARP
# broadcast replicated to every peer, then talk unicast to the learned peer.
if [[ -n "${IS_VS[1]:-}" && -n "${IS_VS[2]:-}" ]]; then
    expect_ok "flood-and-learn: flat-L2 pod on node-1 ($(l2_ip 1)) pings the one on node-2 ($(l2_ip 2)) across the overlay" \
        in_ns "$(l2_ns 1)" timeout 10 ping -c 3 -W 1 -i 0.2 "$(l2_ip 2)"
    fdb1="$(vs 1 peers 2>&1 || true)"
    if grep -iF -- "$(l2_mac 2)" <<<"$fdb1" | grep -iF node-2 | grep -qiF learned; then
        pass "flood-and-learn: node-1 learned $(l2_mac 2) behind node-2"
    else
        printf '%s\n' "$fdb1" >"$WORK/fdb1.txt"
        fail "flood-and-learn: node-1 learned $(l2_mac 2) behind node-2" "$WORK/fdb1.txt"
    fi
fi

# ---------------------------------------------------------------- node host stack and default route

# Nodes 1-3 are the nodes under test (VSwitch, or kernel in the reference
# mode): their own stack reaches a local pod, a pod on another node under
# test and a pod on the kernel node.
for n in 1 2 3; do
    ns="$(node_ns "$n")"
    for k in "${n}a" "$((n % 3 + 1))a" 4a; do
        expect_ok "node-$n host stack pings ${POD_NAME[$k]} (${POD_IP[$k]})" \
            in_ns "$ns" timeout 10 ping -c 3 -W 1 -i 0.2 "${POD_IP[$k]}"
    done
    k="${n}a"
    expect_ok "${POD_NAME[$k]} pings its node's underlay address $(ul_ip "$n") (default route -> host)" \
        in_ns "${POD_NS[$k]}" timeout 10 ping -c 3 -W 1 -i 0.2 "$(ul_ip "$n")"
done

# ---------------------------------------------------------------- VXLAN on the underlay (tshark)

# Capture on the bridge port of node 1 while n1-pa pings n2-pa (VSwitch <->
# VSwitch, or kernel in the reference mode) and n4-pa (the kernel node).
PCAP="$WORK/underlay-p1.pcapng"
start_bg tshark-ul timeout 30 ip netns exec "$UL_NS" \
    tshark -i p1 -f "udp port $VXLAN_PORT" -a duration:20 -w "$PCAP"
if wait_for 10 grep -q "Capturing on" "$(bg_log tshark-ul)"; then
    sleep 0.5
    in_ns "${POD_NS[1a]}" timeout 10 ping -c 3 -i 0.2 -W 1 -s 200 -p a5c3 "${POD_IP[2a]}" >/dev/null 2>&1 || true
    in_ns "${POD_NS[1a]}" timeout 10 ping -c 3 -i 0.2 -W 1 -s 200 -p a5c3 "${POD_IP[4a]}" >/dev/null 2>&1 || true
    sleep 0.5
    bg_stop tshark-ul INT 5
    FIELDS="$WORK/underlay-fields.txt"
    tshark -r "$PCAP" -d "udp.port==$VXLAN_PORT,vxlan" -o ip.check_checksum:TRUE -Y icmp \
        -T fields -E separator=/t -E occurrence=a -E aggregator=, \
        -e ip.src -e ip.dst -e udp.dstport -e vxlan.vni -e eth.src -e eth.dst -e ip.ttl \
        -e ip.checksum.status -e icmp.type -e icmp.checksum.status -e data.data \
        >"$FIELDS" 2>"$WORK/tshark-read.err" || true
    for m in 2 4; do
        verdict="$("$PY" - "$FIELDS" "$(ul_ip 1)" "$(ul_ip "$m")" "${POD_IP[1a]}" "${POD_IP[${m}a]}" \
            "$(vtep_mac 1)" "$(vtep_mac "$m")" "$VNI" "$VXLAN_PORT" <<'EOF' 2>&1 || true
import sys
path, ul1, ulm, ip1, ipm, mac1, macm, vni, port = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().splitlines() if l.strip()]
want = {  # icmp type -> (outer src, outer dst, inner src, inner dst, inner eth src, inner eth dst)
    "8": (ul1, ulm, ip1, ipm, mac1, macm),
    "0": (ulm, ul1, ipm, ip1, macm, mac1),
}
seen = {"8": 0, "0": 0}
problems = []
for r in rows:
    r += [""] * (11 - len(r))
    ipsrc, ipdst, dport, vnis, ethsrc, ethdst, ttl, ipck, icmptype, icmpck, data = r[:11]
    ipsrc, ipdst, ethsrc, ethdst, ttl, ipck = (x.split(",") for x in (ipsrc, ipdst, ethsrc, ethdst, ttl, ipck))
    if len(ipsrc) != 2 or len(ethsrc) != 2:
        continue  # not an encapsulated IPv4 packet
    t = icmptype.split(",")[0]
    exp = want.get(t)
    if exp is None or (ipsrc[1], ipdst[1]) != (exp[2], exp[3]):
        continue  # some other flow
    if "a5c3a5c3" not in data.replace(":", ""):
        continue
    seen[t] += 1
    name = "echo request" if t == "8" else "echo reply"
    if (ipsrc[0], ipdst[0]) != (exp[0], exp[1]):
        problems.append("%s: outer %s -> %s" % (name, ipsrc[0], ipdst[0]))
    if dport != port:
        problems.append("%s: udp dst port %s" % (name, dport))
    if vnis != vni:
        problems.append("%s: VNI %r" % (name, vnis))
    if (ethsrc[1].lower(), ethdst[1].lower()) != (exp[4], exp[5]):
        problems.append("%s: inner MACs %s -> %s (want %s -> %s)" % (name, ethsrc[1], ethdst[1], exp[4], exp[5]))
    if ttl[1] != "63":
        problems.append("%s: inner TTL %s (want 63: one routing hop before the tunnel)" % (name, ttl[1]))
    if any(c != "1" for c in ipck):
        problems.append("%s: ip checksum status %s" % (name, ",".join(ipck)))
    if icmpck.split(",")[0] != "1":
        problems.append("%s: icmp checksum status %s" % (name, icmpck))
if not seen["8"] or not seen["0"]:
    problems.append("captured %d echo requests, %d echo replies (want 3 each)" % (seen["8"], seen["0"]))
if problems:
    print("FAIL " + "; ".join(sorted(set(problems))))
else:
    print("OK %d requests + %d replies" % (seen["8"], seen["0"]))
EOF
)"
        desc="underlay capture: n1-pa <-> n$m-pa in VXLAN VNI $VNI, UDP dst $VXLAN_PORT, outer $(ul_ip 1)<->$(ul_ip "$m"), inner MACs $(vtep_mac 1)<->$(vtep_mac "$m"), inner TTL 63, checksums good"
        if [[ "$verdict" == OK* ]]; then
            pass "$desc (${verdict#OK })"
        else
            fail "$desc (${verdict#FAIL })" "$FIELDS"
        fi
    done
else
    fail "underlay capture: tshark did not start" "$(bg_log tshark-ul)"
    bg_stop tshark-ul
fi

# ---------------------------------------------------------------- MTU and PMTU

# ping_out FILE NS ARGS...: run ping, keep its output, never fail.
ping_out() {
    local f="$1" ns="$2"
    shift 2
    in_ns "$ns" timeout 10 ping "$@" >"$f" 2>&1 || true
}

# Default MTU 1450: a 1450-byte packet (1422 + 8 + 20) crosses the overlay in
# a 1500-byte underlay packet; 1472 does not even leave the pod.
for pair in "1a 2a" "1a 4a" "4a 1a" "3a 2a"; do
    read -r s d <<<"$pair"
    expect_ok "MTU: ${POD_NAME[$s]} -> ${POD_NAME[$d]} ping -M do -s 1422 (1450-byte packet) passes" \
        in_ns "${POD_NS[$s]}" timeout 10 ping -M "do" -s 1422 -c 3 -i 0.2 -W 1 "${POD_IP[$d]}"
done
f="$WORK/ping-1472.txt"
ping_out "$f" "${POD_NS[1a]}" -M "do" -s 1472 -c 1 -W 1 "${POD_IP[2a]}"
if grep -q "mtu=$POD_MTU" "$f" && ! grep -q "bytes from" "$f"; then
    pass "MTU: ${POD_NAME[1a]} ping -M do -s 1472 fails: $(grep -m1 -o 'message too long.*' "$f" || grep -m1 "mtu=" "$f")"
else
    fail "MTU: ${POD_NAME[1a]} ping -M do -s 1472 fails with mtu=$POD_MTU" "$f"
fi

# A pod with MTU 1500 sends a 1500-byte DF packet to a remote pod: its
# gateway must answer "Frag needed" with the overlay MTU, and the pod must
# learn that path MTU.
s=$BIG_SRC
d=$BIG_DST
gw="$(gw_ip "${POD_NODE[$s]}")"
in_ns "${POD_NS[$s]}" sysctl -qw net.ipv4.route.flush=1 || true
f="$WORK/ping-frag.txt"
ping_out "$f" "${POD_NS[$s]}" -M "do" -s 1472 -c 1 -W 2 "${POD_IP[$d]}"
if grep -qE "^From ${gw//./\\.}( |:).*Frag needed and DF set \(mtu = $POD_MTU\)" "$f"; then
    pass "PMTU: ${POD_NAME[$s]} (MTU 1500) ping -M do -s 1472 -> ${POD_NAME[$d]}: $(grep -m1 'Frag needed' "$f")"
else
    fail "PMTU: ${POD_NAME[$s]} (MTU 1500) ping -M do -s 1472 -> ${POD_NAME[$d]}: want 'From $gw ... Frag needed and DF set (mtu = $POD_MTU)'" "$f"
fi
rg="$(ip -n "${POD_NS[$s]}" route get "${POD_IP[$d]}" 2>&1 || true)"
assert_contains "PMTU: ${POD_NAME[$s]} cached path MTU $POD_MTU towards ${POD_IP[$d]} (ip route get)" "$rg" "mtu $POD_MTU"
f="$WORK/ping-frag2.txt"
ping_out "$f" "${POD_NS[$s]}" -M "do" -s 1472 -c 1 -W 1 "${POD_IP[$d]}"
assert_contains "PMTU: a second 1500-byte DF ping from ${POD_NAME[$s]} now fails locally" "$(cat "$f")" "mtu=$POD_MTU"

# ---------------------------------------------------------------- iperf3

# iperf_check CLIENT SERVER [MIN_MBPS]: TCP for 3 s, server serves one test.
iperf_check() {
    local c="$1" s="$2" min="${3:-1}" name json rc=0 verdict
    name="iperf-$c-$s"
    json="$WORK/$name.json"
    start_bg "srv-$name" timeout 25 ip netns exec "${POD_NS[$s]}" \
        iperf3 -s -1 -B "${POD_IP[$s]}" -p 5201
    if ! wait_for 5 tcp_listening "${POD_NS[$s]}" 5201; then
        fail "iperf3 TCP ${POD_NAME[$c]} -> ${POD_NAME[$s]} (server did not start)" "$(bg_log "srv-$name")"
        bg_stop "srv-$name"
        return 0
    fi
    in_ns "${POD_NS[$c]}" timeout 20 iperf3 -c "${POD_IP[$s]}" -p 5201 -t 3 -J \
        >"$json" 2>"$WORK/$name.err" || rc=$?
    bg_wait "srv-$name" 10 || bg_stop "srv-$name"
    verdict="$("$PY" - "$json" "$min" <<'EOF' 2>&1
import json, sys
path, minmbps = sys.argv[1], float(sys.argv[2])
try:
    d = json.load(open(path))
except Exception as e:
    print("FAIL no JSON from iperf3: %s" % e); sys.exit()
if "error" in d:
    print("FAIL iperf3: %s" % d["error"]); sys.exit()
end = d["end"]
mbps = end["sum_received"]["bits_per_second"] / 1e6
retr = end.get("sum_sent", {}).get("retransmits", "?")
print("%s %.0f Mbit/s received, %s retransmits" % ("OK" if mbps >= minmbps else "FAIL", mbps, retr))
EOF
)" || true
    if ((rc == 0)) && [[ "$verdict" == OK* ]]; then
        pass "iperf3 TCP ${POD_NAME[$c]} -> ${POD_NAME[$s]}: ${verdict#OK }"
    else
        fail "iperf3 TCP ${POD_NAME[$c]} -> ${POD_NAME[$s]}: ${verdict#FAIL } (client exit $rc)" "$WORK/$name.err"
    fi
}

port_metric() { # port_metric NODE PORT METRIC: a vswitch_port_<METRIC>_total value (empty if none)
    vs "$1" metrics 2>/dev/null | awk -v m="vswitch_port_${3}_total" -v p="port=\"$2\"" \
        'index($0, m "{") == 1 && index($0, p) { print $NF; exit }'
}

gso0="" gro0="" gso1="" gro1=""
((REFERENCE)) || gso0="$(port_metric 1 vxlan tx_super_frames)"
((REFERENCE)) || gro0="$(port_metric 2 vxlan rx_super_frames)"
iperf_check 1a 2a # VSwitch -> VSwitch
((REFERENCE)) || gso1="$(port_metric 1 vxlan tx_super_frames)"
((REFERENCE)) || gro1="$(port_metric 2 vxlan rx_super_frames)"
# The pods' TSO super-frames leave node 1 as UDP GSO sends and reach node 2's
# pod as super-frames again (UDP GRO train coalesced by the switch).
if ((REFERENCE)); then
    :
elif [[ "$gso0" =~ ^[0-9]+$ && "$gso1" =~ ^[0-9]+$ && "$gro0" =~ ^[0-9]+$ && "$gro1" =~ ^[0-9]+$ ]] \
    && ((gso1 > gso0 && gro1 > gro0)); then
    pass "tunnel offloads: node-1 vxlan sent $((gso1 - gso0)) UDP GSO trains, node-2 vxlan coalesced $((gro1 - gro0)) GRO trains into TCP super-frames"
else
    vs 1 metrics >"$WORK/metrics-n1.txt" 2>&1 || true
    vs 2 metrics >>"$WORK/metrics-n1.txt" 2>&1 || true
    fail "tunnel offloads: vxlan tx super-frames on node-1 ${gso0:-?} -> ${gso1:-?}, rx super-frames on node-2 ${gro0:-?} -> ${gro1:-?}" "$WORK/metrics-n1.txt"
fi
iperf_check 2a 1a # VSwitch -> VSwitch, other way
iperf_check 1a 4a # VSwitch -> kernel node
iperf_check 4b 3a # kernel node -> VSwitch

# PMTU discovery with TCP: both ends have MTU 1500 (MSS 1460), so full-size
# segments need the gateway's "Frag needed" to get through.
in_ns "${POD_NS[$BIG_SRC]}" sysctl -qw net.ipv4.route.flush=1 || true
rg="$(ip -n "${POD_NS[$BIG_SRC]}" route get "${POD_IP[$BIG_DST]}" 2>&1 || true)"
if [[ "$rg" == *"mtu $POD_MTU"* ]]; then
    fail "PMTU: route cache flushed in ${POD_NS[$BIG_SRC]} before the TCP test (still: $rg)"
fi
iperf_check "$BIG_SRC" "$BIG_DST" 10
rg="$(ip -n "${POD_NS[$BIG_SRC]}" route get "${POD_IP[$BIG_DST]}" 2>&1 || true)"
assert_contains "PMTU: the TCP flow ${POD_NAME[$BIG_SRC]} -> ${POD_NAME[$BIG_DST]} discovered path MTU $POD_MTU" "$rg" "mtu $POD_MTU"

# ---------------------------------------------------------------- ICMP errors from the gateway

s=1a
gw="$(gw_ip 1)"
f="$WORK/ping-ttl.txt"
ping_out "$f" "${POD_NS[$s]}" -t 1 -c 1 -W 2 "${POD_IP[2a]}"
if grep -qE "^From ${gw//./\\.}( |:).*Time to live exceeded" "$f"; then
    pass "TTL: ${POD_NAME[$s]} ping -t 1 ${POD_IP[2a]}: $(grep -m1 'Time to live' "$f")"
else
    fail "TTL: ${POD_NAME[$s]} ping -t 1 ${POD_IP[2a]}: want 'From $gw ... Time to live exceeded'" "$f"
fi
f="$WORK/ping-unreach.txt"
ping_out "$f" "${POD_NS[$s]}" -c 1 -W 2 "$UNOWNED_IP"
if grep -qE "^From ${gw//./\\.}( |:).*Destination Net Unreachable" "$f"; then
    pass "unowned /24: ${POD_NAME[$s]} ping $UNOWNED_IP: $(grep -m1 'Unreachable' "$f")"
else
    fail "unowned /24: ${POD_NAME[$s]} ping $UNOWNED_IP: want 'From $gw ... Destination Net Unreachable'" "$f"
fi

# ---------------------------------------------------------------- CLI

# line_has TEXT NEEDLE...: some line of TEXT contains every NEEDLE (any case).
line_has() {
    local text="$1" needle
    shift
    text="${text,,}"
    for needle in "$@"; do
        text="$(grep -F -- "${needle,,}" <<<"$text" || true)"
    done
    [[ -n "$text" ]]
}

cli_check() { # cli_check DESC OUTPUT NEEDLE...
    local desc="$1" text="$2" f
    shift 2
    if line_has "$text" "$@"; then
        pass "$desc"
    else
        f="$WORK/cli.txt"
        printf 'want one line with: %s\n--- output:\n%s\n' "$*" "$text" >"$f"
        fail "$desc" "$f"
    fi
}

for n in "${VS_NODES[@]}"; do
    # Fresh traffic from every other node towards this one.
    for m in "${NODES[@]}"; do
        [[ "$m" != "$n" ]] || continue
        in_ns "${POD_NS[${m}a]}" timeout 5 ping -c 1 -W 1 "${POD_IP[${n}a]}" >/dev/null 2>&1 || true
    done
    peers="$(vs "$n" peers 2>&1)" || fail "node-$n: vswitch peers exits 0"
    routes="$(vs "$n" routes 2>&1)" || fail "node-$n: vswitch routes exits 0"
    neigh="$(vs "$n" neighbors 2>&1)" || fail "node-$n: vswitch neighbors exits 0"
    for m in "${NODES[@]}"; do
        [[ "$m" != "$n" ]] || continue
        cli_check "node-$n: peers lists node-$m at $(ul_ip "$m") with $(pod_cidr "$m") and VTEP MAC $(vtep_mac "$m")" \
            "$peers" "node-$m" "$(ul_ip "$m")" "$(pod_cidr "$m")" "$(vtep_mac "$m")"
        cli_check "node-$n: overlay forwarding entry $(vtep_mac "$m") -> node-$m $(ul_ip "$m")" \
            "$(grep -iv "$(pod_cidr "$m")" <<<"$peers" || true)" "$(vtep_mac "$m")" "node-$m" "$(ul_ip "$m")"
        cli_check "node-$n: routes sends $(pod_cidr "$m") to peer node-$m ($(ul_ip "$m"))" \
            "$routes" "$(pod_cidr "$m")" "peer" "node-$m" "$(ul_ip "$m")"
    done
    # The neighbor (ARP) table learned both local pods.
    for l in a b; do
        k="$n$l"
        cli_check "node-$n: neighbors has ${POD_IP[$k]} at ${POD_MAC[$k]} on pod-$l" \
            "$(grep -vi incomplete <<<"$neigh" || true)" "${POD_IP[$k]} " "${POD_MAC[$k]}" "pod-$l"
    done
    cli_check "node-$n: routes has the local $(pod_cidr "$n") (connected)" "$routes" "$(pod_cidr "$n")" "connected"
    cli_check "node-$n: routes has $UNOWNED_IP's cluster CIDR $CLUSTER_CIDR as unreachable" "$routes" "$CLUSTER_CIDR" "unreachable"
    cli_check "node-$n: routes has the default route to the host" "$routes" "0.0.0.0/0" "host"
    counters="$(vs "$n" counters 2>&1 || true)"
    for stage in ip4-route vxlan-encap vxlan-decap; do
        cli_check "node-$n: counters show stage $stage" "$counters" "$stage"
    done
done

if ((${#VS_NODES[@]} > 0)); then
    expect_ok "node-1: trace add 5" vs 1 trace add 5
    in_ns "${POD_NS[1a]}" timeout 5 ping -c 1 -W 1 "${POD_IP[4a]}" >/dev/null 2>&1 || true
    trace_out="$(vs 1 trace show 2>&1 || true)"
    assert_contains "node-1: trace of a ping to node-4 shows ip4-route" "$trace_out" "ip4-route"
    assert_contains "node-1: trace of a ping to node-4 shows vxlan-encap" "$trace_out" "vxlan-encap"
fi

# ---------------------------------------------------------------- shutdown

for n in "${VS_NODES[@]}"; do
    kill -TERM "${VS_PID[$n]}" 2>/dev/null || true
done
for n in "${VS_NODES[@]}"; do
    rc=0
    bg_wait "vs-n$n" 10 || rc=$?
    if ((rc == 124)); then
        fail "node-$n: switch exits within 10 s of SIGTERM"
        show_switch_log "$n"
        bg_stop "vs-n$n" KILL 2
    else
        pass "node-$n: switch exits within 10 s of SIGTERM (status $rc)"
    fi
done
for n in "${VS_NODES[@]}"; do
    ns="$(node_ns "$n")"
    links="$(ip -n "$ns" -o link show 2>&1 | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | tr '\n' ' ')"
    if [[ "$links" == "lo $UL_IF " ]]; then
        pass "node-$n: only lo and $UL_IF left in $ns (host interface and TAPs removed)"
    else
        fail "node-$n: only lo and $UL_IF left in $ns (found: $links)"
    fi
    routes="$(ip -n "$ns" route show 2>&1 || true)"
    if [[ "$routes" != *"10.244."* ]]; then
        pass "node-$n: no 10.244.0.0/16 routes left in $ns"
    else
        fail "node-$n: no 10.244.0.0/16 routes left in $ns (found: ${routes//$'\n'/; })"
    fi
    for l in a b; do
        expect_ok "${POD_NAME[$n$l]}: namespace ${POD_NS[$n$l]} (not created by the switch) left in place" ns_exists "${POD_NS[$n$l]}"
        expect_fail "${POD_NAME[$n$l]}: TAP gone from ${POD_NS[$n$l]} (no eth0)" ip -n "${POD_NS[$n$l]}" link show dev eth0
    done
    expect_fail "node-$n: control socket $(sock_of "$n") removed" test -e "$(sock_of "$n")"
done

finish
