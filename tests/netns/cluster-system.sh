#!/usr/bin/env bash
#
# Cluster system test: VSwitch nodes that lease their pod subnet and find their overlay peers in a three-member etcd
# cluster (TLS for clients and peers, flannel's store layout under the prefix /vswitch), next to a plain-Linux
# flannel-style node, and that apply the Kubernetes Services stored there.
#
# Topology (names start with vc-; pods 10.244.0.0/16, Services 10.96.0.0/12, underlay and etcd 198.18.0.0/24):
#
#                               vc-ul: Linux bridge vc-br
#     +--------+--------+--------+---------+---------+---------+---------+---------+
#   vc-e1    vc-e2    vc-e3    vc-n1     vc-n2     vc-n3     vc-n4     vc-n9
#   .11      .12      .13      .1        .2        .3        .4        .9
#   etcd     etcd     etcd     VSwitch   VSwitch   VSwitch   VSwitch   kernel node: flannel.1 (VNI 1, UDP 4789,
#   (data dirs on a tmpfs      each leases a /24 of 10.244.0.0/16;    VTEP MAC 0e:00:0a:f4:c8:01) + cni0,
#    in the work dir)          pods vc-nN-pa (.2), vc-nN-pb (.3)      10.244.200.0/24, pods vc-n9-pa, vc-n9-pb
#
# The script makes a CA, one server/peer certificate per member (subjectAltName IP:198.18.0.1X, DNS:localhost) and
# one client certificate (used by the switches and by etcdctl) with openssl. It writes flannel's network config
# (/vswitch/network/config) and the kernel node's subnet lease (/vswitch/network/subnets/10.244.200.0-24, on an
# etcd lease of 3600 s) itself, and programs the kernel node from the other nodes' leases as flanneld would
# (kernel_sync: a route via 10.244.M.0 onlink, a permanent neighbour and an FDB entry per lease; new leases added,
# gone ones removed), after each membership change. The switches' configs have no pod CIDR and no peers: each
# leases its subnet (TTL 8 s) and watches the store for its peers and for Services.
#
# Checks, in order:
#  1. the etcd cluster is healthy over TLS (and refuses clients without a certificate);
#  2. network config and the kernel node's lease written; the kernel node is up with its pods;
#  3. three switches start; each is ready with a distinct leased subnet within 15 s and lists the two others and
#     the kernel node as peers; the kernel node is synced;
#  4. every pod pings every pod on another node, both ways, kernel node included;
#  5. a fourth switch joins: its own subnet, reached by every other node and reaching them (the time from its lease
#     appearing in the store to a node-1 pod's first answered ping is printed);
#  6. node 2 is SIGKILLed: within TTL + 5 s its lease is gone from etcd and its peer and route from the others;
#  7. a Service (10.96.0.50: 8080/TCP, 5353/UDP) applied on node 1, with endpoints on nodes 3 and 4, answers from
#     every live node (time from the apply to the first answer printed); removing the node-4 endpoint stops new
#     connections to it on every node, moves a long-lived UDP flow pinned to it to the other endpoint, and leaves
#     no live connection DNATed to it in any node's conntrack;
#  8. one etcd member killed: nothing changes; a second: every node reports degraded (cluster state, status,
#     /readyz 503, vswitch_cluster_ready 0) within 15 s and pods still ping; node 1 restarted then starts from its
#     saved state (same subnet, peers, the Service) and its pods keep reaching the others; a member restarted: every
#     node ready again within 20 s, and a second Service applied then reaches every node (and goes when deleted);
#     the last member restarted: all three healthy, every node ready;
#  9. SIGTERM stops every switch; the script then tears everything down and checks that no vc- namespace, process
#     or mount is left.
#
# Usage: tests/netns/cluster-system.sh [--store-only]
#
#   --store-only   no VSwitch: the PKI, the TLS etcd cluster and its health, the network config, the kernel node
#                  and its lease, a second kernel node vc-n8 (10.244.201.0/24, its lease written the same way) and
#                  a fake lease never kept alive (a crashed node), kernel_sync between them (pods ping across; the
#                  expired lease's route goes), members killed and restarted (the store keeps answering with one
#                  down, stops without quorum, comes back with its data), and the teardown check.
#
# Output: `ok - ...` / `not ok - ...` per check, then `N passed, N failed`. Exit status non-zero if any failed.
# Needs: root, iproute2, ping, etcd and etcdctl (3.4), openssl, curl, python3; ethtool if present.
# Environment: VSWITCH=/path/to/vswitch (default <repo>/out/vswitch/vswitch), NETNS_DEBUG=1 to see the cleanup.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$SCRIPT_DIR/lib.sh"

STORE_ONLY=0
case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    --store-only) STORE_ONLY=1 ;;
    "") ;;
    *) die "unknown argument: $1 (see --help)" ;;
esac
(($# <= 1)) || die "too many arguments (see --help)"

require_root
require_cmd ip bridge ping timeout mount umount awk sort comm etcd etcdctl openssl curl "$PY"

# ---------------------------------------------------------------- the cluster

PREFIX=/vswitch
CLUSTER_CIDR=10.244.0.0/16
NET_CONFIG='{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":4789}}'
VNI=1
VXLAN_PORT=4789
POD_MTU=1450
LEASE_TTL=8
UL_NS=vc-ul
UL_BR=vc-br
UL_IF=ul0 # underlay interface name inside each node and member namespace
TOOLS="$SCRIPT_DIR/svc-tools.py"
MEMBERS=(1 2 3)
ENDPOINTS="https://198.18.0.11:2379,https://198.18.0.12:2379,https://198.18.0.13:2379"
INITIAL_CLUSTER="e1=https://198.18.0.11:2380,e2=https://198.18.0.12:2380,e3=https://198.18.0.13:2380"
SVC_IP=10.96.0.50
SVC2_IP=10.96.0.60
SVC_PORT=8080
UDP_PORT=5353

if ((STORE_ONLY)); then
    VS_NODES=()
    KERNEL_NODES=(9 8)
else
    VS_NODES=(1 2 3 4)
    KERNEL_NODES=(9)
fi
# The kernel nodes' subnets: 10.244.KOCT.0/24, VTEP MAC 0e:00 + the gateway 10.244.KOCT.1.
declare -A KOCT=([9]=200 [8]=201)
# A lease with no node behind it and no keepalive (--store-only): a crashed node.
PHANTOM_CIDR=10.244.77.0/24
PHANTOM_IP=198.18.0.77
PHANTOM_MAC=0e:00:0a:f4:4d:01
PHANTOM_TTL=4

node_ns() { printf 'vc-%s\n' "$1"; } # node_ns n1 | e1 (a node or an etcd member)
ul_ip() {                            # ul_ip n1 -> 198.18.0.1, e1 -> 198.18.0.11
    case "$1" in
        e*) printf '198.18.0.1%s\n' "${1#e}" ;;
        *) printf '198.18.0.%s\n' "${1#n}" ;;
    esac
}
kernel_cidr() { printf '10.244.%s.0/24\n' "${KOCT[$1]}"; }
kernel_mac() { printf '0e:00:0a:f4:%02x:01\n' "${KOCT[$1]}"; }
pod_ns() { printf 'vc-n%s-p%s\n' "${1%?}" "${1: -1}"; } # pod key 1a -> vc-n1-pa
lease_key() { printf '%s/network/subnets/%s-%s\n' "$PREFIX" "${1%/*}" "${1#*/}"; }
lease_value() { # lease_value PUBLIC_IP VTEP_MAC: flannel's lease value for a vxlan node
    printf '{"PublicIP":"%s","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":%s,"VtepMAC":"%s"}}\n' \
        "$1" "$VNI" "$2"
}

# Pods: key NODE+LETTER (1a, 1b, ... 9a, 9b). A switch's pods get .2 and .3 of the subnet it leases (known once it
# has leased it); a kernel node's are fixed.
PODS=()
declare -A POD_NODE=() POD_IP=()
for n in "${VS_NODES[@]}" "${KERNEL_NODES[@]}"; do
    for l in a b; do
        PODS+=("$n$l")
        POD_NODE[$n$l]=$n
    done
done
for n in "${KERNEL_NODES[@]}"; do
    POD_IP[${n}a]="10.244.${KOCT[$n]}.2"
    POD_IP[${n}b]="10.244.${KOCT[$n]}.3"
done
pod_label() { printf '%s (%s)' "$(pod_ns "$1")" "${POD_IP[$1]:-?}"; }

# Leftovers would make the results meaningless: refuse to start.
existing=" $(ip netns list | awk '{print $1}' | tr '\n' ' ') "
planned=("$UL_NS")
for k in "${MEMBERS[@]}"; do planned+=("$(node_ns "e$k")"); done
for n in "${VS_NODES[@]}" "${KERNEL_NODES[@]}"; do planned+=("$(node_ns "n$n")"); done
for k in "${PODS[@]}"; do planned+=("$(pod_ns "$k")"); done
for ns in "${planned[@]}"; do
    if [[ "$existing" == *" $ns "* ]]; then
        die "namespace $ns already exists (left over from an earlier run? remove it with: ip netns del $ns)"
    fi
done

make_workdir vc-cluster
WORK="$NETNS_WORKDIR"
# Everything registered from here on is torn down by the script itself at the end (then checked); the EXIT trap
# removes the work dir last, and unwinds everything on any early exit.
SCOPE="$(cleanup_scope_begin)"
BIN="$(vswitch_bin)"
PKI="$WORK/pki"
DATA="$WORK/etcd-data"
VC="$WORK/vc.py"

if ((STORE_ONLY)); then
    log "mode: store only (etcd cluster, kernel nodes vc-n9 and vc-n8, no VSwitch)"
elif [[ ! -x "$BIN" ]]; then
    fail "vswitch binary present (not found or not executable: $BIN; build it or set VSWITCH)"
    finish
else
    log "mode: VSwitch nodes ${VS_NODES[*]} (vswitch: $BIN), kernel node ${KERNEL_NODES[*]}"
fi

# ---------------------------------------------------------------- helpers

cat >"$VC" <<'EOF'
#!/usr/bin/python3
"""Helpers of cluster-system.sh. JSON modes read the document on stdin and never fail (missing -> empty)."""
import base64
import glob
import json
import os
import socket
import sys
import time


