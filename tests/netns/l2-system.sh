#!/usr/bin/env bash
#
# One-node L2 system test through a running VSwitch.
#
# Topology (all names start with vt-, addresses in 10.244.1.0/24):
#
#   vt-pod-a eth0 10.244.1.2  <- TAP vt-tap-a ---+
#   vt-pod-b eth0 10.244.1.3  <- TAP vt-tap-b ---+-- vswitch (bridge, MAC learning)
#   vt-pod-c eth0 10.244.1.4  <- TAP vt-tap-c ---+
#   vt-pod-d eth0 10.244.1.5  <- veth -> vt-vethd-h (root ns, af-packet port, offloads off)
#   vt-pod-e eth0 10.244.1.6  <- veth -> vt-vethe-h (root ns, af-packet port with PACKET_VNET_HDR)
#
# The switch creates the TAP devices, moves them into the pod namespaces,
# renames them to eth0, sets the address and brings them up; on SIGTERM it
# must remove them again.
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

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi

require_root
require_cmd ip ping iperf3 tshark ethtool timeout ss sysctl "$PY"

PODS=(a b c d e)
declare -A NS=([a]=vt-pod-a [b]=vt-pod-b [c]=vt-pod-c [d]=vt-pod-d [e]=vt-pod-e)
declare -A IP=([a]=10.244.1.2 [b]=10.244.1.3 [c]=10.244.1.4 [d]=10.244.1.5 [e]=10.244.1.6)
declare -A PORT=([a]=pod-a [b]=pod-b [c]=pod-c [d]=pod-d [e]=pod-e)
declare -A TAP=([a]=vt-tap-a [b]=vt-tap-b [c]=vt-tap-c)
BCAST=10.244.1.255
PLEN=24
VETH_D_HOST=vt-vethd-h
VETH_D_PEER=vt-vethd-p
VETH_E_HOST=vt-vethe-h
VETH_E_PEER=vt-vethe-p

make_workdir vt-l2
WORK="$NETNS_WORKDIR"
SOCK="$WORK/vswitch.sock"
CONFIG="$WORK/vswitch.yaml"
BIN="$(vswitch_bin)"

vs() { # vs SUBCOMMAND ARGS...: run the switch CLI against our socket
    timeout 10 "$BIN" "$@" --socket "$SOCK"
}

# ---------------------------------------------------------------- topology

for p in "${PODS[@]}"; do
    ns_add "${NS[$p]}"
    # No IPv6 chatter: keeps the MAC table and the traces to the test traffic.
    in_ns "${NS[$p]}" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    in_ns "${NS[$p]}" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    # Broadcast pings must be answered (checked below).
    in_ns "${NS[$p]}" sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
done

# pod-d: veth whose host end is an existing root-namespace interface that the
# switch opens with AF_PACKET.  Offloads off on both ends so frames on the
# wire are complete (no GRO super-frames, no partial checksums).
pod_veth "${NS[d]}" "$VETH_D_HOST" "$VETH_D_PEER" "${IP[d]}/$PLEN" 1500
offloads_off "$VETH_D_HOST"
# pod-e: the same, with the veth's offloads left on (TSO, checksum offload) and
# the af-packet port's offloads on (the default): TCP crosses the AF_PACKET
# socket in super-frames with a virtio-net header, both ways.
pod_veth "${NS[e]}" "$VETH_E_HOST" "$VETH_E_PEER" "${IP[e]}/$PLEN" 1500

cat >"$CONFIG" <<EOF
node:
  name: vt-node
control:
  socket: $SOCK
state:
  directory: $WORK/state
bridge:
  macAgingSeconds: 300
