#!/usr/bin/env bash
#
# Restart system test: the switch stops (SIGTERM) and starts again while its pods keep their interfaces and their
# connections, as an upgrade does.
#
# One VSwitch node (namespace vr-n1) with Services on and no pods in its config file. Two pods, vr-a and vr-b, are added
# through the API (their TAPs are persistent), and a Service through the API (10.96.0.30:7000 -> vr-b:7000). Pod a holds
# two long-lived TCP connections to an echo server on pod b, one straight to it and one through the ClusterIP, each
# sending a line every 50 ms and waiting for it to come back; it opens 1,000 UDP flows to pod b (1,000 tracked
# connections) and pings pod b every 10 ms. The switch is stopped with SIGTERM and started again.
#
# Checks: at the stop the switch saves its connections and state, the pods keep eth0 with their address and routes;
# after the start it takes the two pods up again (same ports, same Service) and restores the saved connections; both
# TCP connections go on (no reset, lines keep coming back after the restart, through the ClusterIP too, whose NAT lives
# in the restored entry); the pods are removed through the API afterwards and their TAPs go. A damaged state file gives
# a clear error and a clean start. Reports the stop-to-forwarding gap (the longest pause in the 10 ms pings) and how
# long the switch took from SIGTERM to ready.
#
# Topology (names start with vr-; pods 10.244.1.0/24, Services 10.96.0.0/12):
#
#    vr-n1: VSwitch (gateway 10.244.1.1, state in the test's work directory)
#      vr-a 10.244.1.2   vr-b 10.244.1.3   (added through the API)
#
# Usage: tests/netns/restart-system.sh
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
require_cmd ip ping timeout awk "$PY"

BIN="$(vswitch_bin)"
[[ -x "$BIN" ]] || die "vswitch binary not found at $BIN (build it, or set VSWITCH)"
make_workdir vr
WORK="$NETNS_WORKDIR"
SOCK="$WORK/ctl/vswitch.sock"
STATE="$WORK/state"
NODE=vr-n1
TOOLS="$SCRIPT_DIR/svc-tools.py"
STREAM_SECS=25

vs() { # vs SUBCOMMAND ARGS...: the switch CLI against our socket
    timeout 10 "$BIN" "$@" --socket "$SOCK"
}

for ns in "$NODE" vr-a vr-b; do
    if ip netns list | awk '{print $1}' | grep -qxF -- "$ns"; then
        die "namespace $ns already exists (left over from an earlier run? remove it with: ip netns del $ns)"
    fi
done
ns_add "$NODE"
for p in a b; do
    ns_add "vr-$p"
    quiet_ns "vr-$p"
done

cat >"$WORK/node.yaml" <<EOF
node: {name: restart-1, podCIDR: 10.244.1.0/24}
control: {socket: $SOCK}
state: {directory: $STATE}
services: {}
ports: []
EOF
expect_ok "config with no pods is valid" "$BIN" config check "$WORK/node.yaml"

start_switch() { # start_switch NAME: start the switch as background process NAME; 1 when it does not come up
    start_bg "$1" ip netns exec "$NODE" "$BIN" run --config "$WORK/node.yaml"
    wait_for 20 vs status
}

start_switch vswitch || die "switch did not start: $(cat "$(bg_log vswitch)")"
pass "switch is up"
expect_ok "port add a (API)" vs port add a --interface vr-ta --namespace vr-a --address 10.244.1.2/24
expect_ok "port add b (API)" vs port add b --interface vr-tb --namespace vr-b --address 10.244.1.3/24
cat >"$WORK/echo.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {clusterIP: 10.96.0.30, ports: [{name: echo, port: 7000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: default, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.3]}]
ports: [{name: echo, port: 7000}]
EOF
expect_ok "service apply echo (API)" vs service apply -f "$WORK/echo.yaml"
expect_ok "pod a pings pod b" in_ns vr-a ping -c 2 -W 1 10.244.1.3

start_bg echo-server ip netns exec vr-b "$PY" "$TOOLS" echo-serve 7000 $((STREAM_SECS + 30))
start_bg udp-server ip netns exec vr-b "$PY" "$TOOLS" serve b 7001 9 $((STREAM_SECS + 30))
wait_for 5 in_ns vr-b sh -c "ss -Hltn | grep -q ':7000 '" || true
start_bg stream-direct ip netns exec vr-a "$PY" "$TOOLS" stream 10.244.1.3 7000 "$STREAM_SECS" 0.05
start_bg stream-service ip netns exec vr-a "$PY" "$TOOLS" stream 10.96.0.30 7000 "$STREAM_SECS" 0.05
flows="$(in_ns vr-a timeout 60 "$PY" "$TOOLS" flows 10.244.1.3 9 1000 2>&1 || true)"
if [[ "$flows" == "1000 1000" ]]; then pass "1,000 UDP flows answered"; else fail "UDP flows: $flows"; fi
start_bg ping ip netns exec vr-a ping -D -i 0.01 -c 1500 -W 1 10.244.1.3
sleep 2
before="$(vs conntrack 1 2>&1 | tail -1 | awk '{print $1}')"
if ((${before:-0} >= 1002)); then pass "tracked before the restart: $before connections"; else fail "tracked before the restart: ${before:-?}"; fi