def ci(d, *names):
    """d[name], any case, or None."""
    if not isinstance(d, dict):
        return None
    low = {k.lower(): v for k, v in d.items()}
    for n in names:
        v = low.get(n.lower())
        if v is not None:
            return v
    return None


def doc():
    text = sys.stdin.read()
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def items(d, key):
    """A list, or the list under key."""
    if isinstance(d, list):
        return d
    v = ci(d, key)
    return v if isinstance(v, list) else []


def main(a):
    cmd = a[1]
    if cmd == "get":  # get PATH: a field (a.b.c); empty when missing or null
        d = doc()
        for p in a[2].split("."):
            d = ci(d, p)
        if d is None:
            print("")
        elif isinstance(d, bool):
            print("true" if d else "false")
        elif isinstance(d, (dict, list)):
            print(json.dumps(d))
        else:
            print(d)
    elif cmd == "leases":  # etcdctl get -w json of the subnets: CIDR PUBLIC_IP VTEP_MAC LEASE_HEX TYPE VNI
        d = doc() or {}
        for kv in d.get("kvs") or []:
            key = base64.b64decode(kv.get("key", "")).decode(errors="replace")
            name = key.rsplit("/", 1)[-1]
            if name.count("-") != 1:
                continue
            try:
                v = json.loads(base64.b64decode(kv.get("value", "")).decode())
            except ValueError:
                v = {}
            if not isinstance(v, dict):
                v = {}
            bd = v.get("BackendData") or {}
            print(name.replace("-", "/"), v.get("PublicIP") or "-", str(bd.get("VtepMAC") or "-").lower(),
                  "%016x" % int(kv.get("lease", 0)), v.get("BackendType") or "-", bd.get("VNI", "-"))
    elif cmd == "peers":  # vswitch peers -o json: POD_CIDR ADDRESS VTEP_MAC NAME
        for p in items(doc(), "peers"):
            print(ci(p, "podCIDR") or "-", ci(p, "address") or "-", str(ci(p, "vtepMac") or "-").lower(),
                  ci(p, "name") or "-")
    elif cmd == "routes":  # vswitch routes -o json: PREFIX KIND VIA
        for r in items(doc(), "routes"):
            print(ci(r, "prefix") or "-", ci(r, "kind") or "-", ci(r, "via") or "-")
    elif cmd == "ct-to":  # ct-to ADDR, conntrack -o json: the live connections DNATed to ADDR (UDP, or TCP open)
        for c in items(doc(), "connections"):
            dn = ci(c, "dnat") or {}
            if ci(dn, "address") != a[2]:
                continue
            proto = str(ci(c, "protocol") or "").lower()
            state = str(ci(c, "state") or "").upper()
            if proto == "tcp" and "ESTABLISHED" not in state and "SYN" not in state:
                continue
            o = ci(c, "original") or {}
            print(proto, "%s:%s -> %s:%s" % (ci(o, "src"), ci(o, "sport"), ci(o, "dst"), ci(o, "dport")),
                  "dnat %s:%s" % (a[2], ci(dn, "port")), state or "-")
    elif cmd == "first-answer":  # first-answer HOST PORT SECONDS: TCP connections 0.05 s apart until one is answered
        host, port, limit = a[2], int(a[3]), float(a[4])
        stop = time.monotonic() + limit
        tries, last = 0, "-"
        while time.monotonic() < stop:
            tries += 1
            try:
                with socket.create_connection((host, port), timeout=0.5) as s:
                    s.settimeout(0.5)
                    data = s.recv(256).decode(errors="replace").strip()
                if data:
                    # Wall-clock microseconds, for the script's $EPOCHREALTIME.
                    print("%d %d %s" % (int(time.time() * 1e6), tries, data), flush=True)
                    return 0
                last = "empty-answer"
            except OSError as e:
                last = type(e).__name__
            time.sleep(0.05)
        print("TIMEOUT %d %s" % (tries, last), flush=True)
        return 1
    elif cmd == "procs":  # the PIDs whose command line has $VC_WORK (not this one)
        w = os.environ.get("VC_WORK", "").encode()
        found = []
        for p in glob.glob("/proc/[0-9]*/cmdline"):
            pid = int(p.split("/")[2])
            if not w or pid == os.getpid():
                continue
            try:
                with open(p, "rb") as f:
                    if w in f.read():
                        found.append(str(pid))
            except OSError:
                pass
        print(" ".join(found))
    else:
        print("unknown mode " + cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
EOF

vc_get() { "$PY" "$VC" get "$1"; } # vc_get PATH: a field of the JSON on stdin

# Time: $EPOCHREALTIME as integer microseconds.
mark() { printf '%s\n' "${EPOCHREALTIME/./}"; }
fmt_us() { # fmt_us MICROSECONDS: seconds with two decimals
    local us="$1"
    ((us >= 0)) || us=0
    printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000))
}
since() { fmt_us $((${EPOCHREALTIME/./} - $1)); } # since T0: seconds since T0 (from mark)
before_deadline() { ((${EPOCHREALTIME/./} - $1 < $2 * 1000000)); } # before_deadline T0 SECS

# ectl ARGS...: etcdctl (v3 API, the client certificate) from the kernel node, against all three members.
ectl() {
    in_ns "$(node_ns n9)" timeout 15 env ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" \
        --cacert="$PKI/ca.crt" --cert="$PKI/client.crt" --key="$PKI/client.key" \
        --dial-timeout=2s --command-timeout="${ECTL_TIMEOUT:-5s}" "$@"
}
healthy_count() { # healthy_count: how many members etcdctl endpoint health finds healthy
    local out
    out="$(ectl endpoint health 2>&1)" || true
    grep -c ' is healthy' <<<"$out" || true
}
# shellcheck disable=SC2317 # only called indirectly, through wait_for
all_healthy() { [[ "$(healthy_count)" == 3 ]]; }
lease_table() { # lease_table: one line per subnet lease: CIDR PUBLIC_IP VTEP_MAC LEASE_HEX TYPE VNI
    local js
    js="$(ectl get --prefix "$PREFIX/network/subnets/" -w json 2>/dev/null)" || return 1
    "$PY" "$VC" leases <<<"$js"
}
lease_cidrs() { lease_table | awk '{print $1}'; }
store_writable() { ECTL_TIMEOUT=2s ectl put "$PREFIX/probe" "$(mark)" >/dev/null 2>&1; }
# shellcheck disable=SC2317 # only called indirectly, through wait_for
store_refuses() { ! store_writable; }

# put_lease CIDR PUBLIC_IP VTEP_MAC TTL: a flannel subnet lease attached to a new etcd lease of TTL seconds, as
# flanneld writes it; sets PUT_LEASE_ID (hex).
put_lease() {
    local out
    PUT_LEASE_ID=""
    out="$(ectl lease grant "$4" 2>&1)" || {
        log "lease grant $4: $out"
        return 1
    }
    PUT_LEASE_ID="$(awk '$1 == "lease" && $3 == "granted" {print $2; exit}' <<<"$out")"
    if [[ -z "$PUT_LEASE_ID" ]]; then
        log "lease grant $4: $out"
        return 1
    fi
    ectl put --lease="$PUT_LEASE_ID" "$(lease_key "$1")" "$(lease_value "$2" "$3")" >/dev/null
}