ports:
EOF
# pod-a and pod-b: TAPs with offloads (the default): TCP crosses them in 64 KB
# super-frames with partial checksums.  pod-c: a TAP with offloads off, so the
# switch must cut super-frames from pod-a into segments and finish their
# checksums in software (as it must for pod-d's AF_PACKET port, whose offloads
# are off).
declare -A OFFLOADS=([a]=true [b]=true [c]=false)
for p in a b c; do
    cat >>"$CONFIG" <<EOF
  - name: ${PORT[$p]}
    type: tap
    interface: ${TAP[$p]}
    namespace: ${NS[$p]}
    ifName: eth0
    address: ${IP[$p]}/$PLEN
    mtu: 1500
    offloads: ${OFFLOADS[$p]}
EOF
done
cat >>"$CONFIG" <<EOF
  - name: ${PORT[d]}
    type: af-packet
    interface: $VETH_D_HOST
    offloads: false
  - name: ${PORT[e]}
    type: af-packet
    interface: $VETH_E_HOST
EOF

# ---------------------------------------------------------------- start the switch

# shellcheck disable=SC2317 # only called indirectly, through wait_for
pod_addr_ok() { # pod_addr_ok NS IP: eth0 is up and has the address
    local out
    out="$(in_ns "$1" ip -o addr show dev eth0)" || return 1
    [[ "$out" == *" $2/$PLEN "* ]] || return 1
    in_ns "$1" ip -o link show dev eth0 | grep -qE '[<,]UP[,>]'
}

show_switch_log() {
    log "vswitch log ($(bg_log vswitch)):"
    indent_file "$(bg_log vswitch)" 80
}

if [[ ! -x "$BIN" ]]; then
    fail "switch started (binary not found or not executable: $BIN; build it or set VSWITCH)"
    finish
fi

start_bg vswitch "$BIN" run --config "$CONFIG"
SWITCH_PID="$BG_PID"
ready=0
deadline=$((SECONDS + 20))
while ((SECONDS < deadline)); do
    if vs ports >/dev/null 2>&1; then
        ready=1
        break
    fi
    if ! pid_alive "$SWITCH_PID"; then
        break
    fi
    sleep 0.2
done
if ((ready)); then
    pass "switch started (pid $SWITCH_PID, control socket answers)"
else
    if pid_alive "$SWITCH_PID"; then
        fail "switch started (control socket did not answer within 20 s)"
    else
        rc=0
        wait "$SWITCH_PID" 2>/dev/null || rc=$?
        fail "switch started (process exited with status $rc)"
    fi
    show_switch_log
    finish
fi

for p in a b c; do
    if wait_for 10 pod_addr_ok "${NS[$p]}" "${IP[$p]}"; then
        pass "${PORT[$p]}: TAP moved into ${NS[$p]} as eth0 with ${IP[$p]}/$PLEN, up"
    else
        fail "${PORT[$p]}: TAP moved into ${NS[$p]} as eth0 with ${IP[$p]}/$PLEN, up"
        in_ns "${NS[$p]}" ip addr >&2 || true
    fi
done

# pod-a and pod-b keep the offloads their TAP offers (TSO, checksum offload);
# pod-c and pod-d send complete frames.
for p in c d; do
    if link_exists eth0 "${NS[$p]}"; then
        offloads_off eth0 "${NS[$p]}"
    fi
done
for p in a b; do
    if in_ns "${NS[$p]}" ethtool -k eth0 2>/dev/null | grep -q '^tcp-segmentation-offload: on'; then
        pass "${PORT[$p]}: eth0 in ${NS[$p]} offers TSO (the TAP negotiated offloads)"
    else
        in_ns "${NS[$p]}" ethtool -k eth0 >"$WORK/ethtool-$p.txt" 2>&1 || true
        fail "${PORT[$p]}: eth0 in ${NS[$p]} offers TSO (the TAP negotiated offloads)" "$WORK/ethtool-$p.txt"
    fi
done

declare -A MAC=()
for p in "${PODS[@]}"; do
    MAC[$p]="$(mac_of eth0 "${NS[$p]}" 2>/dev/null || true)"
done

