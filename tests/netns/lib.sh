# shellcheck shell=bash
#
# Shared helpers for the network-namespace system tests and the end-to-end
# benchmarks.  Source it from a script that runs with `set -euo pipefail`:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# What it gives:
#   * a cleanup stack (`cleanup CMD ARGS...`) unwound in reverse order by an
#     EXIT trap, also on failure or on SIGINT/SIGTERM; `cleanup_scope_begin` /
#     `cleanup_scope_end` unwind part of it early (e.g. between datapaths);
#   * namespaces and veths that register their own removal (`ns_add`,
#     `veth_add`, `link_to_ns`, `pod_veth`);
#   * background processes whose PIDs are recorded and which are ended, by
#     PID and only those, at exit (`start_bg`, `bg_pid`, `bg_wait`, `bg_stop`);
#   * TAP-style check reporting (`expect_ok`, `expect_fail`,
#     `assert_contains`, `pass`, `fail`) with a final tally printed as the
#     very last line, in the exact form `N passed, N failed`;
#   * `wait_for`, `require_root`, `require_cmd`, `vswitch_bin`.
#
# Nothing here touches anything it did not create.

if [[ -n "${_NETNS_LIB_LOADED:-}" ]]; then
    return 0
fi
_NETNS_LIB_LOADED=1

NETNS_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Repository root: this file lives in <repo>/tests/netns.
REPO="${REPO:-$(cd "$NETNS_LIB_DIR/../.." && pwd)}"
# scapy and the JSON parsing use the system interpreter, not a pyenv one.
PY="${PY:-/usr/bin/python3}"

# ---------------------------------------------------------------- logging

# log MSG...: diagnostic line on stderr, prefixed like a TAP comment.
log() {
    printf '# %s\n' "$*" >&2
}

# die MSG...: print an error and exit (the EXIT trap still cleans up).
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# indent_file FILE [MAX_LINES]: show a file as `#   ` comment lines (stderr).
indent_file() {
    local file="$1" max="${2:-60}"
    [[ -f "$file" ]] || return 0
    tail -n "$max" -- "$file" | sed 's/^/#   /' >&2
}

# ---------------------------------------------------------------- requirements

require_root() {
    if [[ "$(id -u)" -ne 0 ]]; then
        die "this script must run as root (it creates network namespaces and interfaces)"
    fi
}