# ---------------------------------------------------------------- the restart

t0="$(date +%s.%N)"
bg_stop vswitch TERM 10
t1="$(date +%s.%N)"
if [[ -s "$STATE/conntrack.bin" && -s "$STATE/state.json" ]]; then pass "SIGTERM: connections and state saved in the state directory"; else fail "state directory after SIGTERM: $(ls -l "$STATE" 2>&1)"; fi
if in_ns vr-a ip -4 addr show dev eth0 | grep -q 10.244.1.2/24 && ip -n vr-a route | grep -q "default via 10.244.1.1"; then
    pass "while the switch is down pod a keeps eth0, its address and its default route"
else
    fail "pod a's interface after SIGTERM" "$(ip -n vr-a addr 2>&1; ip -n vr-a route 2>&1)"
fi
start_switch vswitch2 || fail "switch came back" "$(bg_log vswitch2)"
t2="$(date +%s.%N)"
log "SIGTERM to exit $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') s, exit to ready $(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.3f", b - a}') s (as this script sees it, CLI polls every 0.2 s)"
ports="$(vs ports -o wide 2>&1)"
if grep -q "^a .* api " <<<"$ports" && grep -q "^b .* api " <<<"$ports"; then pass "after the start both pods are ports again (origin api)"; else fail "ports after restart" "$ports"; fi
assert_contains "after the start the Service given to the API is back" "$(vs services 2>&1)" "10.96.0.30:7000/TCP"
restored="$(grep -o 'restored [0-9]* of [0-9]* connection(s)' "$(bg_log vswitch2)" || true)"
log "the switch: $(grep -o 'forwarding: .*' "$(bg_log vswitch2)" || true); $(grep -o 'ready: .*' "$(bg_log vswitch2)" | sed 's/.*, \([0-9]* ms after\)/API \1/' || true); $(grep -o 'announced .*' "$(bg_log vswitch2)" || true)"
after="$(vs conntrack 1 2>&1 | tail -1 | awk '{print $1}')"
if [[ -n "$restored" ]] && ((${after:-0} >= 1002)); then pass "connections restored: $restored; $after tracked"; else fail "connections restored: '${restored}', tracked ${after:-?}" "$(bg_log vswitch2)"; fi

# ---------------------------------------------------------------- the connections went on

for s in direct service; do
    bg_wait "stream-$s" $((STREAM_SECS + 40)) || true
    read -r rounds gap err <"$(bg_log "stream-$s")" || true
    if [[ "${err:-x}" == "-" ]] && ((${rounds:-0} >= STREAM_SECS * 10)); then
        pass "the $s TCP connection survived the restart: $rounds round trips, longest pause ${gap} s, no reset"
    else
        fail "the $s TCP connection across the restart: ${rounds:-?} rounds, pause ${gap:-?} s, error ${err:-?}" "$(bg_log "stream-$s")"
    fi
done
bg_wait ping 30 || true
gap="$(awk '/bytes from/ { t = substr($1, 2, length($1) - 2) + 0; if (last) { d = t - last; if (d > max) max = d } last = t }
    END { printf "%.3f\n", max }' "$(bg_log ping)")"
replies="$(grep -c 'bytes from' "$(bg_log ping)" || true)"
log "stop-to-forwarding gap: ${gap} s (the longest pause between replies to pings every 10 ms; $replies replies)"
if awk -v g="$gap" 'BEGIN {exit !(g > 0 && g < 10)}'; then pass "forwarding resumed after the restart (gap ${gap} s)"; else fail "ping gap across the restart: $gap s"; fi

# ---------------------------------------------------------------- the pods go through the API

expect_ok "port del a" vs port del a
expect_ok "port del b" vs port del b
if ! ip -n vr-a link show eth0 >/dev/null 2>&1 && ! ip -n vr-b link show eth0 >/dev/null 2>&1; then pass "removed pods' TAPs are gone"; else fail "TAPs left after port del"; fi

# ---------------------------------------------------------------- a damaged state file

bg_stop vswitch2 TERM 10
printf '{"kind": "VSwitchNodeState", "version": 1, "node": "restart-1", "ports": [{"spec": ' >"$STATE/state.json"
start_switch vswitch3 || fail "switch starts with a damaged state file" "$(bg_log vswitch3)"
assert_contains "a damaged state file is reported, and the switch starts clean" "$(cat "$(bg_log vswitch3)")" "starting clean"
if [[ -e "$STATE/state.json.rejected" ]]; then pass "the damaged state file is kept aside (state.json.rejected)"; else fail "rejected state file: $(ls "$STATE")"; fi
bg_stop vswitch3 TERM 10
finish