# ---------------------------------------------------------------- ARP and ping

in_ns "${NS[a]}" timeout 5 ping -c 1 -W 2 "${IP[b]}" >/dev/null 2>&1 || true
neigh="$(ip -n "${NS[a]}" neigh show "${IP[b]}" dev eth0 2>&1 || true)"
if [[ -n "${MAC[b]}" && "${neigh,,}" == *"lladdr ${MAC[b]}"* &&
    "$neigh" =~ (REACHABLE|STALE|DELAY) ]]; then
    pass "ARP: pod-a resolved pod-b ${IP[b]} to ${MAC[b]} (${BASH_REMATCH[1]})"
else
    out="$WORK/neigh.txt"
    printf 'pod-b MAC: %s\nip neigh: %s\n' "${MAC[b]:-?}" "$neigh" >"$out"
    fail "ARP: pod-a resolved pod-b ${IP[b]}" "$out"
fi

for src in "${PODS[@]}"; do
    for dst in "${PODS[@]}"; do
        [[ "$src" != "$dst" ]] || continue
        expect_ok "ping ${PORT[$src]} -> ${PORT[$dst]} (${IP[$dst]})" \
            in_ns "${NS[$src]}" timeout 10 ping -c 3 -W 1 -i 0.2 "${IP[$dst]}"
    done
done

# ---------------------------------------------------------------- iperf3

# iperf_check CLIENT SERVER tcp|udp
iperf_check() {
    local c="$1" s="$2" mode="$3" name json rc=0 verdict
    local -a extra=()
    name="iperf-$mode-$c-$s"
    json="$WORK/$name.json"
    [[ "$mode" == udp ]] && extra=(-u -b 50M)
    start_bg "srv-$name" timeout 20 ip netns exec "${NS[$s]}" \
        iperf3 -s -1 -B "${IP[$s]}" -p 5201
    if ! wait_for 5 tcp_listening "${NS[$s]}" 5201; then
        fail "iperf3 $mode ${PORT[$c]} -> ${PORT[$s]} (server did not start)" "$(bg_log "srv-$name")"
        bg_stop "srv-$name"
        return 0
    fi
    in_ns "${NS[$c]}" timeout 15 iperf3 -c "${IP[$s]}" -p 5201 -t 3 -J "${extra[@]}" \
        >"$json" 2>"$WORK/$name.err" || rc=$?
    bg_wait "srv-$name" 10 || bg_stop "srv-$name"
    verdict="$("$PY" - "$json" "$mode" <<'EOF' 2>&1
import json, sys
path, mode = sys.argv[1], sys.argv[2]
try:
    d = json.load(open(path))
except Exception as e:
    print("FAIL no JSON from iperf3: %s" % e); sys.exit()
if "error" in d:
    print("FAIL iperf3: %s" % d["error"]); sys.exit()
end = d["end"]
if mode == "tcp":
    bps = end["sum_received"]["bits_per_second"]
    ok = bps > 0
    print("%s %.0f Mbit/s received" % ("OK" if ok else "FAIL", bps / 1e6))
else:
    s = end["sum"]
    bps, loss = s["bits_per_second"], s["lost_percent"]
    ok = bps > 0 and s["packets"] > 0 and loss < 5.0
    print("%s %.1f Mbit/s, loss %.2f%% (%d/%d)" % ("OK" if ok else "FAIL", bps / 1e6, loss, s["lost_packets"], s["packets"]))
EOF
)" || true
    if ((rc == 0)) && [[ "$verdict" == OK* ]]; then
        pass "iperf3 $mode ${PORT[$c]} -> ${PORT[$s]}: ${verdict#OK }"
    else
        fail "iperf3 $mode ${PORT[$c]} -> ${PORT[$s]}: ${verdict#FAIL } (client exit $rc)" "$WORK/$name.err"
    fi
}