# require_cmd CMD...: fail with a clear message naming every missing command.
require_cmd() {
    local c missing=()
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1 && [[ ! -x "$c" ]]; then
            missing+=("$c")
        fi
    done
    if ((${#missing[@]} > 0)); then
        die "required command(s) not found: ${missing[*]} (install them, e.g. with apt-get: iproute2 iputils-ping iperf3 tshark ethtool openvswitch-switch)"
    fi
}

# vswitch_bin: path of the switch binary ($VSWITCH, else the published build).
vswitch_bin() {
    printf '%s\n' "${VSWITCH:-$REPO/out/vswitch/vswitch}"
}

# ---------------------------------------------------------------- cleanup stack

_CLEANUP_STACK=()

# cleanup CMD ARGS...: push a command; the EXIT trap runs the stack in reverse.
cleanup() {
    local quoted
    printf -v quoted '%q ' "$@"
    _CLEANUP_STACK+=("$quoted")
}

# cleanup_scope_begin: print the current depth of the cleanup stack.
cleanup_scope_begin() {
    printf '%s\n' "${#_CLEANUP_STACK[@]}"
}

# cleanup_scope_end DEPTH: run (in reverse) and pop everything pushed since
# cleanup_scope_begin printed DEPTH.
cleanup_scope_end() {
    local depth="$1" i
    for ((i = ${#_CLEANUP_STACK[@]} - 1; i >= depth; i--)); do
        _run_cleanup_entry "${_CLEANUP_STACK[i]}"
        unset '_CLEANUP_STACK[i]'
    done
    _CLEANUP_STACK=("${_CLEANUP_STACK[@]}")
}

_run_cleanup_entry() {
    # Errors in cleanup must never stop the unwinding.
    if [[ -n "${NETNS_DEBUG:-}" ]]; then
        log "cleanup: $1"
        eval "$1" || true
    else
        eval "$1" >/dev/null 2>&1 || true
    fi
}

_run_cleanup_all() {
    local i
    for ((i = ${#_CLEANUP_STACK[@]} - 1; i >= 0; i--)); do
        _run_cleanup_entry "${_CLEANUP_STACK[i]}"
    done
    _CLEANUP_STACK=()
}

# ---------------------------------------------------------------- checks / tally

TESTS_PASSED=0
TESTS_FAILED=0
_TALLY_ENABLED=0

pass() {
    _TALLY_ENABLED=1
    TESTS_PASSED=$((TESTS_PASSED + 1))
    printf 'ok - %s\n' "$1"
}

# fail DESC [DETAIL_FILE]: record a failure, showing DETAIL_FILE's tail.
fail() {
    _TALLY_ENABLED=1
    TESTS_FAILED=$((TESTS_FAILED + 1))
    printf 'not ok - %s\n' "$1"
    if [[ -n "${2:-}" ]]; then
        indent_file "$2" 30
    fi
}

_check_out() {
    printf '%s/check-%s.out\n' "${NETNS_WORKDIR:-/tmp}" "$$"
}

# expect_ok DESC CMD ARGS...: pass when CMD exits 0; on failure show its output.
expect_ok() {
    local desc="$1" out rc=0
    shift
    out="$(_check_out)"
    "$@" >"$out" 2>&1 || rc=$?
    if ((rc == 0)); then
        pass "$desc"
    else
        fail "$desc (exit $rc)" "$out"
    fi
    rm -f -- "$out"
    return 0
}

# expect_fail DESC CMD ARGS...: pass when CMD exits non-zero.
expect_fail() {
    local desc="$1" out rc=0
    shift
    out="$(_check_out)"
    "$@" >"$out" 2>&1 || rc=$?
    if ((rc != 0)); then
        pass "$desc"
    else
        fail "$desc (unexpectedly succeeded)" "$out"
    fi
    rm -f -- "$out"
    return 0
}

# assert_contains DESC HAYSTACK NEEDLE: pass when NEEDLE is a substring.
assert_contains() {
    local desc="$1" haystack="$2" needle="$3" out
    if [[ "$haystack" == *"$needle"* ]]; then
        pass "$desc"
    else
        out="$(_check_out)"
        printf 'expected to find: %s\nin:\n%s\n' "$needle" "$haystack" >"$out"
        fail "$desc" "$out"
        rm -f -- "$out"
    fi
    return 0
}

# finish: end the script; the EXIT trap cleans up, then prints the tally as
# the last line.  Exit status is 1 if any check failed.
finish() {
    _TALLY_ENABLED=1
    if ((TESTS_FAILED > 0)); then
        exit 1
    fi
    exit 0
}

# ---------------------------------------------------------------- exit trap

_on_exit() {
    local rc=$?
    set +e
    trap - EXIT
    # A second Ctrl-C must not cut the cleanup short.
    trap '' INT TERM HUP
    _run_cleanup_all
    if ((_TALLY_ENABLED)); then
        if ((rc != 0 && TESTS_FAILED == 0)); then
            # Aborted before reporting any failure: make that visible.
            printf 'not ok - script aborted with status %d\n' "$rc"
            TESTS_FAILED=$((TESTS_FAILED + 1))
        fi
        printf '%d passed, %d failed\n' "$TESTS_PASSED" "$TESTS_FAILED"
        if ((TESTS_FAILED > 0 && rc == 0)); then
            rc=1
        fi
    fi
    exit "$rc"
}
trap _on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- work dir

# make_workdir PREFIX: create a private temp dir /tmp/PREFIX.XXXXXX (removed
# at exit) and set NETNS_WORKDIR to it.  Call it directly, not in $(...), or
# the removal is registered in a subshell and lost.
NETNS_WORKDIR=""
make_workdir() {
    NETNS_WORKDIR="$(mktemp -d "/tmp/${1:-netns}.XXXXXX")"
    chmod 755 "$NETNS_WORKDIR"
    cleanup rm -rf -- "$NETNS_WORKDIR"
}

# ---------------------------------------------------------------- waiting

# wait_for SECONDS CMD ARGS...: poll CMD every 0.2 s until it exits 0.
# Returns 1 if it did not within SECONDS.
wait_for() {
    local secs="$1" deadline
    shift
    deadline=$((SECONDS + secs))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------- background processes

declare -A _BG_PIDS=()
declare -A _BG_LOGS=()
BG_PID=""

# pid_alive PID: true while PID exists and is not a zombie.
pid_alive() {
    local pid="$1" stat
    [[ -r "/proc/$pid/stat" ]] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != "Z" ]]
}

# start_bg NAME CMD ARGS...: run CMD in the background with stdout+stderr in
# $NETNS_WORKDIR/NAME.log; record its PID (BG_PID, bg_pid NAME) and make the
# EXIT trap end exactly that PID.
start_bg() {
    local name="$1" logf
    shift
    logf="${NETNS_WORKDIR:-/tmp}/$name.log"
    "$@" >"$logf" 2>&1 </dev/null &
    BG_PID=$!
    _BG_PIDS[$name]=$BG_PID
    _BG_LOGS[$name]=$logf
    cleanup bg_stop "$name"
}

bg_pid() {
    printf '%s\n' "${_BG_PIDS[$1]}"
}

bg_log() {
    printf '%s\n' "${_BG_LOGS[$1]}"
}

# bg_wait NAME SECONDS: wait for the process to exit; return its exit status,
# or 124 if it is still running after SECONDS.
bg_wait() {
    local name="$1" secs="$2" pid deadline rc=0
    pid="${_BG_PIDS[$name]:-}"
    [[ -n "$pid" ]] || return 127
    deadline=$((SECONDS + secs))
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            return 124
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

# bg_stop NAME [SIGNAL] [GRACE_SECONDS]: send SIGNAL (default TERM) to the
# recorded PID, wait up to GRACE seconds (default 5), then SIGKILL it.
bg_stop() {
    local name="$1" sig="${2:-TERM}" grace="${3:-5}" pid
    pid="${_BG_PIDS[$name]:-}"
    [[ -n "$pid" ]] || return 0
    if pid_alive "$pid"; then
        kill -s "$sig" "$pid" 2>/dev/null || true
        if ! bg_wait "$name" "$grace"; then
            if pid_alive "$pid"; then
                kill -s KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    wait "$pid" 2>/dev/null || true
    return 0
}

# ---------------------------------------------------------------- namespaces and links

# in_ns NS CMD ARGS...: run CMD inside namespace NS.
in_ns() {
    local ns="$1"
    shift
    ip netns exec "$ns" "$@"
}

# ns_add NAME: create a namespace, bring lo up, register its removal.
ns_add() {
    local ns="$1"
    if ip netns list | awk '{print $1}' | grep -qxF -- "$ns"; then
        die "namespace $ns already exists (left over from an earlier run? remove it with: ip netns del $ns)"
    fi
    ip netns add "$ns"
    cleanup ip netns del "$ns"
    in_ns "$ns" ip link set lo up
}

# link_exists IF [NS]
link_exists() {
    if [[ -n "${2:-}" ]]; then
        ip -n "$2" link show dev "$1" >/dev/null 2>&1
    else
        ip link show dev "$1" >/dev/null 2>&1
    fi
}

# del_link_if_exists IF: delete IF from the root namespace if it is there.
del_link_if_exists() {
    if link_exists "$1"; then
        ip link del dev "$1"
    fi
}

# veth_add A B: create a veth pair A<->B in the root namespace and register
# removal of whichever end is still in the root namespace at exit (moving an
# end into a namespace we delete removes the pair anyway).
veth_add() {
    local a="$1" b="$2"
    if link_exists "$a" || link_exists "$b"; then
        die "interface $a or $b already exists (left over from an earlier run?)"
    fi
    ip link add "$a" type veth peer name "$b"
    cleanup del_link_if_exists "$b"
    cleanup del_link_if_exists "$a"
}

# link_to_ns IF NS [NEWNAME]: move IF into NS, optionally renaming it.
link_to_ns() {
    local ifc="$1" ns="$2" new="${3:-}"
    ip link set dev "$ifc" netns "$ns"
    if [[ -n "$new" && "$new" != "$ifc" ]]; then
        in_ns "$ns" ip link set dev "$ifc" name "$new"
    fi
}

# pod_veth NS HOST_IF PEER_TMP ADDR/PLEN [MTU] [POD_IF]: veth HOST_IF (root ns,
# up) <-> PEER_TMP, moved into NS as POD_IF (default eth0) with ADDR, up.
pod_veth() {
    local ns="$1" host="$2" peer="$3" addr="$4" mtu="${5:-1500}" podif="${6:-eth0}"
    veth_add "$host" "$peer"
    ip link set dev "$host" mtu "$mtu"
    link_to_ns "$peer" "$ns" "$podif"
    in_ns "$ns" ip link set dev "$podif" mtu "$mtu"
    in_ns "$ns" ip addr add "$addr" dev "$podif"
    in_ns "$ns" ip link set dev "$podif" up
    ip link set dev "$host" up
}

# offloads_off IF [NS]: turn off checksum/segmentation offloads and GRO on IF
# (one feature at a time: a device may refuse some, e.g. a TAP's fixed ones).
# Prints the features that could not be turned off, if any.
offloads_off() {
    local ifc="$1" ns="${2:-}" f refused=()
    local -a pre=()
    if [[ -n "$ns" ]]; then
        pre=(ip netns exec "$ns")
    fi
    for f in tx tso gso gro; do
        if ! "${pre[@]}" ethtool -K "$ifc" "$f" off >/dev/null 2>&1; then
            refused+=("$f")
        fi
    done
    # Verify: anything still "on" that is not "[fixed]" is worth a note.
    if ((${#refused[@]} > 0)); then
        log "ethtool -K $ifc${ns:+ (in $ns)}: could not turn off: ${refused[*]}"
    fi
    return 0
}

# quiet_ns NS: IPv6 off in NS, so no router solicitations or DAD frames show up in captures and counters.
quiet_ns() {
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
    in_ns "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 || true
}

# --- a two-or-more-node underlay (198.18.0.0/15 addresses) shared by the overlay, Services and workers
# tests and the overlay bench. The caller defines UL_NS, UL_IF, node_ns N and ul_ip N.

# underlay_bridge BRIDGE: the underlay namespace $UL_NS with the bridge BRIDGE in it, up.
underlay_bridge() {
    ns_add "$UL_NS"
    quiet_ns "$UL_NS"
    in_ns "$UL_NS" ip link add "$1" type bridge
    in_ns "$UL_NS" ip link set "$1" up
}

# underlay_node N PREFIX BRIDGE [MTU]: node N's namespace $(node_ns N), joined to BRIDGE by the veth
# PREFIX-ulN-b / PREFIX-ulN-n (named pN in $UL_NS and $UL_IF in the node), with $(ul_ip N)/24 on $UL_IF.
underlay_node() {
    local n="$1" prefix="$2" br="$3" mtu="${4:-}" ns ul_if="${UL_IF:?underlay_node needs UL_IF}"
    ns="$(node_ns "$n")"
    ns_add "$ns"
    quiet_ns "$ns"
    veth_add "$prefix-ul$n-b" "$prefix-ul$n-n"
    link_to_ns "$prefix-ul$n-b" "$UL_NS" "p$n"
    link_to_ns "$prefix-ul$n-n" "$ns" "$ul_if"
    if [[ -n "$mtu" ]]; then
        in_ns "$UL_NS" ip link set "p$n" mtu "$mtu"
        in_ns "$ns" ip link set "$ul_if" mtu "$mtu"
    fi
    in_ns "$UL_NS" ip link set "p$n" master "$br" up
    in_ns "$ns" ip link set "$ul_if" up
    in_ns "$ns" ip addr add "$(ul_ip "$n")/24" dev "$ul_if"
}

# overlay_peers_yaml N NODE...: the overlay.peers entries of node N's config: every other NODE M as node-M at
# $(ul_ip M) with pod CIDR 10.244.M.0/24.
overlay_peers_yaml() {
    local n="$1" m
    shift
    for m in "$@"; do
        [[ "$m" != "$n" ]] || continue
        printf '    - name: node-%s\n      address: %s\n      podCIDR: 10.244.%s.0/24\n' "$m" "$(ul_ip "$m")" "$m"
    done
}

# --- pods named by key across nodes (the Services and workers tests). The caller defines the arrays POD_IP and POD_NODE
# (key -> address, node number), PODS (the keys) and pod_ns KEY.

# pod_mac KEY: the fixed MAC of a pod: 02:00:0a:f4 and the last two bytes of its address.
pod_mac() {
    local o3 o4
    IFS=. read -r _ _ o3 o4 <<<"${POD_IP[$1]}"
    printf '02:00:0a:f4:%02x:%02x\n' "$o3" "$o4"
}

# endpoints_yaml KEY...: EndpointSlice endpoints (ready, with their node) for the named pods.
endpoints_yaml() {
    local k
    for k in "$@"; do
        printf '  - addresses: ["%s"]\n    conditions: {ready: true}\n    nodeName: node-%s\n' "${POD_IP[$k]}" "${POD_NODE[$k]}"
    done
}

# tap_ports_yaml N PREFIX [FIELD]: the ports entries of node N's config: a TAP PREFIX<N>-<key without "nN-"> for each
# of its pods, moved into the pod's namespace with its address and MAC; FIELD (like "txQueueLength: 4000") is added
# to every entry.
tap_ports_yaml() {
    local n="$1" prefix="$2" field="${3:-}" k
    for k in "${PODS[@]}"; do
        [[ "${POD_NODE[$k]}" == "$n" ]] || continue
        printf '  - name: %s\n    type: tap\n    interface: %s%s-%s\n    namespace: %s\n    address: %s/24\n    mac: "%s"\n' \
            "$k" "$prefix" "$n" "${k#n?-}" "$(pod_ns "$k")" "${POD_IP[$k]}" "$(pod_mac "$k")"
        if [[ -n "$field" ]]; then printf '    %s\n' "$field"; fi
    done
}

# mac_of IF [NS]: print the MAC address of IF, lower case.
mac_of() {
    local out
    if [[ -n "${2:-}" ]]; then
        out="$(ip -n "$2" -o link show dev "$1")"
    else
        out="$(ip -o link show dev "$1")"
    fi
    sed -n 's/.*link\/ether \([0-9a-fA-F:]\{17\}\).*/\1/p' <<<"$out" | tr 'A-F' 'a-f'
}

# tcp_listening NS PORT: true when something listens on TCP PORT in NS.
tcp_listening() {
    in_ns "$1" ss -Hltn "sport = :$2" | grep -q .
}

# ---------------------------------------------------------------- end-to-end benchmarks

# Every benchmark script holds this lock for its whole run: one benchmark at a time on this machine.
LOCK_FILE=/tmp/vswitch-bench.lock
LOCK_WAIT=900

# lock_held_by_ancestor: true when a parent process (e.g. `flock FILE cmd`)
# already holds the lock, so wrapping this script in flock does not deadlock.
lock_held_by_ancestor() {
    local ino pid holders p
    ino="$(stat -c '%i' "$LOCK_FILE" 2>/dev/null)" || return 1
    holders="$(awk -v ino="$ino" '$2 == "FLOCK" { split($6, a, ":"); if (a[3] == ino) print $5 }' /proc/locks 2>/dev/null)"
    [[ -n "$holders" ]] || return 1
    p=$PPID
    while [[ -n "$p" && "$p" != 0 && "$p" != 1 ]]; do
        for pid in $holders; do
            [[ "$pid" != "$p" ]] || return 0
        done
        p="$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)" || return 1
    done
    return 1
}

# bench_lock: take $LOCK_FILE for the rest of the script (waiting up to $LOCK_WAIT s), unless a parent already holds it.
# busy_pct SECONDS: the machine's CPU use (%, rounded) over SECONDS, from the time the CPUs spent in their cpuidle
# states, or from /proc/stat without cpuidle.
busy_pct() {
    "$PY" - "$1" <<'EOF'
import glob, os, sys, time
states = glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpuidle/state*/time")
cpus = len(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpuidle")) or os.cpu_count()
def sample():
    if states:
        return time.monotonic() * 1e6 * cpus, sum(int(open(f).read()) for f in states)
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]
t0, i0 = sample(); time.sleep(float(sys.argv[1])); t1, i1 = sample()
print("%.0f" % max(0.0, 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))))
EOF
}

# check_idle: CPU use over one second into BUSY_AT_START (the load average lags by a minute and stays high after a
# previous run); warns when above 10%, since results would be noisy.
check_idle() {
    BUSY_AT_START="$(busy_pct 1)"
    if ((BUSY_AT_START > 10)); then
        log "WARNING: machine not idle (${BUSY_AT_START}% CPU busy before starting): results will be noisy"
    fi
}

# wait_idle [SECONDS]: wait (up to SECONDS, default 30) until the machine is idle (under 10 % busy over half a
# second), e.g. while the kernel frees a torn-down namespace's sockets and connections in the background, so the next
# measurement does not share the CPUs with it. Logs how long it waited when that was over a second.
wait_idle() {
    local start=$SECONDS
    while (($(busy_pct 0.5) >= 10 && SECONDS - start < ${1:-30})); do :; done
    if ((SECONDS - start > 1)); then log "waited $((SECONDS - start)) s for the machine to be idle"; fi
}

bench_lock() {
    touch "$LOCK_FILE"
    if lock_held_by_ancestor; then
        log "$LOCK_FILE is held by a parent process: running under it"
    else
        exec 9>>"$LOCK_FILE"
        if ! flock -n 9; then
            log "waiting up to ${LOCK_WAIT}s for $LOCK_FILE (another benchmark is running)"
            flock -w "$LOCK_WAIT" 9 || die "could not get $LOCK_FILE within ${LOCK_WAIT}s"
        fi
    fi
}

# bench_check_selection: check the common benchmark options the caller parsed ($RUNS at most 9; $ONLY a comma list
# of names from $ALL_DATAPATHS) and set SELECTED to that list.
bench_check_selection() {
    local dp
    ((RUNS <= 9)) || die "--runs is capped at 9 to keep the benchmark bounded"
    IFS=',' read -r -a SELECTED <<<"$ONLY"
    for dp in "${SELECTED[@]}"; do
        case ",$ALL_DATAPATHS," in
            *",$dp,"*) ;;
            *) die "unknown datapath '$dp' (choose from $ALL_DATAPATHS)" ;;
        esac
    done
}

# --- CPU profiles: the benches' --profile DIR (perf record of every CPU during a measurement)

PROFILE_DIR=""
PROFILE_ENV=()

# profile_enable DIR: profile from now on, into DIR (created). Sets PROFILE_ENV, the prefix a switch is started with:
# .NET then writes /tmp/perf-PID.map, from which perf names JIT-compiled code (with W^X on, that code runs from a
# memfd mapping perf cannot match to the map, so W^X is off while profiling).
profile_enable() {
    command -v perf >/dev/null 2>&1 || die "--profile needs perf (apt-get install linux-perf)"
    mkdir -p "$1" || die "--profile: cannot create $1"
    PROFILE_DIR="$(cd "$1" && pwd)"
    # shellcheck disable=SC2034 # used by the scripts that source this file
    PROFILE_ENV=(env DOTNET_PerfMapEnabled=3 DOTNET_EnableWriteXorExecute=0)
}

# profile_switch_started PID: remove the perf map of switch PID at cleanup.
profile_switch_started() {
    [[ -n "$PROFILE_DIR" ]] || return 0
    cleanup rm -f "/tmp/perf-$1.map"
}

# profile_start NAME SECS: record every CPU for SECS s, from 1 s from now (so a test's start is not in it), into
# PROFILE_DIR/NAME.perf.data. No-op without --profile.
profile_start() {
    [[ -n "$PROFILE_DIR" ]] || return 0
    # shellcheck disable=SC2016 # $1 and $2 are the inner bash's arguments
    start_bg "perf-$1" bash -c 'sleep 1 && exec perf record -a -g -q -o "$1" -- sleep "$2"' _ \
        "$PROFILE_DIR/$1.perf.data" "$2"
    _PROFILE_SECS[$1]="$2"
}
declare -A _PROFILE_SECS=()

# profile_report NAME NOTE: wait for profile_start's recording and write PROFILE_DIR/NAME.txt: where each CPU's time
# went, by CPU and command, then for each CPU by command and binary and its top symbols (kernel, the switch's JIT code,
# libraries). Percentages are of that CPU's samples (idle time is `swapper`). Call it while the switch still runs, so
# its perf map is there. No-op without --profile.
profile_report() {
    [[ -n "$PROFILE_DIR" ]] || return 0
    local name="$1" note="$2" data="$PROFILE_DIR/$1.perf.data" txt="$PROFILE_DIR/$1.txt" cpu
    if ! bg_wait "perf-$name" $((${_PROFILE_SECS[$name]} + 20)) || [[ ! -s "$data" ]]; then
        log "profile $name: perf record failed; its log:"
        indent_file "$(bg_log "perf-$name")"
        return 0
    fi
    {
        printf '# %s: perf record -a -g, %s s from 1 s into the test; %s\n' "$name" "${_PROFILE_SECS[$name]}" "$note"
        printf '\n## Samples by CPU and command (share of all samples)\n'
        _profile_table "$data" --sort cpu,comm --percent-limit 0.5
        for cpu in $(seq 0 $(($(nproc) - 1))); do
            printf '\n## CPU %s by command and binary (share of this CPU)\n' "$cpu"
            _profile_table "$data" --cpu "$cpu" --sort comm,dso --percent-limit 0.3
            printf '\n## CPU %s top symbols (share of this CPU)\n' "$cpu"
            _profile_table "$data" --cpu "$cpu" --sort comm,dso,sym --percent-limit 0.3 | head -n 60
        done
    } >"$txt"
    log "profile $name: $txt"
}

_profile_table() {
    local data="$1"
    shift
    perf report -i "$data" --stdio --no-children -g none "$@" 2>/dev/null | grep -v -e '^#' -e '^$'
}

# --- the kernel's own overlay, as flannel's vxlan backend + the bridge CNI plugin build it
# (shared by tests/netns/overlay-system.sh and perf/e2e/overlay-bench.sh: one definition of the reference).

# flannel_node NS N VTEP_MAC VNI PORT LOCAL_IP UNDERLAY_IF MTU GATEWAY_IP: flannel.1 (10.244.N.0/32) and cni0 (GATEWAY/24).
flannel_node() {
    local ns="$1" n="$2" mac="$3" vni="$4" port="$5" local_ip="$6" ul_if="$7" mtu="$8" gw="$9"
    in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$ns" ip link add flannel.1 address "$mac" type vxlan id "$vni" \
        dstport "$port" local "$local_ip" dev "$ul_if" nolearning
    in_ns "$ns" ip link set flannel.1 mtu "$mtu"
    in_ns "$ns" ip addr add "10.244.$n.0/32" dev flannel.1
    in_ns "$ns" ip link set flannel.1 up
    in_ns "$ns" ip link add cni0 type bridge
    in_ns "$ns" ip addr add "$gw/24" dev cni0
    in_ns "$ns" ip link set cni0 up
}

# flannel_peer NS PEER_N PEER_CIDR PEER_VTEP_MAC PEER_UNDERLAY_IP: route, neighbor and FDB entry for one other node.
flannel_peer() {
    local ns="$1" m="$2" cidr="$3" mac="$4" ip="$5"
    in_ns "$ns" ip route add "$cidr" via "10.244.$m.0" dev flannel.1 onlink
    in_ns "$ns" ip neigh replace "10.244.$m.0" lladdr "$mac" dev flannel.1 nud permanent
    in_ns "$ns" bridge fdb append "$mac" dev flannel.1 dst "$ip"
}