# kernel_sync [N]: make kernel node N (default 9) match the leases in the store, as flanneld's vxlan backend does:
# for every other lease 10.244.M.0-24 a route via 10.244.M.0 onlink on flannel.1, a permanent neighbour
# 10.244.M.0 -> its VtepMAC and an FDB entry VtepMAC -> its PublicIP; routes, neighbours and FDB entries of leases
# that are gone are removed. Returns 1 when the store cannot be read or a change failed.
kernel_sync() {
    local n="${1:-9}" ns own js leases cidr ip mac gw rc=0 added=0 removed=0 fdb
    local -A want=() want_fdb=()
    ns="$(node_ns "n$n")"
    own="$(kernel_cidr "$n")"
    js="$(ectl get --prefix "$PREFIX/network/subnets/" -w json 2>&1)" || {
        log "kernel_sync vc-n$n: cannot read the leases: $js"
        return 1
    }
    leases="$("$PY" "$VC" leases <<<"$js")"
    while read -r cidr ip mac _; do
        [[ -n "$cidr" && "$cidr" != "$own" ]] || continue
        if [[ ! "$cidr" =~ ^10\.244\.[0-9]+\.0/24$ || ! "$ip" =~ ^[0-9.]+$ || ! "$mac" =~ ^[0-9a-f:]{17}$ ]]; then
            log "kernel_sync vc-n$n: skipping lease $cidr (PublicIP $ip, VtepMAC $mac)"
            continue
        fi
        want[$cidr]=1
        want_fdb["$mac $ip"]=1
        gw="${cidr%/*}"
        if [[ -z "$(ip -n "$ns" route show "$cidr" dev flannel.1 2>/dev/null)" ]]; then
            added=$((added + 1))
        fi
        in_ns "$ns" ip route replace "$cidr" via "$gw" dev flannel.1 onlink || rc=1
        in_ns "$ns" ip neigh replace "$gw" lladdr "$mac" dev flannel.1 nud permanent || rc=1
        in_ns "$ns" bridge fdb replace "$mac" dev flannel.1 dst "$ip" || rc=1
    done <<<"$leases"
    while read -r cidr _; do
        [[ "$cidr" == */* && -z "${want[$cidr]:-}" ]] || continue
        in_ns "$ns" ip route del "$cidr" dev flannel.1 || rc=1
        in_ns "$ns" ip neigh del "${cidr%/*}" dev flannel.1 2>/dev/null || true
        removed=$((removed + 1))
    done < <(ip -n "$ns" route show dev flannel.1)
    fdb="$(in_ns "$ns" bridge fdb show dev flannel.1 | awk '$2 == "dst" {print tolower($1), $3}')"
    while read -r mac ip; do
        [[ -n "$mac" && -z "${want_fdb["$mac $ip"]:-}" ]] || continue
        in_ns "$ns" bridge fdb del "$mac" dev flannel.1 dst "$ip" || rc=1
    done <<<"$fdb"
    log "kernel_sync vc-n$n: ${#want[@]} peer subnet(s): $added added, $removed removed"
    return "$rc"
}

# kernel_has N CIDR MAC IP: kernel node N routes CIDR to the VTEP MAC at IP (route, neighbour, FDB entry).
kernel_has() {
    local ns gw out
    ns="$(node_ns "n$1")"
    gw="${2%/*}"
    out="$(ip -n "$ns" route show "$2" dev flannel.1 2>&1)"
    [[ "$out" == *"via $gw "*onlink* ]] || return 1
    out="$(ip -n "$ns" neigh show "$gw" dev flannel.1 2>&1)"
    [[ "${out,,}" == *"lladdr $3 permanent"* ]] || return 1
    out="$(in_ns "$ns" bridge fdb show dev flannel.1 2>&1)"
    grep -qi "^$3 dst $4 " <<<"$out"
}
# kernel_lacks N CIDR: kernel node N has no route and no neighbour for CIDR any more.
kernel_lacks() {
    local ns
    ns="$(node_ns "n$1")"
    [[ -z "$(ip -n "$ns" route show "$2" dev flannel.1 2>/dev/null)" ]] &&
        [[ -z "$(ip -n "$ns" neigh show "${2%/*}" dev flannel.1 2>/dev/null)" ]]
}
kernel_state() { # kernel_state N: flannel.1's routes, neighbours and FDB entries (for failure reports)
    local ns f="$WORK/kernel-state.txt"
    ns="$(node_ns "n$1")"
    {
        ip -n "$ns" route show dev flannel.1
        ip -n "$ns" neigh show dev flannel.1
        in_ns "$ns" bridge fdb show dev flannel.1
    } >"$f" 2>&1 || true
    printf '%s\n' "$f"
}

# ping_worker SRC DST...: ping each DST pod from pod SRC, up to 3 times (ping -c 1 -W 2) until one is answered;
# prints "ok SRC DST TRIES" or "fail SRC DST".
# shellcheck disable=SC2317 # only called indirectly, through start_bg
ping_worker() {
    local s="$1" d i
    shift
    for d in "$@"; do
        for i in 1 2 3; do
            if in_ns "$(pod_ns "$s")" timeout 5 ping -c 1 -W 2 "${POD_IP[$d]}" >/dev/null 2>&1; then
                printf 'ok %s %s %s\n' "$s" "$d" "$i"
                continue 2
            fi
        done
        printf 'fail %s %s\n' "$s" "$d"
    done
}

# ping_matrix each|all DESC PAIR...: PAIR is SRC:DST (pod keys). One ping worker per source pod, all in parallel.
# each: one check per pair; all: one check for the lot.
PM_RUN=0
ping_matrix() {
    local mode="$1" desc="$2" p s d res s2 tries okc=0 failed="" name
    local -a list
    local -A dests=() result=()
    shift 2
    PM_RUN=$((PM_RUN + 1))
    for p in "$@"; do
        dests[${p%%:*}]+=" ${p#*:}"
    done
    for s in "${!dests[@]}"; do
        read -ra list <<<"${dests[$s]}"
        start_bg "ping-$PM_RUN-$s" ping_worker "$s" "${list[@]}"
    done
    for s in "${!dests[@]}"; do
        name="ping-$PM_RUN-$s"
        bg_wait "$name" 90 || bg_stop "$name" KILL 1
        while read -r res s2 d tries; do
            if [[ -n "${d:-}" ]]; then result["$s2:$d"]="$res ${tries:-}"; fi
        done <"$(bg_log "$name")"
    done
    for p in "$@"; do
        res="${result[$p]:-none}"
        s="${p%%:*}"
        d="${p#*:}"
        if [[ "$res" == ok* ]]; then
            okc=$((okc + 1))
            if [[ "$mode" == each ]]; then
                tries="${res#ok }"
                pass "$desc: ping $(pod_label "$s") -> $(pod_label "$d")$([[ "$tries" == 1 ]] || echo " (try $tries)")"
            fi
        else
            failed+=" $s->$d"
            if [[ "$mode" == each ]]; then
                fail "$desc: ping $(pod_label "$s") -> $(pod_label "$d") (no answer in 3 tries)"
            fi
        fi
    done
    if [[ "$mode" == all ]]; then
        if [[ -z "$failed" ]]; then
            pass "$desc: all $# pod pairs answer (ping, both ways)"
        else
            fail "$desc: $okc of $# pod pairs answer; no answer:$failed"
        fi
    fi
    return 0
}

# cross_pairs "SRC_NODES" "DST_NODES" [LETTERS]: SRC:DST for every pair of pods on different nodes (pods whose
# letter is in LETTERS, default both).
cross_pairs() {
    local s d letters="${3:-ab}"
    for s in "${PODS[@]}"; do
        [[ " $1 " == *" ${POD_NODE[$s]} "* && "$letters" == *"${s: -1}"* ]] || continue
        for d in "${PODS[@]}"; do
            [[ " $2 " == *" ${POD_NODE[$d]} "* && "$letters" == *"${d: -1}"* ]] || continue
            [[ "${POD_NODE[$s]}" != "${POD_NODE[$d]}" ]] || continue
            printf '%s:%s\n' "$s" "$d"
        done
    done
}

# ---------------------------------------------------------------- underlay, members, nodes

underlay_bridge "$UL_BR"
for k in "${MEMBERS[@]}"; do
    underlay_node "e$k" vc "$UL_BR"
done
for n in "${KERNEL_NODES[@]}" "${VS_NODES[@]}"; do
    underlay_node "n$n" vc "$UL_BR"
done
for k in "${PODS[@]}"; do
    ns_add "$(pod_ns "$k")"
    quiet_ns "$(pod_ns "$k")"
done
# Kernel nodes send complete frames (see overlay-system.sh): no offloads on their underlay port.
for n in "${KERNEL_NODES[@]}"; do
    if command -v ethtool >/dev/null 2>&1; then
        offloads_off "$UL_IF" "$(node_ns "n$n")"
        offloads_off "pn$n" "$UL_NS"
    else
        log "ethtool not installed: vc-n$n's underlay keeps its offloads (pings do not need them off)"
    fi
done

# etcd's data dirs live on a tmpfs in the work dir (unmounted at the end, after the members are stopped).
# shellcheck disable=SC2317 # only called indirectly, by the cleanup stack
unmount_data() {
    umount "$DATA" 2>/dev/null || umount -l "$DATA"
}
mkdir -p "$DATA"
mount -t tmpfs -o size=1g,mode=0700 vc-etcd-data "$DATA"
cleanup unmount_data

# ---------------------------------------------------------------- PKI

# pki_leaf NAME CN EXTENSION...: an EC P-256 key and a certificate signed by the CA.
pki_leaf() {
    local name="$1" cn="$2" ext="$PKI/$1.ext"
    shift 2
    {
        printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n'
        printf '%s\n' "$@"
    } >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "/CN=$cn" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -CAserial "$PKI/ca.srl" -days 2 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    chmod 600 "$PKI/$name.key"
}
make_pki() {
    local k
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -sha256 \
        -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -subj "/CN=vc-cluster-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    for k in "${MEMBERS[@]}"; do
        pki_leaf "e$k" "e$k" "extendedKeyUsage=serverAuth,clientAuth" \
            "subjectAltName=IP:$(ul_ip "e$k"),DNS:localhost"
    done
    pki_leaf client vswitch "extendedKeyUsage=clientAuth"
}
pki_out="$WORK/pki.txt"
if make_pki >"$pki_out" 2>&1 &&
    openssl verify -CAfile "$PKI/ca.crt" "$PKI/e1.crt" "$PKI/e2.crt" "$PKI/e3.crt" "$PKI/client.crt" >>"$pki_out" 2>&1 &&
    openssl x509 -in "$PKI/e2.crt" -noout -ext subjectAltName >>"$pki_out" 2>&1 &&
    grep -q 'IP Address:198.18.0.12, DNS:localhost' "$pki_out"; then
    pass "pki: CA, member certificates (IP:198.18.0.1X, DNS:localhost) and the client certificate, verified with openssl"
else
    fail "pki: CA and certificates made with openssl" "$pki_out"
    finish
fi

# ---------------------------------------------------------------- 1. etcd over TLS

declare -A MEMBER_BG=()
# start_member K TAG: member eK in vc-eK, data in $DATA/eK (kept across restarts), TLS for clients and peers.
start_member() {
    local k="$1" ip
    ip="$(ul_ip "e$k")"
    MEMBER_BG[$k]="etcd-e$k-$2"
    start_bg "${MEMBER_BG[$k]}" ip netns exec "$(node_ns "e$k")" etcd --name "e$k" --data-dir "$DATA/e$k" \
        --listen-client-urls "https://$ip:2379" --advertise-client-urls "https://$ip:2379" \
        --listen-peer-urls "https://$ip:2380" --initial-advertise-peer-urls "https://$ip:2380" \
        --initial-cluster "$INITIAL_CLUSTER" --initial-cluster-state new --initial-cluster-token vc-etcd \
        --client-cert-auth --trusted-ca-file "$PKI/ca.crt" --cert-file "$PKI/e$k.crt" --key-file "$PKI/e$k.key" \
        --peer-client-cert-auth --peer-trusted-ca-file "$PKI/ca.crt" \
        --peer-cert-file "$PKI/e$k.crt" --peer-key-file "$PKI/e$k.key" \
        --logger zap --log-outputs stderr
}
stop_member() { bg_stop "${MEMBER_BG[$1]}" KILL 5; } # stop_member K: a crash (SIGKILL)
member_logs() {                                      # member_logs: the members' logs, for a failure report
    local k f="$WORK/members.txt"
    for k in "${MEMBERS[@]}"; do
        printf -- '--- e%s\n' "$k"
        tail -n 8 "$(bg_log "${MEMBER_BG[$k]}")" 2>/dev/null || true
    done >"$f"
    printf '%s\n' "$f"
}

T0="$(mark)"
for k in "${MEMBERS[@]}"; do
    start_member "$k" first
done
if wait_for 30 all_healthy; then
    pass "etcd: e1, e2, e3 healthy over TLS $(since "$T0") s after start (etcdctl endpoint health, client certificate)"
else
    ectl endpoint health >"$WORK/health.txt" 2>&1 || true
    cat "$(member_logs)" >>"$WORK/health.txt"
    fail "etcd: the three members healthy over TLS within 30 s" "$WORK/health.txt"
    finish
fi
tls_out="$WORK/tls.txt"
e1_url="https://$(ul_ip e1):2379/version"
if ! in_ns "$(node_ns n9)" curl -sS -f -m 5 --cacert "$PKI/ca.crt" "$e1_url" >"$tls_out" 2>&1 &&
    ! in_ns "$(node_ns n9)" curl -sS -f -m 5 "http://$(ul_ip e1):2379/version" >>"$tls_out" 2>&1 &&
    in_ns "$(node_ns n9)" curl -sS -f -m 5 --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" \
        "$e1_url" >>"$tls_out" 2>&1 && grep -q etcdserver "$tls_out"; then
    pass "etcd: clients need TLS and a certificate from the CA (no certificate: refused; plain HTTP: refused)"
else
    fail "etcd: clients need TLS and a certificate from the CA" "$tls_out"
fi

# ---------------------------------------------------------------- 2. network config, the kernel node

if ectl put "$PREFIX/network/config" "$NET_CONFIG" >/dev/null 2>&1 &&
    [[ "$(ectl get "$PREFIX/network/config" --print-value-only 2>/dev/null)" == "$NET_CONFIG" ]]; then
    pass "store: network config written to $PREFIX/network/config ($NET_CONFIG)"
else
    fail "store: network config written to $PREFIX/network/config"
fi

# kernel_pod KEY: a veth pod on its kernel node's cni0, default route via the gateway (the bridge CNI plugin).
kernel_pod() {
    local k="$1" n ns pns mac
    n="${POD_NODE[$k]}"
    ns="$(node_ns "n$n")"
    pns="$(pod_ns "$k")"
    mac="$(printf '02:00:0a:f4:%02x:%02x' "${KOCT[$n]}" "${POD_IP[$k]##*.}")"
    veth_add "$pns-h" "$pns-p"
    link_to_ns "$pns-h" "$ns"
    link_to_ns "$pns-p" "$pns" eth0
    in_ns "$ns" ip link set dev "$pns-h" mtu "$POD_MTU" master cni0 up
    in_ns "$pns" ip link set dev eth0 address "$mac" mtu "$POD_MTU" up
    in_ns "$pns" ip addr add "${POD_IP[$k]}/24" dev eth0
    in_ns "$pns" ip route add default via "10.244.${KOCT[$n]}.1" dev eth0
}

declare -A KLEASE=()
for n in "${KERNEL_NODES[@]}"; do
    cidr="$(kernel_cidr "$n")"
    if put_lease "$cidr" "$(ul_ip "n$n")" "$(kernel_mac "$n")" 3600 &&
        ttl="$(ectl lease timetolive "$PUT_LEASE_ID" --keys 2>&1)" &&
        [[ "$ttl" == *"TTL(3600s)"*"$(lease_key "$cidr")"* ]] &&
        [[ "$(ectl get "$(lease_key "$cidr")" --print-value-only 2>/dev/null)" == "$(lease_value "$(ul_ip "n$n")" "$(kernel_mac "$n")")" ]]; then
        KLEASE[$n]="$PUT_LEASE_ID"
        pass "store: kernel node vc-n$n's lease $(lease_key "$cidr") written (PublicIP $(ul_ip "n$n"), VtepMAC $(kernel_mac "$n"); etcd lease $PUT_LEASE_ID, TTL 3600 s)"
    else
        fail "store: kernel node vc-n$n's lease $(lease_key "$cidr") written on an etcd lease of 3600 s (${ttl:-no lease})"
    fi
    flannel_node "$(node_ns "n$n")" "${KOCT[$n]}" "$(kernel_mac "$n")" "$VNI" "$VXLAN_PORT" "$(ul_ip "n$n")" \
        "$UL_IF" "$POD_MTU" "10.244.${KOCT[$n]}.1"
    kernel_pod "${n}a"
    kernel_pod "${n}b"
    dev="$(ip -n "$(node_ns "n$n")" -d link show flannel.1 2>&1 || true)"
    if [[ "$dev" == *"link/ether $(kernel_mac "$n") "* && "$dev" == *"vxlan id $VNI "*"dstport $VXLAN_PORT "* ]] &&
        in_ns "$(pod_ns "${n}a")" timeout 10 ping -c 1 -W 2 "10.244.${KOCT[$n]}.1" >/dev/null 2>&1 &&
        in_ns "$(pod_ns "${n}a")" timeout 10 ping -c 1 -W 2 "${POD_IP[${n}b]}" >/dev/null 2>&1; then
        pass "kernel node vc-n$n up: flannel.1 (VNI $VNI, UDP $VXLAN_PORT, $(kernel_mac "$n")), pods $(pod_label "${n}a") and $(pod_label "${n}b") on cni0 ping their gateway and each other"
    else
        printf '%s\n' "$dev" >"$WORK/kdev.txt"
        fail "kernel node vc-n$n up with flannel.1 and its pods" "$WORK/kdev.txt"
    fi
done

# ================================================================ --store-only: the store side alone

if ((STORE_ONLY)); then
    # A fake lease with nobody keeping it alive: a node that crashed.
    if put_lease "$PHANTOM_CIDR" "$PHANTOM_IP" "$PHANTOM_MAC" "$PHANTOM_TTL"; then
        T_PHANTOM="$(mark)"
        pass "store: a fake lease $(lease_key "$PHANTOM_CIDR") on an etcd lease of $PHANTOM_TTL s, never kept alive"
    else
        T_PHANTOM="$(mark)"
        fail "store: a fake lease $(lease_key "$PHANTOM_CIDR") written"
    fi
    for n in 9 8; do
        m=$((n == 9 ? 8 : 9))
        if kernel_sync "$n" && kernel_has "$n" "$(kernel_cidr "$m")" "$(kernel_mac "$m")" "$(ul_ip "n$m")" &&
            kernel_has "$n" "$PHANTOM_CIDR" "$PHANTOM_MAC" "$PHANTOM_IP"; then
            pass "kernel_sync vc-n$n: route, neighbour and FDB entry for $(kernel_cidr "$m") (vc-n$m) and $PHANTOM_CIDR (fake) from their leases"
        else
            fail "kernel_sync vc-n$n: peers programmed from the leases" "$(kernel_state "$n")"
        fi
    done
    mapfile -t pairs < <(cross_pairs "9 8" "9 8")
    ping_matrix each "kernel nodes synced from the store" "${pairs[@]}"

    gone=""
    while before_deadline "$T_PHANTOM" $((PHANTOM_TTL + 5)); do
        if v="$(ectl get "$(lease_key "$PHANTOM_CIDR")" --print-value-only 2>/dev/null)" && [[ -z "$v" ]]; then
            gone="$(since "$T_PHANTOM")"
            break
        fi
        sleep 0.3
    done
    if [[ -n "$gone" ]]; then
        pass "store: the fake lease expired by itself $gone s after it was written (TTL $PHANTOM_TTL s, limit $((PHANTOM_TTL + 5)) s)"
    else
        fail "store: the fake lease expired within $((PHANTOM_TTL + 5)) s"
    fi
    for n in 9 8; do
        m=$((n == 9 ? 8 : 9))
        if kernel_sync "$n" && kernel_lacks "$n" "$PHANTOM_CIDR" &&
            fdb="$(in_ns "$(node_ns "n$n")" bridge fdb show dev flannel.1 2>&1)" && ! grep -qi "^$PHANTOM_MAC " <<<"$fdb" &&
            kernel_has "$n" "$(kernel_cidr "$m")" "$(kernel_mac "$m")" "$(ul_ip "n$m")"; then
            pass "kernel_sync vc-n$n: the expired lease's route, neighbour and FDB entry removed, vc-n$m's kept"
        else
            fail "kernel_sync vc-n$n: the expired lease's entries removed" "$(kernel_state "$n")"
        fi
    done

    # Members fail.
    stop_member 3
    if [[ "$(healthy_count)" == 2 ]] && store_writable &&
        [[ "$(ectl get "$PREFIX/network/config" --print-value-only 2>/dev/null)" == "$NET_CONFIG" ]]; then
        pass "etcd: e3 killed: e1 and e2 healthy, the store reads and writes"
    else
        fail "etcd: e3 killed: the store keeps answering" "$(member_logs)"
    fi
    T0="$(mark)"
    stop_member 2
    if wait_for 15 store_refuses; then
        pass "etcd: e2 killed too: no quorum, the store refuses writes $(since "$T0") s later"
    else
        fail "etcd: e2 killed too: the store refuses writes within 15 s" "$(member_logs)"
    fi
    mapfile -t pairs < <(cross_pairs "9 8" "9 8" a)
    ping_matrix all "no quorum: the kernel nodes' pods still reach each other" "${pairs[@]}"
    T0="$(mark)"
    start_member 2 restart
    if wait_for 20 store_writable; then
        pass "etcd: e2 restarted (same data dir and flags): the store writes again $(since "$T0") s later"
    else
        fail "etcd: e2 restarted: the store writes again within 20 s" "$(member_logs)"
    fi
    table="$(lease_table 2>/dev/null || true)"
    intact=1
    [[ "$(ectl get "$PREFIX/network/config" --print-value-only 2>/dev/null)" == "$NET_CONFIG" ]] || intact=0
    for n in 9 8; do
        grep -q "^$(kernel_cidr "$n") $(ul_ip "n$n") $(kernel_mac "$n") ${KLEASE[$n]:-none} vxlan $VNI\$" <<<"$table" || intact=0
    done
    if ((intact)) && [[ "$(healthy_count)" == 2 ]]; then
        pass "etcd: after the restart the network config and both kernel leases (same etcd leases) are there; e1, e2 healthy"
    else
        printf '%s\n' "$table" >"$WORK/table.txt"
        fail "etcd: data intact after the restart" "$WORK/table.txt"
    fi
    if kernel_sync 9 && kernel_has 9 "$(kernel_cidr 8)" "$(kernel_mac 8)" "$(ul_ip n8)"; then
        pass "kernel_sync vc-n9 works again against the restarted store"
    else
        fail "kernel_sync vc-n9 against the restarted store" "$(kernel_state 9)"
    fi
fi

# ================================================================ the switches

sock_of() { printf '%s/n%s.sock\n' "$WORK" "$1"; }
vs() { # vs NODE SUBCOMMAND ARGS...: the switch CLI against node NODE's socket
    local n="$1"
    shift
    timeout "${VS_TIMEOUT:-10}" "$BIN" "$@" --socket "$(sock_of "$n")"
}
zone_of() { if (($1 <= 2)); then echo zone-a; else echo zone-b; fi; }

write_config() { # write_config N: node N's config, with no pod CIDR and no peers
    local n="$1" ip
    ip="$(ul_ip "n$n")"
    cat >"$WORK/n$n.yaml" <<EOF
node:
  name: vc-n$n
  clusterCIDR: $CLUSTER_CIDR
  labels:
    topology.kubernetes.io/zone: $(zone_of "$n")
control: { socket: $(sock_of "$n") }
state: { directory: $WORK/n$n-state }
metrics: { listen: $ip:10249 }
overlay:
  localAddress: $ip
  port: $VXLAN_PORT
  vni: $VNI
services: {}
cluster:
  prefix: $PREFIX
  leaseTTLSeconds: $LEASE_TTL
  etcd:
    endpoints: [https://198.18.0.11:2379, https://198.18.0.12:2379, https://198.18.0.13:2379]
    caFile: $PKI/ca.crt
    certFile: $PKI/client.crt
    keyFile: $PKI/client.key
EOF
}

# apply_service NAME IP NODE WHAT: Service NAME (IP, endpoints on the pods 3a and 4a) applied with `vswitch apply -f` on
# node NODE while pollers on every node connect to it; reports the apply and the time to the first answer on each node.
apply_service() {
    local name="$1" ip="$2" node="$3" what="$4" out
    {
        svc_yaml "$name" "$ip"
        slice_yaml "$name" 3a 4a
    } >"$WORK/$name.yaml"
    start_pollers "$name" "$ip"
    sleep 0.3
    T0="$(mark)"
    if out="$(vs "$node" apply -f "$WORK/$name.yaml" 2>&1)"; then
        pass "$what"
    else
        printf '%s\n' "$out" >"$WORK/apply-$name.txt"
        fail "$what" "$WORK/apply-$name.txt"
    fi
    report_pollers "$name" "$T0" 15 "service $name"
}

start_switch() { # start_switch N
    start_bg "vs-n$1" ip netns exec "$(node_ns "n$1")" "$BIN" run --config "$WORK/n$1.yaml"
}
switch_log() { bg_log "vs-n$1"; }

declare -A STATE_AT=() LAST_STATE=() CJSON=() SUB=() VTEP=()
# wait_cluster_state STATE T0 SECS N...: poll each node's `vswitch cluster -o json` until its state is STATE (ready
# also needs a subnet), until T0 + SECS. Sets STATE_AT[N] (seconds since T0) and CJSON[N] for those that got there,
# LAST_STATE[N] for the others. Returns 1 if some did not.
wait_cluster_state() {
    local want="$1" t0="$2" secs="$3" n js st sub
    local -a pending still
    shift 3
    pending=("$@")
    for n in "$@"; do
        unset "STATE_AT[$n]"
        LAST_STATE[$n]="no answer"
    done
    while true; do
        still=()
        for n in "${pending[@]}"; do
            js="$(VS_TIMEOUT=5 vs "$n" cluster -o json 2>/dev/null)" || js=""
            st="$(vc_get state <<<"$js")"
            sub="$(vc_get subnet <<<"$js")"
            LAST_STATE[$n]="${st:-no answer}${sub:+, subnet $sub}"
            if [[ "$st" == "$want" && ("$want" != ready || -n "$sub") ]]; then
                STATE_AT[$n]="$(since "$t0")"
                CJSON[$n]="$js"
            else
                still+=("$n")
            fi
        done
        pending=("${still[@]}")
        ((${#pending[@]} > 0)) || return 0
        before_deadline "$t0" "$secs" || return 1
        sleep 0.3
    done
}
cluster_state() { # cluster_state N: the node's cluster state (empty when it does not answer)
    local js
    js="$(VS_TIMEOUT=5 vs "$1" cluster -o json 2>/dev/null)" || js=""
    vc_get state <<<"$js"
}

# take_subnet N: the subnet node N leased (from CJSON[N]) -> SUB, VTEP and its pods' addresses.
take_subnet() {
    local n="$1" o
    SUB[$n]="$(vc_get subnet <<<"${CJSON[$n]}")"
    VTEP[$n]="$(vc_get vtepMac <<<"${CJSON[$n]}" | tr 'A-F' 'a-f')"
    o="${SUB[$n]#10.244.}"
    o="${o%%.*}"
    POD_IP[${n}a]="10.244.$o.2"
    POD_IP[${n}b]="10.244.$o.3"
}

# lease_ok N: node N's lease in the store: PublicIP its underlay address, its VTEP MAC, vxlan, VNI 1, on an etcd
# lease with TTL leaseTTLSeconds. Prints what it found.
lease_ok() {
    local n="$1" line cidr pub mac lease btype vni ttl
    line="$(lease_table 2>/dev/null | awk -v c="${SUB[$n]}" '$1 == c' || true)"
    read -r cidr pub mac lease btype vni <<<"$line"
    ttl="$(ectl lease timetolive "${lease:-0}" 2>&1 || true)"
    printf 'lease: %s\netcd lease: %s\nswitch says vtepMac %s\n' "$line" "$ttl" "${VTEP[$n]:-?}"
    [[ "${cidr:-}" == "${SUB[$n]}" && "$pub" == "$(ul_ip "n$n")" && "$btype" == vxlan && "$vni" == "$VNI" ]] || return 1
    [[ -z "${VTEP[$n]}" || "$mac" == "${VTEP[$n]}" ]] || return 1
    if [[ -z "${VTEP[$n]}" ]]; then VTEP[$n]="$mac"; fi
    [[ "$lease" =~ [1-9a-f] && "$ttl" == *"TTL(${LEASE_TTL}s)"* ]]
}

# shellcheck disable=SC2317 # only called indirectly, through wait_for
pod_addr_ok() { # pod_addr_ok KEY: eth0 in the pod namespace is up with its address
    local out
    out="$(ip -n "$(pod_ns "$1")" -o addr show dev eth0 2>/dev/null)" || return 1
    [[ "$out" == *" ${POD_IP[$1]}/24 "* ]] || return 1
    out="$(ip -n "$(pod_ns "$1")" -o link show dev eth0 2>/dev/null)" || return 1
    [[ "$out" == *[\<,]UP[,\>]* ]]
}
add_pods() { # add_pods N: the node's two pods, .2 and .3 of the subnet it leased
    local n="$1" l k out ok=1
    for l in a b; do
        k="$n$l"
        if ! out="$(vs "$n" port add "pod-$l" --interface "vc$n-tap-$l" --namespace "$(pod_ns "$k")" \
            --address "${POD_IP[$k]}/24" 2>&1)"; then
            printf '%s\n' "$out" >"$WORK/port-add-$k.txt"
            fail "vc-n$n: port add pod-$l --address ${POD_IP[$k]}/24" "$WORK/port-add-$k.txt"
            ok=0
        elif ! wait_for 10 pod_addr_ok "$k"; then
            ip -n "$(pod_ns "$k")" addr >"$WORK/port-add-$k.txt" 2>&1 || true
            fail "vc-n$n: pod-$l's TAP is eth0 in $(pod_ns "$k") with ${POD_IP[$k]}/24, up" "$WORK/port-add-$k.txt"
            ok=0
        fi
    done
    if ((ok)); then
        pass "vc-n$n: pods $(pod_label "${n}a") and $(pod_label "${n}b") added in its leased subnet (vswitch port add)"
    fi
    return 0
}

LIVE_VS=()
# expected_peers N: the "CIDR ADDRESS VTEP_MAC" node N must list: every other live switch and the kernel node.
expected_peers() {
    local n="$1" m
    for m in "${LIVE_VS[@]}"; do
        if [[ "$m" != "$n" ]]; then printf '%s %s %s\n' "${SUB[$m]}" "$(ul_ip "n$m")" "${VTEP[$m]:--}"; fi
    done
    printf '%s %s %s\n' "$(kernel_cidr 9)" "$(ul_ip n9)" "$(kernel_mac 9)"
}
# peers_missing N: the expected peers node N does not list (empty when all are there; "no answer" when it does not).
# A VTEP MAC is compared when the switch reports one for the peer.
peers_missing() {
    local n="$1" js have cidr ip mac
    js="$(VS_TIMEOUT=5 vs "$n" peers -o json 2>/dev/null)" || {
        echo "no answer"
        return 0
    }
    have="$("$PY" "$VC" peers <<<"$js")"
    while read -r cidr ip mac; do
        if ! awk -v c="$cidr" -v i="$ip" -v m="$mac" '$1 == c && $2 == i && (m == "-" || $3 == "-" || $3 == m) {f = 1} END {exit !f}' \
            <<<"$have"; then
            printf '%s@%s ' "$cidr" "$ip"
        fi
    done < <(expected_peers "$n")
}
# check_peers SECS N...: within SECS, each node lists every other live switch and the kernel node as peers.
check_peers() {
    local secs="$1" n t0 missing others
    shift
    t0="$(mark)"
    for n in "$@"; do
        missing="$(peers_missing "$n")"
        while [[ -n "$missing" ]] && before_deadline "$t0" "$secs"; do
            sleep 0.3
            missing="$(peers_missing "$n")"
        done
        if [[ -z "$missing" ]]; then
            others="$(for m in "${LIVE_VS[@]}"; do [[ $m == "$n" ]] || printf 'vc-n%s ' "$m"; done)"
            pass "vc-n$n: peers lists every other switch (${others% }) and the kernel node vc-n9, with their subnets and addresses"
        else
            vs "$n" peers -o json >"$WORK/peers-$n.json" 2>&1 || true
            fail "vc-n$n: peers lists every other switch and the kernel node (missing: $missing)" "$WORK/peers-$n.json"
        fi
    done
}
kernel_synced() { # kernel_synced: kernel_sync the kernel node, then check it routes every live switch's subnet
    local m
    kernel_sync 9 || return 1
    for m in "${LIVE_VS[@]}"; do
        kernel_has 9 "${SUB[$m]}" "${VTEP[$m]}" "$(ul_ip "n$m")" || return 1
    done
}
has_cidr() { awk -v c="$1" '$1 == c {f = 1} END {exit !f}'; } # has_cidr CIDR: in column 1 of stdin
# peer_and_route_gone N CIDR: node N lists no peer and no route for CIDR.
peer_and_route_gone() {
    local p r
    p="$(VS_TIMEOUT=5 vs "$1" peers -o json 2>/dev/null)" || return 1
    r="$(VS_TIMEOUT=5 vs "$1" routes -o json 2>/dev/null)" || return 1
    if "$PY" "$VC" peers <<<"$p" | has_cidr "$2"; then return 1; fi
    if "$PY" "$VC" routes <<<"$r" | has_cidr "$2"; then return 1; fi
    return 0
}

# readyz_of N: "CODE BODY" of node N's /readyz on its metrics listener.
readyz_of() {
    local out
    out="$(in_ns "$(node_ns "n$1")" curl -s -m 3 -w '\n%{http_code}' "http://$(ul_ip "n$1"):10249/readyz" 2>/dev/null)" || true
    printf '%s %s\n' "${out##*$'\n'}" "$(tr '\n' ' ' <<<"${out%$'\n'*}")"
}
metric_of() { # metric_of N NAME: the value of metric NAME on node N's /metrics
    local out
    out="$(in_ns "$(node_ns "n$1")" curl -s -m 3 "http://$(ul_ip "n$1"):10249/metrics" 2>/dev/null)" || true
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 {print $NF; exit}' <<<"$out"
}
# check_health_surface N STATE: status -o json, /readyz and vswitch_cluster_ready agree with STATE (ready|degraded).
check_health_surface() {
    local n="$1" want="$2" st code body metric js
    js="$(VS_TIMEOUT=5 vs "$n" status -o json 2>/dev/null)" || js=""
    st="$(vc_get cluster.state <<<"$js")"
    if [[ "$st" == "$want" ]]; then
        pass "vc-n$n: vswitch status -o json shows cluster.state $want"
    else
        fail "vc-n$n: vswitch status -o json shows cluster.state $want (got: ${st:-no answer})"
    fi
    read -r code body <<<"$(readyz_of "$n")"
    if [[ "$want" == ready && "$code" == 200 && "$body" == ok* ]] ||
        [[ "$want" == degraded && "$code" == 503 && "${body,,}" == *degraded* ]]; then
        pass "vc-n$n: /readyz on $(ul_ip "n$n"):10249 answers $code ${body:-}"
    else
        fail "vc-n$n: /readyz answers $([[ $want == ready ]] && echo '200 ok' || echo '503 ...degraded...') (got: $code ${body:-})"
    fi
    metric="$(metric_of "$n" vswitch_cluster_ready)"
    if { [[ "$want" == ready ]] && [[ "$metric" =~ ^1(\.0*)?$ ]]; } ||
        { [[ "$want" == degraded ]] && [[ "$metric" =~ ^0(\.0*)?$ ]]; }; then
        pass "vc-n$n: /metrics has vswitch_cluster_ready $metric"
    else
        fail "vc-n$n: /metrics has vswitch_cluster_ready $([[ $want == ready ]] && echo 1 || echo 0) (got: ${metric:-none})"
    fi
}

# Services: manifests, servers, clients.
svc_yaml() { # svc_yaml NAME CLUSTER_IP: a ClusterIP Service, 8080/TCP and 5353/UDP
    cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: default}
spec:
  type: ClusterIP
  clusterIP: $2
  clusterIPs: [$2]
  ports:
  - {name: http, protocol: TCP, port: $SVC_PORT, targetPort: $SVC_PORT}
  - {name: dns, protocol: UDP, port: $UDP_PORT, targetPort: $UDP_PORT}
EOF
}
slice_yaml() { # slice_yaml NAME POD...: the Service's EndpointSlice NAME-1 with the given pods (ready, nodeName set)
    local name="$1" k
    shift
    cat <<EOF
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-1
  namespace: default
  labels: {kubernetes.io/service-name: $name}
addressType: IPv4
ports:
- {name: http, protocol: TCP, port: $SVC_PORT}
- {name: dns, protocol: UDP, port: $UDP_PORT}
endpoints:
EOF
    for k in "$@"; do
        printf -- '- addresses: ["%s"]\n  conditions: {ready: true}\n  nodeName: vc-n%s\n' "${POD_IP[$k]}" "${POD_NODE[$k]}"
    done
}
start_pollers() { # start_pollers TAG IP: a first-answer poller (TCP IP:8080) in pod b of every live switch node
    local n
    for n in "${LIVE_VS[@]}"; do
        start_bg "first-$1-$n" ip netns exec "$(pod_ns "${n}b")" timeout 40 "$PY" "$VC" first-answer "$2" "$SVC_PORT" 30
    done
}
# report_pollers TAG T0 LIMIT DESC: one check per node: its poller was answered within LIMIT s of T0.
report_pollers() {
    local tag="$1" t0="$2" limit="$3" desc="$4" n line us tries who
    for n in "${LIVE_VS[@]}"; do
        bg_wait "first-$tag-$n" 40 || bg_stop "first-$tag-$n"
        line="$(tail -n 1 "$(bg_log "first-$tag-$n")" 2>/dev/null || true)"
        read -r us tries who _ <<<"$line"
        if [[ "${us:-}" =~ ^[0-9]+$ ]] && ((us - t0 <= limit * 1000000)); then
            pass "$desc: first answer on vc-n$n ($(pod_ns "${n}b") -> $who) $(fmt_us $((us - t0))) s after the apply ($tries tries, limit $limit s)"
        elif [[ "${us:-}" =~ ^[0-9]+$ ]]; then
            fail "$desc: first answer on vc-n$n $(fmt_us $((us - t0))) s after the apply (limit $limit s)"
        else
            fail "$desc: an answer on vc-n$n within $limit s of the apply (got: ${line:-nothing})" "$(switch_log "$n")"
        fi
    done
}
tcp_from() { # tcp_from POD HOST PORT COUNT [TIMEOUT]: svc-tools' TCP client in POD; output in $OUT
    OUT="$(in_ns "$(pod_ns "$1")" timeout 60 "$PY" "$TOOLS" tcp "$2" "$3" "$4" "${5:-1}" 2>&1 || true)"
}

if ((!STORE_ONLY)); then
    # ------------------------------------------------------------ 3. three switches lease their subnets

    for n in "${VS_NODES[@]}"; do
        write_config "$n"
        expect_ok "vc-n$n: vswitch config check accepts the cluster config (no podCIDR, no peers)" \
            timeout 20 "$BIN" config check "$WORK/n$n.yaml"
    done
    T0="$(mark)"
    for n in 1 2 3; do
        start_switch "$n"
    done
    wait_cluster_state ready "$T0" 15 1 2 3 || true
    up=1
    for n in 1 2 3; do
        if [[ -n "${STATE_AT[$n]:-}" ]]; then
            take_subnet "$n"
            pass "vc-n$n: cluster state ready with leased subnet ${SUB[$n]} ${STATE_AT[$n]} s after start (limit 15 s)"
        else
            fail "vc-n$n: cluster state ready with a leased subnet within 15 s of start (last: ${LAST_STATE[$n]})" "$(switch_log "$n")"
            up=0
        fi
    done
    ((up)) || finish
    LIVE_VS=(1 2 3)
    subs="$(printf '%s\n' "${SUB[1]}" "${SUB[2]}" "${SUB[3]}" "$(kernel_cidr 9)")"
    if [[ "$(sort -u <<<"$subs" | wc -l)" == 4 ]] && ! grep -qvE '^10\.244\.[0-9]{1,3}\.0/24$' <<<"$subs"; then
        pass "subnets: ${SUB[1]}, ${SUB[2]}, ${SUB[3]}: distinct /24s of $CLUSTER_CIDR, none the kernel node's $(kernel_cidr 9)"
    else
        fail "subnets distinct /24s of $CLUSTER_CIDR, not the kernel node's (got: ${subs//$'\n'/ })"
    fi
    for n in 1 2 3; do
        if lease_ok "$n" >"$WORK/lease-$n.txt" 2>&1; then
            pass "vc-n$n: its lease $(lease_key "${SUB[$n]}") in the store: PublicIP $(ul_ip "n$n"), VtepMAC ${VTEP[$n]}, vxlan VNI $VNI, on an etcd lease with TTL $LEASE_TTL s"
        else
            fail "vc-n$n: its lease in the store in flannel's format, on an etcd lease with TTL $LEASE_TTL s" "$WORK/lease-$n.txt"
        fi
        add_pods "$n"
    done
    check_peers 10 1 2 3
    if kernel_synced; then
        pass "kernel node synced: routes, neighbours and FDB entries for ${SUB[1]}, ${SUB[2]}, ${SUB[3]} from the switches' leases"
    else
        fail "kernel node synced from the switches' leases" "$(kernel_state 9)"
    fi

    # ------------------------------------------------------------ 4. pods across nodes

    mapfile -t pairs < <(cross_pairs "1 2 3 9" "1 2 3 9")
    ping_matrix each "pods" "${pairs[@]}"

    # ------------------------------------------------------------ 5. a fourth switch joins

    before="$(lease_cidrs 2>/dev/null || true)"
    T0="$(mark)"
    start_switch 4
    T_LEASE=""
    NEW4=""
    while before_deadline "$T0" 20; do
        now_l="$(lease_cidrs 2>/dev/null || true)"
        NEW4="$(comm -13 <(sort <<<"$before") <(sort <<<"$now_l") | awk 'NF {print; exit}')"
        if [[ -n "$NEW4" ]]; then
            T_LEASE="$(mark)"
            break
        fi
        sleep 0.2
    done
    if [[ -z "$T_LEASE" ]]; then
        fail "join: vc-n4's lease appears in the store within 20 s of its start" "$(switch_log 4)"
        finish
    fi
    wait_cluster_state ready "$T0" 15 4 || true
    if [[ -z "${STATE_AT[4]:-}" ]]; then
        fail "join: vc-n4 cluster state ready with a leased subnet within 15 s (last: ${LAST_STATE[4]})" "$(switch_log 4)"
        finish
    fi
    take_subnet 4
    if [[ "${SUB[4]}" == "$NEW4" && " ${SUB[1]} ${SUB[2]} ${SUB[3]} $(kernel_cidr 9) " != *" ${SUB[4]} "* ]]; then
        pass "join: vc-n4 ready ${STATE_AT[4]} s after start with its own subnet ${SUB[4]} (its lease appeared $(fmt_us $((T_LEASE - T0))) s after start)"
    else
        fail "join: vc-n4's subnet ${SUB[4]} is the lease that appeared ($NEW4) and nobody else's"
    fi
    if lease_ok 4 >"$WORK/lease-4.txt" 2>&1; then
        pass "vc-n4: its lease in the store: PublicIP $(ul_ip n4), VtepMAC ${VTEP[4]}, TTL $LEASE_TTL s"
    else
        fail "vc-n4: its lease in the store in flannel's format" "$WORK/lease-4.txt"
    fi
    add_pods 4
    LIVE_VS=(1 2 3 4)
    if kernel_synced; then
        pass "kernel node synced: vc-n4's ${SUB[4]} added"
    else
        fail "kernel node synced: vc-n4's subnet added" "$(kernel_state 9)"
    fi
    T_PING=""
    while before_deadline "$T_LEASE" 30; do
        if in_ns "$(pod_ns 1a)" timeout 3 ping -c 1 -W 1 "${POD_IP[4a]}" >/dev/null 2>&1; then
            T_PING="$(mark)"
            break
        fi
        sleep 0.1
    done
    if [[ -n "$T_PING" ]]; then
        log "join: vc-n4 lease in the store -> first answered ping $(pod_label 1a) -> $(pod_label 4a): $(fmt_us $((T_PING - T_LEASE))) s"
        pass "join: $(fmt_us $((T_PING - T_LEASE))) s from vc-n4's lease appearing in the store to $(pod_label 1a)'s first answered ping to $(pod_label 4a) (pods added by the test in between)"
    else
        fail "join: $(pod_label 1a) pings $(pod_label 4a) within 30 s of vc-n4's lease appearing" "$(switch_log 4)"
    fi
    check_peers 10 1 2 3 4
    mapfile -t pairs < <(cross_pairs "4" "1 2 3 9")
    mapfile -t -O "${#pairs[@]}" pairs < <(cross_pairs "1 2 3 9" "4")
    ping_matrix all "join: vc-n4's pods <-> every other node's pods, kernel node included" "${pairs[@]}"

    # ------------------------------------------------------------ 6. a switch crashes

    gone_key="$(lease_key "${SUB[2]}")"
    limit=$((LEASE_TTL + 5))
    T0="$(mark)"
    bg_stop vs-n2 KILL 5
    LIVE_VS=(1 3 4)
    lease_gone=""
    declare -A DROP_AT=()
    while before_deadline "$T0" "$limit"; do
        if [[ -z "$lease_gone" ]] && v="$(ectl get "$gone_key" --print-value-only 2>/dev/null)" && [[ -z "$v" ]]; then
            lease_gone="$(since "$T0")"
        fi
        for n in "${LIVE_VS[@]}"; do
            if [[ -z "${DROP_AT[$n]:-}" ]] && peer_and_route_gone "$n" "${SUB[2]}"; then
                DROP_AT[$n]="$(since "$T0")"
            fi
        done
        if [[ -n "$lease_gone" && -n "${DROP_AT[1]:-}" && -n "${DROP_AT[3]:-}" && -n "${DROP_AT[4]:-}" ]]; then
            break
        fi
        sleep 0.3
    done
    if [[ -n "$lease_gone" ]]; then
        pass "crash: vc-n2's lease $gone_key gone from etcd $lease_gone s after its SIGKILL (TTL $LEASE_TTL s, limit $limit s)"
    else
        fail "crash: vc-n2's lease $gone_key gone from etcd within $limit s of its SIGKILL"
    fi
    for n in "${LIVE_VS[@]}"; do
        if [[ -n "${DROP_AT[$n]:-}" ]]; then
            pass "crash: vc-n$n dropped vc-n2's peer and route ${SUB[2]} ${DROP_AT[$n]} s after its SIGKILL (limit $limit s)"
        else
            { vs "$n" peers -o json; vs "$n" routes -o json; } >"$WORK/drop-$n.txt" 2>&1 || true
            fail "crash: vc-n$n dropped vc-n2's peer and route ${SUB[2]} within $limit s" "$WORK/drop-$n.txt"
        fi
    done
    if kernel_synced && kernel_lacks 9 "${SUB[2]}"; then
        pass "kernel node synced: vc-n2's ${SUB[2]} removed, the others kept"
    else
        fail "kernel node synced: vc-n2's subnet removed" "$(kernel_state 9)"
    fi

    # ------------------------------------------------------------ 7. a Service from the store

    for k in 3a 4a; do
        start_bg "srv-$k" timeout 300 ip netns exec "$(pod_ns "$k")" "$PY" "$TOOLS" serve "$k" "$SVC_PORT" "$UDP_PORT" 290
        wait_for 5 tcp_listening "$(pod_ns "$k")" "$SVC_PORT" || log "server in $(pod_ns "$k") did not start"
    done
    apply_service web "$SVC_IP" 1 "service: vswitch apply -f on vc-n1: Service default/web $SVC_IP and EndpointSlice web-1 (endpoints on vc-n3 and vc-n4)"
    keys="$(ectl get --prefix "$PREFIX/registry/" --keys-only 2>/dev/null | awk NF || true)"
    if grep -q '/default/web$' <<<"$keys" && grep -q '/default/web-1$' <<<"$keys"; then
        pass "service: stored under $PREFIX/registry/ ($(grep -E '/default/web(-1)?$' <<<"$keys" | tr '\n' ' '))"
    else
        fail "service: the Service and EndpointSlice stored under $PREFIX/registry/<resource>/default/ (keys: ${keys//$'\n'/ })"
    fi
    got="$(vs 1 get services -n default -o json 2>&1 || true)"
    assert_contains "service: vswitch get services -n default -o json lists web's ClusterIP" "$got" "$SVC_IP"
    for n in "${LIVE_VS[@]}"; do
        tcp_from "${n}b" "$SVC_IP" "$SVC_PORT" 20
        answered="$(grep -cE '^[34]a ' <<<"$OUT" || true)"
        if [[ "$answered" == 20 ]] && grep -q '^3a ' <<<"$OUT" && grep -q '^4a ' <<<"$OUT"; then
            pass "service: from vc-n$n 20/20 connections answered, by both endpoints ($(grep -c '^3a ' <<<"$OUT") on vc-n3, $(grep -c '^4a ' <<<"$OUT") on vc-n4)"
        else
            printf '%s\n' "$OUT" >"$WORK/svc-$n.txt"
            fail "service: from vc-n$n 20 connections answered by both endpoints ($answered answered)" "$WORK/svc-$n.txt"
        fi
    done

    # A long-lived UDP flow (one socket) from vc-n1 pinned to the vc-n4 endpoint: new source ports until one lands there.
    FLOW=""
    for i in 0 1 2 3 4 5 6 7 8 9; do
        name="udpflow-$i"
        start_bg "$name" ip netns exec "$(pod_ns 1b)" timeout 120 "$PY" "$TOOLS" udp "$SVC_IP" "$UDP_PORT" 900 0.1 $((41000 + i)) 0.5
        wait_for 5 grep -qE '^[0-9.]+ [34]a ' "$(bg_log "$name")" || true
        first="$(awk '$2 ~ /^[34]a$/ {print $2; exit}' "$(bg_log "$name")")"
        if [[ "$first" == 4a ]]; then
            FLOW="$name"
            break
        fi
        bg_stop "$name"
        if [[ -z "$first" ]]; then
            log "the UDP port of $SVC_IP did not answer within 5 s: no flow to pin"
            break
        fi
    done
    sleep 1
    {
        slice_yaml web 3a
    } >"$WORK/web-without-n4.yaml"
    change_mono="$("$PY" -c 'import time; print("%.3f" % time.monotonic())')"
    T0="$(mark)"
    if out="$(vs 1 apply -f "$WORK/web-without-n4.yaml" 2>&1)"; then
        pass "service: the EndpointSlice re-applied on vc-n1 without the vc-n4 endpoint ${POD_IP[4a]}"
    else
        printf '%s\n' "$out" >"$WORK/apply2.txt"
        fail "service: the EndpointSlice re-applied without the vc-n4 endpoint" "$WORK/apply2.txt"
    fi
    for n in "${LIVE_VS[@]}"; do
        stopped=""
        while before_deadline "$T0" 15; do
            tcp_from "${n}b" "$SVC_IP" "$SVC_PORT" 10
            if [[ "$(grep -c '^3a ' <<<"$OUT" || true)" == 10 ]]; then
                stopped="$(since "$T0")"
                break
            fi
            sleep 0.2
        done
        tcp_from "${n}b" "$SVC_IP" "$SVC_PORT" 20
        if [[ -n "$stopped" && "$(grep -c '^3a ' <<<"$OUT" || true)" == 20 ]]; then
            pass "service: vc-n$n sends no new connection to the removed endpoint, at the latest $stopped s after the change (then 20/20 to vc-n3)"
        else
            printf '%s\n' "$OUT" >"$WORK/svc-after-$n.txt"
            fail "service: vc-n$n stops sending new connections to the removed endpoint within 15 s" "$WORK/svc-after-$n.txt"
        fi
    done
    if [[ -n "$FLOW" ]]; then
        flog="$(bg_log "$FLOW")"
        # shellcheck disable=SC2016 # an awk program
        wait_for 10 awk -v t="$change_mono" '$1 > t && $2 == "3a" {f = 1} END {exit !f}' "$flog" || true
        sleep 1
        bg_stop "$FLOW"
        read -r before4 after3 first3 last4 errs < <(awk -v t="$change_mono" '
            $2 == "4a" {last4 = $1; if ($1 <= t) before4++}
            $2 == "3a" && $1 > t {after3++; if (first3 == "") first3 = $1}
            $2 == "ERR" {errs++}
            END {printf "%d %d %s %s %d\n", before4, after3, (first3 == "" ? "-" : first3), (last4 == "" ? "-" : last4), errs}' "$flog")
        if ((before4 >= 5 && after3 >= 5)) && [[ "$first3" != - ]] && awk -v a="$last4" -v b="$first3" 'BEGIN {exit !(a < b)}'; then
            pass "service: the long-lived UDP flow pinned to vc-n4 was evicted: its datagrams went to vc-n3 from $(awk -v a="$first3" -v t="$change_mono" 'BEGIN {printf "%.2f", a - t}') s after the change, never to vc-n4 again ($before4 answers before, $after3 after, $errs lost)"
        else
            fail "service: the long-lived UDP flow moved from the removed endpoint to vc-n3 (answers from vc-n4 before: $before4, from vc-n3 after: $after3, last vc-n4 $last4, first vc-n3 $first3)" "$flog"
        fi
    else
        fail "service: a UDP flow from vc-n1 to $SVC_IP:$UDP_PORT landed on the vc-n4 endpoint (up to 10 source ports tried)" "$(bg_log "$name")"
    fi
    for n in "${LIVE_VS[@]}"; do
        left="(vswitch conntrack -o json did not answer)"
        t1="$(mark)"
        while [[ -n "$left" ]] && before_deadline "$t1" 5; do
            if js="$(vs "$n" conntrack -o json 2>/dev/null)"; then
                left="$("$PY" "$VC" ct-to "${POD_IP[4a]}" <<<"$js")"
            fi
            [[ -z "$left" ]] || sleep 0.5
        done
        if [[ -z "$left" ]]; then
            pass "service: vc-n$n's conntrack has no live connection DNATed to the removed endpoint ${POD_IP[4a]}"
        else
            printf '%s\n' "$left" >"$WORK/ct-$n.txt"
            fail "service: vc-n$n's conntrack still has connections DNATed to the removed endpoint ${POD_IP[4a]}" "$WORK/ct-$n.txt"
        fi
    done

    # ------------------------------------------------------------ 8. etcd members fail

    a_pairs() { cross_pairs "${LIVE_VS[*]} 9" "${LIVE_VS[*]} 9" a; }
    stop_member 3
    sleep 1
    T0="$(mark)"
    bad=""
    while before_deadline "$T0" 5; do
        for n in "${LIVE_VS[@]}"; do
            st="$(cluster_state "$n")"
            if [[ "$st" != ready ]]; then bad+=" vc-n$n:${st:-no-answer}"; fi
        done
        sleep 1
    done
    if [[ -z "$bad" ]]; then
        pass "etcd e3 killed: every switch stays ready (watched for 5 s)"
    else
        fail "etcd e3 killed: every switch stays ready (seen:$bad)"
    fi
    if [[ "$(healthy_count)" == 2 ]]; then
        pass "etcd e3 killed: e1 and e2 healthy"
    else
        fail "etcd e3 killed: e1 and e2 healthy" "$(member_logs)"
    fi
    mapfile -t pairs < <(a_pairs)
    ping_matrix all "etcd e3 killed: pods across nodes" "${pairs[@]}"

    T0="$(mark)"
    stop_member 2
    wait_cluster_state degraded "$T0" 15 "${LIVE_VS[@]}" || true
    for n in "${LIVE_VS[@]}"; do
        if [[ -n "${STATE_AT[$n]:-}" ]]; then
            pass "etcd e2 killed too (no quorum): vc-n$n reports degraded ${STATE_AT[$n]} s later (limit 15 s)"
        else
            fail "etcd e2 killed too: vc-n$n reports degraded within 15 s (last: ${LAST_STATE[$n]})" "$(switch_log "$n")"
        fi
        check_health_surface "$n" degraded
    done
    mapfile -t pairs < <(a_pairs)
    ping_matrix all "no quorum: pods across nodes still" "${pairs[@]}"

    # A switch restarted while the store has no quorum starts from what it saved (cluster.json in its state directory):
    # the same subnet, its peers and the Services from the store; its pods (persistent TAPs) are taken up again.
    T0="$(mark)"
    bg_stop vs-n1 TERM 10
    start_switch 1
    st=""
    js=""
    while before_deadline "$T0" 20; do
        js="$(VS_TIMEOUT=5 vs 1 cluster -o json 2>/dev/null)" || js=""
        st="$(vc_get state <<<"$js")"
        [[ "$st" != degraded ]] || break
        sleep 0.3
    done
    if [[ "$st" == degraded && "$(vc_get subnet <<<"$js")" == "${SUB[1]}" ]]; then
        pass "no quorum: vc-n1 restarted, forwarding from its saved state $(since "$T0") s later (subnet ${SUB[1]}, degraded)"
    else
        fail "no quorum: vc-n1 restarted starts from its saved state within 20 s (got ${st:-no answer}, subnet $(vc_get subnet <<<"$js"))" "$(switch_log 1)"
    fi
    mapfile -t pairs < <(a_pairs)
    ping_matrix all "no quorum, vc-n1 restarted: pods across nodes" "${pairs[@]}"
    tcp_from 1b "$SVC_IP" "$SVC_PORT" 1 3
    if [[ "$OUT" != ERR* && -n "$OUT" ]]; then
        pass "no quorum, vc-n1 restarted: the Service from the store answers from its pod ($SVC_IP:$SVC_PORT: $OUT)"
    else
        fail "no quorum, vc-n1 restarted: the Service from the store answers from its pod (got: $OUT)" "$(switch_log 1)"
    fi

    T0="$(mark)"
    start_member 2 restart
    wait_cluster_state ready "$T0" 20 "${LIVE_VS[@]}" || true
    for n in "${LIVE_VS[@]}"; do
        if [[ -n "${STATE_AT[$n]:-}" ]]; then
            pass "etcd e2 restarted (same data dir and flags): vc-n$n ready again ${STATE_AT[$n]} s later (limit 20 s)"
        else
            fail "etcd e2 restarted: vc-n$n ready again within 20 s (last: ${LAST_STATE[$n]})" "$(switch_log "$n")"
        fi
        check_health_surface "$n" ready
    done
    if [[ "$(healthy_count)" == 2 ]]; then
        pass "etcd e2 restarted: e1 and e2 healthy"
    else
        fail "etcd e2 restarted: e1 and e2 healthy" "$(member_logs)"
    fi
    apply_service web2 "$SVC2_IP" 3 "service: after the store came back, vswitch apply -f on vc-n3: Service default/web2 $SVC2_IP"
    if out="$(vs 1 delete service web2 -n default 2>&1)" && out+="$(vs 1 delete endpointslice web2-1 -n default 2>&1)"; then
        T0="$(mark)"
        for n in "${LIVE_VS[@]}"; do
            gone_at=""
            while before_deadline "$T0" 10; do
                tcp_from "${n}b" "$SVC2_IP" "$SVC_PORT" 1 1
                if [[ "$OUT" == ERR* ]]; then
                    gone_at="$(since "$T0")"
                    break
                fi
                sleep 0.2
            done
            if [[ -n "$gone_at" ]]; then
                pass "service: web2 deleted on vc-n1: vc-n$n no longer answers $SVC2_IP $gone_at s later ($OUT)"
            else
                fail "service: web2 deleted: vc-n$n stops answering $SVC2_IP within 10 s (got: $OUT)"
            fi
        done
    else
        printf '%s\n' "$out" >"$WORK/delete.txt"
        fail "service: vswitch delete service web2 / endpointslice web2-1 -n default" "$WORK/delete.txt"
    fi

    # The last member back: all three healthy, every switch still ready.
    start_member 3 restart
    if wait_for 20 all_healthy; then
        pass "etcd e3 restarted: e1, e2, e3 healthy"
    else
        fail "etcd e3 restarted: the three members healthy within 20 s" "$(member_logs)"
    fi
    T0="$(mark)"
    wait_cluster_state ready "$T0" 10 "${LIVE_VS[@]}" || true
    for n in "${LIVE_VS[@]}"; do
        if [[ -n "${STATE_AT[$n]:-}" ]]; then
            pass "etcd e3 restarted: vc-n$n ready"
        else
            fail "etcd e3 restarted: vc-n$n ready (last: ${LAST_STATE[$n]})" "$(switch_log "$n")"
        fi
    done

    # ------------------------------------------------------------ 9. SIGTERM

    for n in "${LIVE_VS[@]}"; do
        kill -TERM "$(bg_pid "vs-n$n")" 2>/dev/null || true
    done
    for n in "${LIVE_VS[@]}"; do
        rc=0
        bg_wait "vs-n$n" 10 || rc=$?
        if ((rc == 124)); then
            fail "vc-n$n: switch exits within 10 s of SIGTERM" "$(switch_log "$n")"
            bg_stop "vs-n$n" KILL 2
        else
            pass "vc-n$n: switch exits within 10 s of SIGTERM (status $rc)"
        fi
    done
    log "leases left in the store after SIGTERM: $(lease_cidrs 2>/dev/null | tr '\n' ' ' || true)"
fi

# ---------------------------------------------------------------- teardown, checked

cleanup_scope_end "$SCOPE"
left="$(ip netns list | awk '$1 ~ /^vc-/ {printf "%s ", $1}')"
if [[ -z "$left" ]]; then
    pass "teardown: no vc- namespace left"
else
    fail "teardown: vc- namespaces left: $left"
fi
alive=""
for name in "${!_BG_PIDS[@]}"; do
    if pid_alive "${_BG_PIDS[$name]}"; then alive+=" $name(${_BG_PIDS[$name]})"; fi
done
procs="$(VC_WORK="$WORK" "$PY" "$VC" procs)"
if [[ -z "$alive" && -z "$procs" ]]; then
    pass "teardown: every process the script started has ended (etcd members, switches, servers, clients)"
else
    fail "teardown: processes left:$alive ${procs:+(with the work dir in their command line: $procs)}"
fi
mounts="$(awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts)"
links="$(ip -o link show | awk -F': ' '$2 ~ /^vc-/ {printf "%s ", $2}')"
if [[ -z "$mounts" && -z "$links" ]]; then
    pass "teardown: the etcd tmpfs is unmounted and no vc- interface is left in the root namespace"
else
    fail "teardown: left: ${mounts:+mounts $mounts }${links:+interfaces $links}"
fi

finish