# port_avg_rx PORT [RX|TX]: average bytes per frame the switch received (or sent) on PORT.
port_avg_rx() {
    vs ports 2>/dev/null | "$PY" -c '
import sys
rows = [l.split() for l in sys.stdin.read().splitlines() if l.strip()]
h = rows[0]
d = sys.argv[2]
for r in rows[1:]:
    if r[0] == sys.argv[1]:
        p, b = int(r[h.index(d + "-PKTS")]), int(r[h.index(d + "-BYTES")])
        print(b // p if p else 0)
' "$1" "${2:-RX}"
}

# stage_counter STAGE COUNTER: a stage event counter from 'vswitch counters'.
stage_counter() {
    vs counters 2>/dev/null | awk -v s="$1" -v c="$2" '$1 == s && $2 == c { print $3; found = 1 } END { if (!found) print 0 }'
}

iperf_check a b tcp # TAP -> TAP, both with offloads: super-frames end to end
avg="$(port_avg_rx "${PORT[a]}")"
if [[ "$avg" =~ ^[0-9]+$ ]] && ((avg > 1514)); then
    pass "offloads: ${PORT[a]} received TCP super-frames (average $avg bytes per read, above the 1514-byte MTU frame)"
else
    fail "offloads: ${PORT[a]} received TCP super-frames (average ${avg:-?} bytes per read)"
fi
iperf_check a b udp
seg0="$(stage_counter port-tx segmented)"
iperf_check a c tcp # TAP with offloads -> TAP without: segmented in software
iperf_check a d tcp # TAP with offloads -> AF_PACKET: segmented in software
iperf_check a d udp
iperf_check e a tcp # AF_PACKET with offloads -> TAP with offloads: super-frames end to end
iperf_check a e tcp # and back
iperf_check e c tcp # AF_PACKET with offloads -> TAP without: segmented in software
avg="$(port_avg_rx "${PORT[e]}")"
avgtx="$(port_avg_rx "${PORT[e]}" TX)"
if [[ "$avg" =~ ^[0-9]+$ && "$avgtx" =~ ^[0-9]+$ ]] && ((avg > 1514 && avgtx > 1514)); then
    pass "offloads: ${PORT[e]} (af-packet, PACKET_VNET_HDR) received and sent TCP super-frames (average $avg bytes per frame in, $avgtx out)"
else
    vs ports >"$WORK/ports-e.txt" 2>&1 || true
    fail "offloads: ${PORT[e]} (af-packet) received and sent TCP super-frames (average ${avg:-?} in, ${avgtx:-?} out)" "$WORK/ports-e.txt"
fi
seg1="$(stage_counter port-tx segmented)"
if [[ "$seg0" =~ ^[0-9]+$ && "$seg1" =~ ^[0-9]+$ ]] && ((seg1 > seg0)); then
    pass "offloads: port-tx cut $((seg1 - seg0)) super-frames into segments for ports without TSO"
else
    vs counters >"$WORK/counters-seg.txt" 2>&1 || true
    fail "offloads: port-tx cut super-frames into segments for ports without TSO (segmented ${seg0:-?} -> ${seg1:-?})" "$WORK/counters-seg.txt"
fi

# The segments pod-c receives are complete frames with good checksums
# (tshark checks every IP and TCP checksum of pod-a's side of the stream).
PCAPC="$WORK/pod-c-tcp.pcapng"
start_bg tshark-c timeout 20 ip netns exec "${NS[c]}" \
    tshark -i eth0 -f "tcp port 5201" -c 400 -a duration:12 -w "$PCAPC"
if wait_for 8 grep -q "Capturing on" "$(bg_log tshark-c)"; then
    sleep 0.5
    start_bg srv-seg timeout 15 ip netns exec "${NS[c]}" iperf3 -s -1 -B "${IP[c]}" -p 5201
    wait_for 5 tcp_listening "${NS[c]}" 5201 || true
    in_ns "${NS[a]}" timeout 10 iperf3 -c "${IP[c]}" -p 5201 -t 1 -b 20M >/dev/null 2>&1 || true
    bg_wait srv-seg 10 || bg_stop srv-seg
    bg_wait tshark-c 15 || bg_stop tshark-c
    SEGF="$WORK/pod-c-tcp.txt"
    tshark -r "$PCAPC" -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE -Y "ip.src == ${IP[a]}" \
        -T fields -E separator=/t -e frame.len -e ip.checksum.status -e tcp.checksum.status -e tcp.len >"$SEGF" 2>/dev/null || true
    verdict="$("$PY" - "$SEGF" <<'EOF' 2>&1 || true
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l.strip()]
bad = [r for r in rows if len(r) < 4 or int(r[0]) > 1514 or r[1] != "1" or r[2] != "1"]
data = sum(1 for r in rows if len(r) >= 4 and r[3].isdigit() and int(r[3]) > 0)
if not rows: print("FAIL no TCP from pod-a captured")
elif bad: print("FAIL %d of %d frames oversize or with a bad checksum, e.g. %s" % (len(bad), len(rows), bad[0]))
elif data == 0: print("FAIL no data segments captured")
else: print("OK %d frames (%d with data), all <= 1514 bytes, IP and TCP checksums good" % (len(rows), data))
EOF
)"
    if [[ "$verdict" == OK* ]]; then
        pass "tshark on pod-c eth0: segments of pod-a's super-frames intact (${verdict#OK })"
    else
        fail "tshark on pod-c eth0: segments of pod-a's super-frames intact (${verdict#FAIL })" "$SEGF"
    fi
else
    fail "tshark on pod-c eth0: capture did not start" "$(bg_log tshark-c)"
    bg_stop tshark-c
fi

# ---------------------------------------------------------------- broadcast

bout="$(in_ns "${NS[a]}" timeout 10 ping -b -c 3 -i 0.5 -w 5 "$BCAST" 2>&1 || true)"
missing=()
for p in b c d; do
    if ! grep -qE "bytes from ${IP[$p]//./\\.}:" <<<"$bout"; then
        missing+=("${PORT[$p]}")
    fi
done
nsrc="$(grep -oE 'bytes from [0-9.]+:' <<<"$bout" | sort -u | grep -cv "${IP[a]}:" || true)"
if ((${#missing[@]} == 0)); then
    pass "broadcast ping from pod-a to $BCAST answered by all 3 other pods ($nsrc distinct sources)"
else
    printf '%s\n' "$bout" >"$WORK/bcast.txt"
    fail "broadcast ping from pod-a to $BCAST answered by all 3 other pods (missing: ${missing[*]})" "$WORK/bcast.txt"
fi

# ---------------------------------------------------------------- frames intact (tshark)

PCAP="$WORK/pod-b.pcapng"
start_bg tshark-b timeout 15 ip netns exec "${NS[b]}" \
    tshark -i eth0 -f icmp -c 6 -a duration:10 -w "$PCAP"
if wait_for 8 grep -q "Capturing on" "$(bg_log tshark-b)"; then
    sleep 0.5
    in_ns "${NS[a]}" timeout 10 ping -c 3 -i 0.2 -W 1 -p a5c3 -s 200 "${IP[b]}" \
        >"$WORK/ping-pattern.txt" 2>&1 || true
    bg_wait tshark-b 15 || bg_stop tshark-b
    FIELDS="$WORK/pod-b-fields.txt"
    tshark -r "$PCAP" -o ip.check_checksum:TRUE -Y 'icmp.type == 8' \
        -T fields -E separator=/t -e ip.src -e ip.dst -e ip.len -e ip.checksum.status \
        -e icmp.checksum.status -e data.data >"$FIELDS" 2>/dev/null || true
    verdict="$("$PY" - "$FIELDS" "${IP[a]}" "${IP[b]}" <<'EOF' 2>&1 || true
import sys
src, dst = sys.argv[2], sys.argv[3]
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l.strip()]
problems = []
for r in rows:
    r += [""] * (6 - len(r))
    s, d, ln, ipck, icmpck, data = r[:6]
    if (s, d) != (src, dst): problems.append("addresses %s -> %s" % (s, d))
    if ln != "228": problems.append("ip.len %s (want 228)" % ln)
    if ipck != "1": problems.append("ip.checksum.status %s (want 1=good)" % ipck)
    if icmpck != "1": problems.append("icmp.checksum.status %s (want 1=good)" % icmpck)
    if "a5c3a5c3a5c3a5c3" not in data.replace(":", ""): problems.append("payload pattern a5c3 missing")
if not rows:
    print("FAIL no ICMP echo requests captured")
elif problems:
    print("FAIL " + "; ".join(sorted(set(problems))))
else:
    print("OK %d echo requests" % len(rows))
EOF
)"
    if [[ "$verdict" == OK* ]]; then
        pass "tshark on pod-b eth0: ICMP echo from pod-a intact (${verdict#OK }, ip/icmp checksums good, pattern a5c3)"
    else
        fail "tshark on pod-b eth0: ICMP echo from pod-a intact (${verdict#FAIL })" "$FIELDS"
    fi
else
    fail "tshark on pod-b eth0: capture did not start" "$(bg_log tshark-b)"
    bg_stop tshark-b
fi

# ---------------------------------------------------------------- CLI: mac, ports, trace, metrics

# Make sure every pod has sent something recently.
for p in b c d; do
    in_ns "${NS[$p]}" timeout 5 ping -c 1 -W 1 "${IP[a]}" >/dev/null 2>&1 || true
done

mac_out="$(vs mac 2>&1)" || fail "vswitch mac exits 0"
for p in "${PODS[@]}"; do
    if [[ -z "${MAC[$p]}" ]]; then
        fail "mac table: ${PORT[$p]} (no eth0 MAC in ${NS[$p]})"
        continue
    fi
    # One line holding both the MAC (any case) and the port name as a word.
    if grep -iF -- "${MAC[$p]}" <<<"$mac_out" | grep -qwF -- "${PORT[$p]}"; then
        pass "mac table: ${MAC[$p]} on ${PORT[$p]}"
    else
        printf '%s\n' "$mac_out" >"$WORK/mac.txt"
        fail "mac table: ${MAC[$p]} on ${PORT[$p]}" "$WORK/mac.txt"
    fi
done

ports_out="$(vs ports 2>&1)" || fail "vswitch ports exits 0"
printf '%s\n' "$ports_out" >"$WORK/ports.txt"
# Table contract: a header row with columns whose names start with rx / tx
# (e.g. RX, rx-packets, TX_PKTS), one row per port containing the port name.
ports_verdict="$("$PY" - "$WORK/ports.txt" "${PORT[@]}" <<'EOF' 2>&1 || true
import re, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
ports = sys.argv[2:]
split = lambda l: [c for c in re.split(r"\s*\|\s*|\s+", l.strip()) if c]
hdr = None
for i, l in enumerate(lines):
    cols = [c.lower() for c in split(l)]
    rx = [j for j, c in enumerate(cols) if c.startswith("rx")]
    tx = [j for j, c in enumerate(cols) if c.startswith("tx")]
    if rx and tx:
        hdr, rxi, txi = i, rx[0], tx[0]
        break
if hdr is None:
    print("FAIL no header with rx/tx columns"); sys.exit()
def num(s):
    s = s.replace(",", "").replace("_", "")
    m = re.match(r"^(\d+(?:\.\d+)?)([kKmMgG]?)$", s)
    if not m: return None
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
res = []
for p in ports:
    row = next((split(l) for l in lines[hdr + 1:] if p in split(l)), None)
    if row is None or max(rxi, txi) >= len(row):
        res.append("%s:missing" % p); continue
    rx, tx = num(row[rxi]), num(row[txi])
    res.append("%s:%s" % (p, "ok" if rx and tx else "zero(rx=%s,tx=%s)" % (row[rxi], row[txi])))
print(("OK " if all(r.endswith(":ok") for r in res) else "FAIL ") + " ".join(res))
EOF
)"
for p in "${PODS[@]}"; do
    if [[ " ${ports_verdict} " == *" ${PORT[$p]}:ok "* ]]; then
        pass "ports: ${PORT[$p]} has non-zero rx and tx counters"
    else
        fail "ports: ${PORT[$p]} has non-zero rx and tx counters ($ports_verdict)" "$WORK/ports.txt"
    fi
done

expect_ok "trace add 5" vs trace add 5
in_ns "${NS[a]}" timeout 5 ping -c 1 -W 1 "${IP[c]}" >/dev/null 2>&1 || true
trace_out="$(vs trace show 2>&1 || true)"
assert_contains "trace show has an l2-learn stage" "$trace_out" "l2-learn"
assert_contains "trace show has an l2-forward stage" "$trace_out" "l2-forward"

metrics_out="$(vs metrics 2>&1 || true)"
if grep -qE '^vswitch_port_rx_packets_total([{ ]|$)' <<<"$metrics_out"; then
    pass "metrics has vswitch_port_rx_packets_total"
else
    printf '%s\n' "$metrics_out" >"$WORK/metrics.txt"
    fail "metrics has vswitch_port_rx_packets_total" "$WORK/metrics.txt"
fi

# Adaptive polling (the default, up to 200 µs): back-to-back UDP request/response between two pods wakes the worker
# with one frame after a gap of tens of µs, so the window opens; the status shows it grew.
assert_contains "status shows adaptive polling" "$(vs status 2>&1)" "polling:    adaptive, up to 200 µs"
RR="$REPO/perf/e2e/udp-rr.py"
start_bg rr-server ip netns exec "${NS[b]}" timeout 30 "$PY" "$RR" server "${IP[b]}" 7007 --secs 25
wait_for 5 in_ns "${NS[b]}" sh -c "ss -Hlun | grep -q ':7007 '" || true
rr_out="$(in_ns "${NS[a]}" timeout 30 "$PY" "$RR" client "${IP[b]}" 7007 --count 500 --secs 20 2>&1 || true)"
grown="$(vs status 2>&1 | sed -n 's/^polling: .*grown \([0-9]*\),.*/\1/p')"
if [[ "$rr_out" == transactions=* && "${grown:-0}" -ge 1 ]]; then
    pass "adaptive polling: the window grew ${grown} time(s) under request/response ($rr_out)"
else
    fail "adaptive polling: window grew '${grown}' times (want >= 1) under request/response ($rr_out)"
fi

# ---------------------------------------------------------------- shutdown

kill -TERM "$SWITCH_PID" 2>/dev/null || true
rc=0
bg_wait vswitch 10 || rc=$?
if ((rc == 124)); then
    fail "switch exits within 10 s of SIGTERM"
    show_switch_log
    bg_stop vswitch KILL 2
else
    pass "switch exits within 10 s of SIGTERM (status $rc)"
fi

for p in a b c; do
    expect_fail "${PORT[$p]}: TAP gone after shutdown (no eth0 in ${NS[$p]})" \
        ip -n "${NS[$p]}" link show dev eth0
    expect_fail "${PORT[$p]}: no ${TAP[$p]} left in the root namespace" \
        ip link show dev "${TAP[$p]}"
done
expect_ok "pod-d: af-packet interface $VETH_D_HOST left in place" \
    ip link show dev "$VETH_D_HOST"
expect_ok "pod-e: af-packet interface $VETH_E_HOST left in place" \
    ip link show dev "$VETH_E_HOST"

finish
