#!/usr/bin/env bash
#
# End-to-end same-node L2 benchmark: two pod namespaces, one datapath between
# them at a time, same measurements on each:
#
#   bridge            Linux bridge vb-br, veth pair per pod
#   ovs               Open vSwitch userspace datapath (datapath_type=netdev) on
#                     the host ends of the same veth pairs (OVS reads them with
#                     AF_PACKET); private ovsdb-server/ovs-vswitchd started and
#                     stopped by this script
#   vswitch           VSwitch with two TAP ports (the switch creates the TAPs
#                     and moves them into the pods as eth0), as shipped
#                     (adaptive polling, datapath.adaptivePollMicros 200)
#   vswitch-afpacket  VSwitch with two af-packet ports on the veth host ends,
#                     exactly like OVS
#   vswitch-poll      VSwitch with TAP ports in polling mode: the worker keeps
#                     polling for --poll-us (default 100000 µs) after traffic
#                     instead of sleeping in epoll (datapath.busyPollMicros)
#   vswitch-rps       VSwitch with TAP ports and datapath.podRxCpus set to the
#                     load CPU (0): the pods' kernels take in what the switch
#                     writes on CPU 0 (receive packet steering), not in the
#                     switch's writes on CPU 1
#   c-tpacket-v3      the reference point of issue 5's UDP target: a minimal C
#                     forwarder (perf/e2e/ref/tpacket-v3-fwd.c, built here with
#                     gcc) on the same veth host ends, TPACKET_V3 receive rings
#                     and sendmmsg, no switching logic at all
#
# Fairness: every datapath gets FRESH namespaces vb-pa (10.244.1.2/24) and
# vb-pb (10.244.1.3/24), MTU 1500, offloads (tx, tso, gso, gro) off on the pod
# interface and on the veth host ends, and the namespaces are deleted before
# the next datapath is set up.  iperf3 client and server run on CPU 0, the
# switch process (all threads of ovs-vswitchd or vswitch) on CPU 1.  With the
# Linux bridge there is no switch process: forwarding runs in the sender's
# softirq context, i.e. on CPU 0 as well.
#
# Measurements (each RUNS times, median reported), after a warm-up per
# datapath (iperf3 TCP and UDP64, 3 s each, not measured):
#   TCP    iperf3 -t 5, receiver Gb/s
#   UDP64  iperf3 -u -l 18 -b 0 -t 5 (18 B payload + 8 UDP + 20 IP + 14 Eth
#          = 60 B, a 64-byte frame with FCS), receiver packets/s and loss %
#   UDP64 rate search (unless --no-udp-search): the highest offered rate of
#          64-byte frames that the receiving iperf3 gets with < 1% loss.
#          Each probe is iperf3 -u -l 18 -b RATE*144 (iperf3's -b counts
#          payload bits: 18 B * 8 per packet) --pacing-timer 100 -t 3
#          (defaults; see --pacing-us, --probe-secs), bounded by timeout.  The
#          first probe is at the app rate just measured at -b 0; the search
#          steps up (x1.5) or down (x0.5) until a pass and a fail bracket the
#          answer, then bisects; at most 8 probes (--max-probes), stop at 2%
#          resolution.  Reported: the rate received by iperf3 in the passing
#          probe with the highest offered rate.  Each probe also logs the
#          frames that reached the receiving pod's interface and the
#          receiver's UDP RcvbufErrors, to place the loss.
#   ping   ping -c 200 -i 0.01, median and p99 RTT
#   UDP RR udp-rr.py: 2000 back-to-back 64-byte UDP request/response
#          transactions (netperf UDP_RR style), median and p99 latency
#   CPU    the switch process's CPU time (all threads, /proc/PID/task/*/
#          schedstat) per frame delivered during the UDP64 saturation test, in
#          µs; none for the bridge, which forwards in the sender's softirq
#
# Usage: perf/e2e/l2-bench.sh [--runs N] [--only LIST] [--out FILE.md]
#                             [--no-udp-search] [--probe-secs N]
#                             [--max-probes N] [--pacing-us N] [--offloads]
#                             [--poll-us N] [--profile DIR]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../tests/netns/lib.sh
. "$SCRIPT_DIR/../../tests/netns/lib.sh"

ALL_DATAPATHS="bridge,ovs,vswitch,vswitch-afpacket,vswitch-poll,vswitch-rps,c-tpacket-v3"
RUNS=3
ONLY="$ALL_DATAPATHS"
OUT=""
DURATION=5
WARMUP=3
PING_COUNT=200
RR_COUNT=2000
RR_PORT=5202
POLL_US=100000         # vswitch-poll: datapath.busyPollMicros
# UDP64 rate search (see the header).
UDP_SEARCH=1
PROBE_SECS=3
MAX_PROBES=8
PACING_US=100
OFFLOADS=0             # --offloads: pods keep TSO/checksum offload, VSwitch's ports carry super-frames
PROFILE_ARG=""         # --profile DIR: perf profiles of both CPUs during the UDP64 saturation tests
LOSS_LIMIT_PCT=1       # a probe passes when iperf3's loss is below this
SEARCH_SEED_PPS=50000  # first probe when no -b 0 app rate is at hand
SEARCH_MIN_PPS=1000    # never probe below this
SEARCH_MAX_PPS=3000000 # never offer more than this

NS_A=vb-pa
NS_B=vb-pb
IP_A=10.244.1.2
IP_B=10.244.1.3
PLEN=24
MTU=1500
HOST_A=vb-pa-h
HOST_B=vb-pb-h
PEER_A=vb-pa-p
PEER_B=vb-pb-p
IPERF_PORT=5201

usage() {
    cat <<EOF
Usage: $0 [--runs N] [--only LIST] [--out FILE] [--no-udp-search]
          [--probe-secs N] [--max-probes N] [--pacing-us N] [--offloads]
          [--poll-us N] [--profile DIR]

Same-node L2 benchmark of the Linux bridge, Open vSwitch netdev (userspace)
and VSwitch between two pod namespaces ($NS_A $IP_A, $NS_B $IP_B).

  --runs N     repetitions per measurement, the median is reported (default 3)
  --only LIST  comma-separated subset of: $ALL_DATAPATHS
               (default: all; VSwitch datapaths are skipped with a note when
               the binary is missing: set VSWITCH=/path or build to
               out/vswitch/vswitch)
  --out FILE   also write the result table as Markdown to FILE, and the
               per-run results to FILE.tsv (FILE without .md)
  --no-udp-search
               skip the UDP64 rate search (the highest offered rate with
               < $LOSS_LIMIT_PCT% loss at the receiving iperf3); quick runs
  --probe-secs N
               duration of each rate-search probe, 1..10 s (default $PROBE_SECS)
  --max-probes N
               probes per rate search, 2..8 (default $MAX_PROBES)
  --pacing-us N
               iperf3 --pacing-timer for the probes, 10..1000 us (default
               $PACING_US; iperf3's own default, 1000, sends bursts of
               rate/1000 packets every millisecond)
  --offloads   pods keep their offloads (TSO, checksum offload; the default
               is all off), and VSwitch's TAP and af-packet ports negotiate
               them (offloads: true: IFF_VNET_HDR, PACKET_VNET_HDR) so TCP
               crosses in 64 KB super-frames.  ovs and c-tpacket-v3 are
               skipped in this mode (neither takes super-frames from a veth)
  --poll-us N  how long vswitch-poll keeps polling after traffic before it
               sleeps, 1..1000000 µs (default $POLL_US; datapath.busyPollMicros)
  --profile DIR
               record a CPU profile (perf record -a -g) of both CPUs during
               each UDP64 saturation test, with and without the receiver,
               and write DIR/DP-udp[sink]-RUN.txt: where each CPU's time
               went (by CPU and command, then by binary and the top symbols
               of each CPU).
               The switch runs with DOTNET_PerfMapEnabled=3 so its JIT code
               has names.  DIR keeps the perf.data files.  Needs perf
               (linux-perf)
  --help       this text

Needs root, iproute2, iperf3, ping, ethtool, nft, taskset, timeout, /usr/bin/python3,
for 'ovs' the openvswitch-switch binaries (no running OVS service needed), and
for 'c-tpacket-v3' gcc with the C library headers (libc6-dev).
EOF
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
        --out)
            [[ $# -ge 2 ]] || die "--out needs a file name"
            OUT="$2"
            shift 2
            ;;
        --no-udp-search)
            UDP_SEARCH=0
            shift
            ;;
        --probe-secs)
            if ! [[ $# -ge 2 && "$2" =~ ^([1-9]|10)$ ]]; then
                die "--probe-secs needs an integer 1..10"
            fi
            PROBE_SECS="$2"
            shift 2
            ;;
        --max-probes)
            if ! [[ $# -ge 2 && "$2" =~ ^[2-8]$ ]]; then
                die "--max-probes needs an integer 2..8"
            fi
            MAX_PROBES="$2"
            shift 2
            ;;
        --pacing-us)
            if ! [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]{1,3}$ ]] || (($2 > 1000)); then
                die "--pacing-us needs an integer 10..1000"
            fi
            PACING_US="$2"
            shift 2
            ;;
        --offloads)
            OFFLOADS=1
            shift
            ;;
        --poll-us)
            if ! [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]{0,6}$ ]] || (($2 > 1000000)); then
                die "--poll-us needs an integer 1..1000000"
            fi
            POLL_US="$2"
            shift 2
            ;;
        --profile)
            [[ $# -ge 2 && -n "$2" ]] || die "--profile needs a directory"
            PROFILE_ARG="$2"
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
require_cmd ip iperf3 ping ethtool taskset timeout ss flock nft "$PY"
[[ -z "$PROFILE_ARG" ]] || profile_enable "$PROFILE_ARG"
for dp in "${SELECTED[@]}"; do
    if [[ "$dp" == ovs ]]; then
        require_cmd ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl
    fi
    if [[ "$dp" == c-tpacket-v3 ]]; then
        require_cmd gcc
    fi
done

# Only one benchmark at a time on this machine.
bench_lock

make_workdir vb-bench
WORK="$NETNS_WORKDIR"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

NCPU="$(nproc)"
if ((NCPU >= 2)); then
    LOAD_CPU=0
    SWITCH_CPU=1
    PIN_NOTE="iperf3 client+server pinned to CPU $LOAD_CPU; switch process (all threads) pinned to CPU $SWITCH_CPU; Linux bridge forwards in softirq on the sender's CPU ($LOAD_CPU)"
else
    LOAD_CPU=""
    SWITCH_CPU=""
    PIN_NOTE="only $NCPU CPU: no pinning"
fi

# load CMD...: run a load generator pinned to the load CPU.
load() {
    if [[ -n "$LOAD_CPU" ]]; then
        taskset -c "$LOAD_CPU" "$@"
    else
        "$@"
    fi
}

# pin_switch PID: pin every thread of PID to the switch CPU.
pin_switch() {
    local pid="$1"
    SWITCH_PID="$pid"
    if [[ -n "$SWITCH_CPU" ]]; then
        if taskset -a -p -c "$SWITCH_CPU" "$pid" >/dev/null; then
            log "pinned PID $pid (all threads) to CPU $SWITCH_CPU"
        else
            log "warning: could not pin PID $pid to CPU $SWITCH_CPU"
        fi
    fi
}

record() { # record DATAPATH METRIC VALUE
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"
}

# ---------------------------------------------------------------- pods

# Fresh namespaces with nothing but lo (the TAP datapath adds eth0 itself).
pods_empty() {
    ns_add "$NS_A"
    ns_add "$NS_B"
}

# Fresh namespaces with a veth pair each; host ends $HOST_A/$HOST_B stay in
# the root namespace, up, not attached to anything yet.
pods_veth() {
    pods_empty
    pod_veth "$NS_A" "$HOST_A" "$PEER_A" "$IP_A/$PLEN" "$MTU"
    pod_veth "$NS_B" "$HOST_B" "$PEER_B" "$IP_B/$PLEN" "$MTU"
    if ((!OFFLOADS)); then
        offloads_off "$HOST_A"
        offloads_off "$HOST_B"
    fi
}

# Pod offloads off unless --offloads; no IPv6 either way.
pods_offloads_off() {
    if ((!OFFLOADS)); then
        offloads_off eth0 "$NS_A"
        offloads_off eth0 "$NS_B"
    fi
    # No IPv6 chatter (router/neighbour solicitations) during measurements.
    in_ns "$NS_A" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
    in_ns "$NS_B" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
}

ping_ok() {
    in_ns "$NS_A" timeout 5 ping -c 1 -W 1 "$IP_B"
}

# ---------------------------------------------------------------- datapaths

setup_bridge() {
    pods_veth
    if link_exists vb-br; then
        die "vb-br already exists (left over?)"
    fi
    ip link add vb-br type bridge
    cleanup del_link_if_exists vb-br
    ip link set dev vb-br mtu "$MTU"
    ip link set dev "$HOST_A" master vb-br
    ip link set dev "$HOST_B" master vb-br
    ip link set dev vb-br up
    pods_offloads_off
}

OVS_DIR=""
ovs_vsctl() {
    ovs-vsctl --db="unix:$OVS_DIR/db.sock" --timeout=15 "$@"
}
ovs_appctl_vswitchd() {
    ovs-appctl -t "$OVS_DIR/ovs-vswitchd.ctl" --timeout=10 "$@"
}

setup_ovs() {
    pods_veth
    # Private OVS instance: own db, sockets, pidfiles and logs under a temp
    # dir; the env vars make every OVS tool default to those paths too.
    OVS_DIR="$(mktemp -d /tmp/vb-ovs.XXXXXX)"
    cleanup rm -rf -- "$OVS_DIR"
    export OVS_RUNDIR="$OVS_DIR" OVS_DBDIR="$OVS_DIR" OVS_LOGDIR="$OVS_DIR" \
        OVS_SYSCONFDIR="$OVS_DIR" OVS_PKGDATADIR=/usr/share/openvswitch
    ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema

    # Run both daemons in the foreground of a background job (no --detach),
    # so the PIDs we record are the daemons' own.
    start_bg ovsdb-server ovsdb-server "$OVS_DIR/conf.db" \
        --remote="punix:$OVS_DIR/db.sock" \
        --pidfile="$OVS_DIR/ovsdb-server.pid" \
        --unixctl="$OVS_DIR/ovsdb-server.ctl" \
        --log-file="$OVS_DIR/ovsdb-server.log" \
        --no-chdir -vconsole:emer -vfile:info
    if ! wait_for 10 test -S "$OVS_DIR/db.sock"; then
        indent_file "$(bg_log ovsdb-server)"
        die "ovsdb-server did not come up"
    fi
    ovs-vsctl --db="unix:$OVS_DIR/db.sock" --no-wait init

    start_bg ovs-vswitchd ovs-vswitchd "unix:$OVS_DIR/db.sock" \
        --pidfile="$OVS_DIR/ovs-vswitchd.pid" \
        --unixctl="$OVS_DIR/ovs-vswitchd.ctl" \
        --log-file="$OVS_DIR/ovs-vswitchd.log" \
        --no-chdir -vconsole:emer -vfile:info
    OVS_PID="$BG_PID"
    # Graceful stop first (runs before the kill registered by start_bg).
    cleanup ovs_appctl_vswitchd exit --cleanup
    if ! wait_for 15 test -S "$OVS_DIR/ovs-vswitchd.ctl"; then
        indent_file "$OVS_DIR/ovs-vswitchd.log"
        die "ovs-vswitchd did not come up"
    fi
    pin_switch "$OVS_PID"

    ovs_vsctl add-br vb-ovs -- set bridge vb-ovs datapath_type=netdev
    cleanup ovs_vsctl --if-exists del-br vb-ovs
    ovs_vsctl add-port vb-ovs "$HOST_A" -- add-port vb-ovs "$HOST_B"
    ip link set dev vb-ovs up 2>/dev/null || true
    pods_offloads_off
    log "OVS $(ovs-vswitchd --version | head -n1 | awk '{print $NF}'): bridge vb-ovs datapath_type=$(ovs_vsctl get bridge vb-ovs datapath_type) ports: $(ovs_vsctl list-ports vb-ovs | tr '\n' ' ')"
    log "OVS dpif: $(ovs_appctl_vswitchd dpif/show 2>/dev/null | tr '\n' ' ' | tr -s ' ')"
}

# The reference forwarder: compiled from source here, on the veth host ends like OVS and vswitch-afpacket.
setup_cfwd() {
    pods_veth
    if ! gcc -O2 -Wall -o "$WORK/tpacket-v3-fwd" "$SCRIPT_DIR/ref/tpacket-v3-fwd.c" 2>"$WORK/cfwd-build.txt"; then
        log "could not build perf/e2e/ref/tpacket-v3-fwd.c (gcc and libc6-dev needed):"
        indent_file "$WORK/cfwd-build.txt" 10
        return 1
    fi
    # Bounded like every load in this script: it stops by itself long after the longest measurement.
    start_bg cfwd "$WORK/tpacket-v3-fwd" "$HOST_A" "$HOST_B" --secs 3600
    sleep 0.3
    if ! pid_alive "$BG_PID"; then
        log "tpacket-v3-fwd did not start; its log:"
        indent_file "$(bg_log cfwd)"
        return 1
    fi
    pin_switch "$BG_PID"
    pods_offloads_off
}

# write_vswitch_config FILE tap|af-packet|poll|rps (poll: TAP ports, busy polling; rps: TAP ports, podRxCpus = the load
# CPU)
write_vswitch_config() {
    local file="$1" kind="$2"
    {
        printf 'node:\n  name: vb-node\n'
        printf 'control:\n  socket: %s/vswitch.sock\n' "$WORK"
        if [[ "$kind" == poll ]]; then
            printf 'datapath:\n  busyPollMicros: %s\n' "$POLL_US"
        fi
        if [[ "$kind" == rps ]]; then
            printf 'datapath:\n  podRxCpus: "%s"\n' "$LOAD_CPU"
        fi
        printf 'bridge:\n  macAgingSeconds: 300\n'
        printf 'ports:\n'
        if [[ "$kind" != af-packet ]]; then
            printf '  - name: pod-a\n    type: tap\n    interface: vb-tap-a\n    namespace: %s\n    ifName: eth0\n    address: %s/%s\n    mtu: %s\n    offloads: %s\n' \
                "$NS_A" "$IP_A" "$PLEN" "$MTU" "$SW_OFFLOADS"
            printf '  - name: pod-b\n    type: tap\n    interface: vb-tap-b\n    namespace: %s\n    ifName: eth0\n    address: %s/%s\n    mtu: %s\n    offloads: %s\n' \
                "$NS_B" "$IP_B" "$PLEN" "$MTU" "$SW_OFFLOADS"
        else
            printf '  - name: pod-a\n    type: af-packet\n    interface: %s\n    offloads: %s\n' "$HOST_A" "$SW_OFFLOADS"
            printf '  - name: pod-b\n    type: af-packet\n    interface: %s\n    offloads: %s\n' "$HOST_B" "$SW_OFFLOADS"
        fi
    } >"$file"
}

vswitch_ready() {
    "$(vswitch_bin)" ports --socket "$WORK/vswitch.sock"
}

pod_has_addr() { # pod_has_addr NS ADDR
    in_ns "$1" ip -o addr show dev eth0 | grep -qF " $2/"
}

# setup_vswitch tap|af-packet|poll
setup_vswitch() {
    local kind="$1" cfg="$WORK/vswitch-$1.yaml" pid deadline
    if [[ "$kind" != af-packet ]]; then
        pods_empty
    else
        pods_veth
    fi
    write_vswitch_config "$cfg" "$kind"
    start_bg "vswitch-$kind" "${PROFILE_ENV[@]}" "$(vswitch_bin)" run --config "$cfg"
    pid="$BG_PID"
    profile_switch_started "$pid"
    deadline=$((SECONDS + 20))
    until vswitch_ready >/dev/null 2>&1; do
        if ! pid_alive "$pid" || ((SECONDS >= deadline)); then
            log "vswitch did not become ready; its log:"
            indent_file "$(bg_log "vswitch-$kind")"
            return 1
        fi
        sleep 0.2
    done
    pin_switch "$pid"
    if [[ "$kind" != af-packet ]]; then
        if ! wait_for 10 pod_has_addr "$NS_A" "$IP_A" || ! wait_for 10 pod_has_addr "$NS_B" "$IP_B"; then
            log "TAP eth0 with the pod address did not appear in the pods"
            indent_file "$(bg_log "vswitch-$kind")"
            return 1
        fi
    fi
    pods_offloads_off
}

# ---------------------------------------------------------------- measurements

# iperf_run NAME SECS CLIENT_ARGS...: one iperf3 test of SECS seconds
# vb-pa -> vb-pb, JSON in $WORK/NAME.json.  The server serves exactly one test
# (-1) and is bounded in time, like the client.
iperf_run() {
    local name="$1" secs="$2" rc=0
    shift 2
    start_bg "srv-$name" timeout $((secs + 25)) ip netns exec "$NS_B" \
        taskset -c "${LOAD_CPU:-0}" iperf3 -s -1 -B "$IP_B" -p "$IPERF_PORT"
    if ! wait_for 5 tcp_listening "$NS_B" "$IPERF_PORT"; then
        log "iperf3 server did not start"
        indent_file "$(bg_log "srv-$name")"
        bg_stop "srv-$name"
        return 1
    fi
    in_ns "$NS_A" timeout $((secs + 15)) \
        taskset -c "${LOAD_CPU:-0}" iperf3 -c "$IP_B" -p "$IPERF_PORT" \
        -t "$secs" -J "$@" >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
    bg_wait "srv-$name" 10 || bg_stop "srv-$name"
    if ((rc != 0)); then
        log "iperf3 client failed (exit $rc)"
        indent_file "$WORK/$name.err" 5
        indent_file "$WORK/$name.json" 5
    fi
    return "$rc"
}

measure_tcp() { # measure_tcp DP RUN
    local name="$1-tcp-$2" gbps
    iperf_run "$name" "$DURATION" || return 1
    gbps="$("$PY" - "$WORK/$name.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
EOF
)" || return 1
    record "$1" tcp_gbps "$gbps"
    log "$1 run $2: TCP $gbps Gb/s"
}

# udp64_saturate NAME: one iperf3 -u -l 18 -b 0 test of DURATION s, pod A to pod B. Sets SAT_FWD, the frames the
# datapath delivered to pod B's interface (kpps: the datapath's own rate, apart from how the receiving iperf3, which
# shares CPU 0 with the sender, keeps up with its socket), and SAT_CPU, the switch's CPU per delivered frame (µs: its
# scheduler run time, all threads, over those frames; /proc/stat is not used, it misreports idle time on VMs like this
# one), "-" without a switch process. Returns iperf3's status.
udp64_saturate() {
    local rx0 rx1 cpu0 cpu1 rc=0
    rx0=$(in_ns "$NS_B" cat /sys/class/net/eth0/statistics/rx_packets)
    cpu0=$(switch_cpu_ns)
    profile_start "$1" $((DURATION - 2))
    iperf_run "$1" "$DURATION" -u -l 18 -b 0 || rc=$?
    profile_report "$1" "$PIN_NOTE"
    cpu1=$(switch_cpu_ns)
    rx1=$(in_ns "$NS_B" cat /sys/class/net/eth0/statistics/rx_packets)
    SAT_FWD=$("$PY" -c "print('%.1f' % (($rx1 - $rx0) / $DURATION / 1e3))")
    SAT_CPU="-"
    if [[ -n "$cpu0" && -n "$cpu1" ]]; then
        SAT_CPU=$("$PY" -c "print('%.2f' % (($cpu1 - $cpu0) / 1e3 / max(1, $rx1 - $rx0)))")
    fi
    return "$rc"
}

measure_udp64() { # measure_udp64 DP RUN
    local name="$1-udp-$2" line kpps loss
    udp64_saturate "$name" || return 1
    record "$1" udp64_fwd_kpps "$SAT_FWD"
    [[ "$SAT_CPU" == - ]] || record "$1" udp64_cpu_us "$SAT_CPU"
    line="$("$PY" - "$WORK/$name.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
s = d["end"]["sum"]
# Client-side summary of a UDP test carries the receiver's counts
# (packets sent, lost_packets as seen by the server).
sent = s["packets"]
lost = s["lost_packets"]
secs = s["seconds"]
print("%.1f %.2f" % ((sent - lost) / secs / 1e3, 100.0 * lost / sent if sent else 100.0))
EOF
)" || return 1
    read -r kpps loss <<<"$line"
    record "$1" udp64_kpps "$kpps"
    record "$1" udp64_loss "$loss"
    UDP_APP_PPS="$("$PY" -c "print(int($kpps * 1000))")"
    log "$1 run $2: UDP64 $kpps kpps received by iperf3 (loss $loss %), $SAT_FWD kpps delivered to the pod interface, switch CPU $SAT_CPU µs per delivered frame"
}

# measure_udp64_sink DP RUN: the UDP64 saturation test again, with the receiving application taken out: an nftables
# rule in the receiving pod drops the datagrams at prerouting, so CPU 0 runs the sender alone. The frames the
# datapath delivers to the pod's interface per second are then the most it can deliver to a receiver that costs the
# sending CPU nothing: what bounds the delivered rate once the receiver is gone. Only the 64-byte test datagrams
# (UDP length 8 + 18) are dropped: iperf3's own UDP handshake must still get through.
measure_udp64_sink() {
    local name="$1-udpsink-$2"
    if ! in_ns "$NS_B" nft -f - <<EOF
table inet vb_sink {
    chain pre {
        type filter hook prerouting priority -300; policy accept;
        udp dport $IPERF_PORT udp length 26 drop
    }
}
EOF
    then
        log "$1 run $2: could not add the nftables drop rule in $NS_B"
        return 1
    fi
    udp64_saturate "$name" || log "$1 run $2: iperf3 without a receiver failed"
    in_ns "$NS_B" nft delete table inet vb_sink || log "$1 run $2: could not remove the nftables drop rule"
    record "$1" udp64_sink_kpps "$SAT_FWD"
    log "$1 run $2: UDP64 with the receiver dropping at prerouting: $SAT_FWD kpps delivered to the pod interface, switch CPU $SAT_CPU µs per delivered frame"
}

# switch_cpu_ns: CPU time so far of every thread of the switch process (SWITCH_PID), in ns; empty without one.
switch_cpu_ns() {
    [[ -n "${SWITCH_PID:-}" ]] || return 0
    cat /proc/"$SWITCH_PID"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { if (NR) print t }'
}

# udp_rcvbuf_errors NS: the UDP RcvbufErrors counter of namespace NS.
udp_rcvbuf_errors() {
    # shellcheck disable=SC2016 # awk fields, not shell expansions
    in_ns "$1" awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp
}

# udp_probe NAME PPS: one paced UDP64 test offering PPS packets/s for
# PROBE_SECS.  Sets PROBE_SENT (packets/s the client sent), PROBE_RCVD
# (packets/s the receiving iperf3 got), PROBE_LOSS (%), PROBE_PASS (1 when
# the loss is below LOSS_LIMIT_PCT), and, to show where packets were lost,
# PROBE_IFRX (packets the receiving pod's interface got) and PROBE_RCVBUF
# (datagrams dropped at a full receive socket in the receiving pod).  Returns
# non-zero when the test failed.
udp_probe() {
    local name="$1" pps="$2" line rx0 rx1 rb0 rb1
    rx0=$(in_ns "$NS_B" cat /sys/class/net/eth0/statistics/rx_packets)
    rb0=$(udp_rcvbuf_errors "$NS_B")
    # iperf3's -b counts payload bits: 18 bytes * 8 = 144 bits per packet.
    iperf_run "$name" "$PROBE_SECS" -u -l 18 -b $((pps * 144)) --pacing-timer "$PACING_US" || return 1
    rx1=$(in_ns "$NS_B" cat /sys/class/net/eth0/statistics/rx_packets)
    rb1=$(udp_rcvbuf_errors "$NS_B")
    PROBE_IFRX=$((rx1 - rx0))
    PROBE_RCVBUF=$((rb1 - rb0))
    line="$("$PY" - "$WORK/$name.json" "$LOSS_LIMIT_PCT" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
s = d["end"]["sum"]
sent, lost, secs = s["packets"], s["lost_packets"], s["seconds"]
if not sent or secs <= 0:
    sys.exit("iperf3 sent nothing")
loss = 100.0 * lost / sent
print("%d %d %.3f %d %d %d" % (sent / secs, (sent - lost) / secs, loss, loss < float(sys.argv[2]), sent, lost))
EOF
)" || return 1
    read -r PROBE_SENT PROBE_RCVD PROBE_LOSS PROBE_PASS PROBE_NSENT PROBE_NLOST <<<"$line"
}

# measure_udp64_search DP RUN: the highest offered UDP64 rate that the
# receiving iperf3 gets with less than LOSS_LIMIT_PCT % loss.
#
# The first probe is at the app rate the -b 0 test just measured (UDP_APP_PPS,
# the right order of magnitude; the loss-free rate may be above or below it).
# While no probe has failed, step up x1.5; while none has passed, step down
# x0.5; once a pass and a fail bracket the answer, bisect.  At most MAX_PROBES probes; stop early at 2%
# resolution, or when a passing probe could not send the offered rate (the
# generator, not the loss, is then the limit).  Records the rate received in
# the passing probe with the highest offered rate.
measure_udp64_search() {
    local dp="$1" run="$2" lo=0 hi=0 rate probes=0 best_rcvd="" best_offered="" note="" verdict
    local seed="${UDP_APP_PPS:-0}"
    ((seed >= SEARCH_MIN_PPS)) || seed=$SEARCH_SEED_PPS
    while ((probes < MAX_PROBES)); do
        if ((hi == 0)); then
            if ((lo == 0)); then
                rate=$seed
            elif ((lo >= SEARCH_MAX_PPS)); then
                break
            else
                rate=$((lo * 3 / 2))
                ((rate <= SEARCH_MAX_PPS)) || rate=$SEARCH_MAX_PPS
            fi
        elif ((lo == 0)); then
            ((hi > SEARCH_MIN_PPS)) || break
            rate=$((hi / 2))
            ((rate >= SEARCH_MIN_PPS)) || rate=$SEARCH_MIN_PPS
        else
            # Bracketed: stop when the bracket is within 2% of the pass.
            (((hi - lo) * 50 > lo)) || break
            rate=$(((lo + hi) / 2))
        fi
        probes=$((probes + 1))
        if ! udp_probe "$dp-udps-$run-$probes" "$rate"; then
            log "$dp run $run: UDP64 search probe $probes at $rate pps failed; search abandoned"
            return 1
        fi
        verdict=fail
        ((PROBE_PASS)) && verdict=pass
        log "$dp run $run: UDP64 search probe $probes: offered $rate pps, sent $PROBE_SENT, received $PROBE_RCVD, loss $PROBE_LOSS % ($verdict; of $PROBE_NSENT sent, $PROBE_NLOST lost: $PROBE_IFRX frames reached the pod interface, $PROBE_RCVBUF dropped at the receiver's full socket)"
        if ((PROBE_PASS)); then
            lo=$rate
            best_offered=$rate
            best_rcvd=$PROBE_RCVD
            # A pass that could not reach 97% of the offered rate: offering
            # more would only measure the sender.
            if ((PROBE_SENT * 100 < rate * 97)); then
                note="generator-limited (sent $PROBE_SENT of $rate pps offered)"
                break
            fi
        else
            hi=$rate
        fi
    done
    if [[ -z "$best_rcvd" ]]; then
        log "$dp run $run: UDP64 search: no offered rate down to $rate pps had < $LOSS_LIMIT_PCT% loss"
        record "$dp" udp64_search_note "run $run: no rate with < $LOSS_LIMIT_PCT% loss down to $rate pps"
        return 1
    fi
    if [[ -z "$note" ]] && ((hi == 0)); then
        note="not bracketed: every probe passed, up to $lo pps offered"
    fi
    record "$dp" udp64_max_kpps "$("$PY" -c "print('%.1f' % ($best_rcvd / 1e3))")"
    record "$dp" udp64_max_offered_kpps "$("$PY" -c "print('%.1f' % ($best_offered / 1e3))")"
    if [[ -n "$note" ]]; then
        record "$dp" udp64_search_note "run $run: $note"
    fi
    log "$dp run $run: UDP64 max with < $LOSS_LIMIT_PCT% loss: $best_rcvd pps received at $best_offered pps offered ($probes probes$( ((hi > 0)) && echo ", lowest failing offer $hi pps")${note:+; $note})"
}

measure_ping() { # measure_ping DP RUN
    local med p99
    in_ns "$NS_A" timeout 30 taskset -c "${LOAD_CPU:-0}" \
        ping -c "$PING_COUNT" -i 0.01 -W 1 "$IP_B" >"$WORK/ping-$1-$2.txt" 2>&1 || true
    read -r med p99 <<<"$("$PY" - "$WORK/ping-$1-$2.txt" <<'EOF'
import re, statistics, sys
rtts = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
if len(rtts) < 10:
    sys.exit("too few ping replies: %d" % len(rtts))
print("%.3f %.3f" % (statistics.median(rtts), rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]))
EOF
)"
    [[ -n "$p99" ]] || return 1
    record "$1" ping_ms "$med"
    record "$1" ping_p99_ms "$p99"
    log "$1 run $2: ping median $med ms, p99 $p99 ms"
}

# measure_udp_rr DP RUN: back-to-back 64-byte UDP request/response transactions (udp-rr.py), median and p99.
measure_udp_rr() {
    local out med p99 rc=0
    start_bg "rr-srv-$1-$2" ip netns exec "$NS_B" taskset -c "${LOAD_CPU:-0}" \
        "$PY" "$SCRIPT_DIR/udp-rr.py" server "$IP_B" "$RR_PORT" --secs 40
    sleep 0.3
    out="$(in_ns "$NS_A" timeout 35 taskset -c "${LOAD_CPU:-0}" \
        "$PY" "$SCRIPT_DIR/udp-rr.py" client "$IP_B" "$RR_PORT" --count "$RR_COUNT" --secs 30 2>&1)" || rc=$?
    bg_wait "rr-srv-$1-$2" 5 || bg_stop "rr-srv-$1-$2"
    if ((rc != 0)); then
        log "$1 run $2: udp-rr.py failed: $out"
        return 1
    fi
    med="$(sed -n 's/.*median_us=\([0-9.]*\).*/\1/p' <<<"$out")"
    p99="$(sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$out")"
    [[ -n "$med" && -n "$p99" ]] || return 1
    record "$1" rr_med_us "$med"
    record "$1" rr_p99_us "$p99"
    log "$1 run $2: UDP request/response $out"
}

run_datapath() { # run_datapath DP
    local dp="$1" scope run ok=1
    SWITCH_PID=""
    scope="$(cleanup_scope_begin)"
    log "=== $dp: setting up"
    case "$dp" in
        # Bridge/OVS setup errors abort the script (set -e; cleanup still runs).
        bridge) setup_bridge ;;
        ovs) setup_ovs ;;
        vswitch) setup_vswitch tap || ok=0 ;;
        vswitch-afpacket) setup_vswitch af-packet || ok=0 ;;
        vswitch-poll) setup_vswitch poll || ok=0 ;;
        vswitch-rps) setup_vswitch rps || ok=0 ;;
        c-tpacket-v3) setup_cfwd || ok=0 ;;
    esac
    if ((ok)) && ! wait_for 15 ping_ok; then
        log "$dp: no connectivity $NS_A -> $NS_B"
        ok=0
    fi
    if ((ok)); then
        record "$dp" status ok
        # Warm-up, not measured: the switch's JIT reaches its optimised code (and every datapath's caches are warm).
        iperf_run "$dp-warmup-tcp" "$WARMUP" >/dev/null || log "$dp: warm-up TCP transfer failed"
        iperf_run "$dp-warmup-udp" "$WARMUP" -u -l 18 -b 0 >/dev/null || log "$dp: warm-up UDP transfer failed"
        for ((run = 1; run <= RUNS; run++)); do
            measure_tcp "$dp" "$run" || log "$dp run $run: TCP measurement failed"
            UDP_APP_PPS=""
            measure_udp64 "$dp" "$run" || log "$dp run $run: UDP64 measurement failed"
            measure_udp64_sink "$dp" "$run" || log "$dp run $run: UDP64 measurement without a receiver failed"
            if ((UDP_SEARCH)); then
                measure_udp64_search "$dp" "$run" || log "$dp run $run: UDP64 rate search failed"
            fi
            measure_ping "$dp" "$run" || log "$dp run $run: ping measurement failed"
            measure_udp_rr "$dp" "$run" || log "$dp run $run: UDP request/response measurement failed"
        done
    else
        record "$dp" status "failed (setup or connectivity; see log above)"
    fi
    if [[ "$dp" == ovs ]]; then
        # Evidence that the traffic went through the userspace datapath.
        log "OVS after the runs: $(ovs_appctl_vswitchd dpif/show 2>/dev/null | head -n1)"
        log "OVS warnings/errors in ovs-vswitchd.log: $(grep -cE '[|](WARN|ERR|EMER)[|]' "$OVS_DIR/ovs-vswitchd.log" || true)"
        grep -E '[|](WARN|ERR|EMER)[|]' "$OVS_DIR/ovs-vswitchd.log" | head -n 10 | sed 's/^/#   /' >&2 || true
    fi
    if [[ "$dp" == c-tpacket-v3 ]]; then
        bg_stop cfwd
        indent_file "$(bg_log cfwd)" 10
    fi
    log "=== $dp: tearing down"
    cleanup_scope_end "$scope"
}

# ---------------------------------------------------------------- main

log "l2-bench: runs=$RUNS datapaths=${SELECTED[*]} duration=${DURATION}s"
log "$PIN_NOTE"
if [[ -r /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    log "note: net.bridge.bridge-nf-call-iptables=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables) (bridged IPv4 traverses netfilter; left as is)"
fi

check_idle

START=$SECONDS
if ((OFFLOADS)); then SW_OFFLOADS=true; else SW_OFFLOADS=false; fi
for dp in "${SELECTED[@]}"; do
    if ((OFFLOADS)) && [[ "$dp" == ovs || "$dp" == c-tpacket-v3 ]]; then
        log "NOTE: skipping $dp with --offloads: its veth ports take no super-frames (OVS needs userspace-tso-enable; the C reference has no PACKET_VNET_HDR)"
        record "$dp" status "skipped (--offloads)"
        continue
    fi
    case "$dp" in
        vswitch | vswitch-afpacket | vswitch-poll | vswitch-rps)
            if [[ ! -x "$(vswitch_bin)" ]]; then
                log "NOTE: skipping $dp: VSwitch binary not found at $(vswitch_bin) (set VSWITCH=/path/to/vswitch)"
                record "$dp" status "skipped (no binary at $(vswitch_bin))"
                continue
            fi
            ;;
    esac
    if [[ "$dp" == vswitch-rps && -z "$LOAD_CPU" ]]; then
        log "NOTE: skipping $dp: one CPU, no other CPU to steer the pods' receive work to"
        record "$dp" status "skipped (one CPU)"
        continue
    fi
    run_datapath "$dp"
done
ELAPSED=$((SECONDS - START))

if ((UDP_SEARCH)); then
    SEARCH_NOTE="UDP64 rate search: probes of ${PROBE_SECS}s, --pacing-timer $PACING_US us, at most $MAX_PROBES per search, pass = loss < $LOSS_LIMIT_PCT%"
else
    SEARCH_NOTE="UDP64 rate search skipped (--no-udp-search)"
fi
HEADER="runs=$RUNS (median), iperf3 -t $DURATION, MTU $MTU, pod offloads $([[ $OFFLOADS == 1 ]] && echo on || echo off); $PIN_NOTE; $SEARCH_NOTE; kernel $(uname -r), $NCPU CPUs; CPU busy before start ${BUSY_AT_START}%; elapsed ${ELAPSED}s"

"$PY" - "$RESULTS" "$OUT" "$HEADER" "$UDP_SEARCH" "$LOSS_LIMIT_PCT" "$PING_COUNT" "$RR_COUNT" "$POLL_US" "${SELECTED[@]}" <<'EOF'
import statistics, sys
results, out, header, searched, limit, ping_count, rr_count, poll_us = sys.argv[1:9]
order = sys.argv[9:]
searched = searched == "1"
vals, status, notes = {}, {}, {}
for line in open(results):
    dp, metric, value = line.rstrip("\n").split("\t", 2)
    if metric == "status":
        status[dp] = value
    elif metric.endswith("_note"):
        notes.setdefault(dp, []).append(value)
    else:
        vals.setdefault(dp, {}).setdefault(metric, []).append(float(value))

def med(dp, m):
    v = vals.get(dp, {}).get(m)
    return statistics.median(v) if v else None

names = {"bridge": "linux-bridge", "ovs": "ovs-netdev",
         "vswitch": "vswitch-tap", "vswitch-afpacket": "vswitch-afpacket", "vswitch-poll": "vswitch-tap-poll",
         "vswitch-rps": "vswitch-tap-rps",
         "c-tpacket-v3": "c-tpacket-v3 (reference)"}

def fmt(x, p):
    return "-" if x is None else ("%.*f" % (p, x))

def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else "%.2f" % (a / b)

max_col = "UDP64 max kpps <%s%% loss" % limit
cols = ["datapath", "TCP Gb/s", "UDP64 fwd kpps", "UDP64 app kpps", "app loss %", "UDP64 fwd kpps, no receiver"]
if searched:
    cols += [max_col]
cols += ["switch CPU µs/pkt", "ping median ms", "ping p99 ms", "UDP RR median µs", "UDP RR p99 µs",
         "TCP/bridge", "UDP64fwd/bridge"]
if searched:
    cols += ["UDP64max/bridge"]
cols += ["ping/bridge", "TCP/OVS", "UDP64fwd/OVS", "no-receiver/OVS"]
if searched:
    cols += ["UDP64max/OVS"]
cols += ["status"]
rows = []
for dp in order:
    t, u, m = med(dp, "tcp_gbps"), med(dp, "udp64_fwd_kpps"), med(dp, "udp64_max_kpps")
    cells = {"datapath": names[dp], "TCP Gb/s": fmt(t, 2), "UDP64 fwd kpps": fmt(u, 1),
             "UDP64 app kpps": fmt(med(dp, "udp64_kpps"), 1), "app loss %": fmt(med(dp, "udp64_loss"), 1),
             "UDP64 fwd kpps, no receiver": fmt(med(dp, "udp64_sink_kpps"), 1),
             max_col: fmt(m, 1) + ("*" if notes.get(dp) and m is not None else ""),
             "switch CPU µs/pkt": fmt(med(dp, "udp64_cpu_us"), 2),
             "ping median ms": fmt(med(dp, "ping_ms"), 3), "ping p99 ms": fmt(med(dp, "ping_p99_ms"), 3),
             "UDP RR median µs": fmt(med(dp, "rr_med_us"), 0), "UDP RR p99 µs": fmt(med(dp, "rr_p99_us"), 0),
             "ping/bridge": ratio(med(dp, "ping_ms"), med("bridge", "ping_ms")),
             "TCP/bridge": ratio(t, med("bridge", "tcp_gbps")),
             "UDP64fwd/bridge": ratio(u, med("bridge", "udp64_fwd_kpps")),
             "UDP64max/bridge": ratio(m, med("bridge", "udp64_max_kpps")),
             "TCP/OVS": ratio(t, med("ovs", "tcp_gbps")), "UDP64fwd/OVS": ratio(u, med("ovs", "udp64_fwd_kpps")),
             "no-receiver/OVS": ratio(med(dp, "udp64_sink_kpps"), med("ovs", "udp64_sink_kpps")),
             "UDP64max/OVS": ratio(m, med("ovs", "udp64_max_kpps")),
             "status": status.get(dp, "not run")}
    rows.append([cells[c] for c in cols])
note_lines = ["%s: %s" % (names[dp], n) for dp in order for n in notes.get(dp, [])]

widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
print()
print(header)
print(line(cols))
print("-+-".join("-" * w for w in widths))
for r in rows:
    print(line(r))
if note_lines:
    print("UDP64 rate search notes (* in the table):")
    for n in note_lines:
        print("  " + n)

if out:
    with open(out, "w") as f:
        f.write("# VSwitch L2 end-to-end benchmark\n\n")
        f.write(header + "\n\n")
        f.write("| " + " | ".join(cols) + " |\n")
        f.write("|" + "|".join("---" for _ in cols) + "|\n")
        for r in rows:
            f.write("| " + " | ".join(r) + " |\n")
        f.write("\nUDP64 saturation: iperf3 -u -l 18 -b 0 (64-byte frames, unlimited offered rate). fwd kpps = frames the "
                "datapath delivered to the receiving pod's interface per second (its rx_packets); app kpps = datagrams the "
                "receiving iperf3 read (it shares CPU 0 with the unthrottled sender, so most app loss is UdpRcvbufErrors at "
                "the receiver, not the datapath). fwd kpps, no receiver = the same test with the receiving pod dropping the "
                "datagrams at prerouting (nftables), so CPU 0 runs the sender alone.\n")
        f.write("\nswitch CPU µs/pkt = CPU time of the switch process (all threads, /proc/PID/task/*/schedstat) during "
                "the UDP64 saturation test, per frame delivered to the receiving pod; none for the bridge, which forwards "
                "in the sender's softirq. ping: %s pings 10 ms apart. UDP RR: "
                "%s back-to-back 64-byte UDP request/response transactions (perf/e2e/udp-rr.py, netperf UDP_RR style), "
                "latency per transaction. vswitch-tap-poll: TAP ports, the worker keeps polling for %s µs after traffic "
                "instead of sleeping (datapath.busyPollMicros). vswitch-tap-rps: TAP ports, the pods' kernels take in what the switch "
                "writes on CPU 0, the load CPU (datapath.podRxCpus, receive packet steering), not in the switch's writes on "
                "CPU 1.\n" % (ping_count, rr_count, poll_us))
        if searched:
            f.write("\nUDP64 max kpps <%s%% loss: for each run, a search over offered packet rates finds the highest one at "
                    "which the receiving iperf3 sees less than %s%% loss; the figure is the rate that iperf3 received in "
                    "that probe, median over runs. Each probe is a bounded iperf3 -u -l 18 -b RATE*144 (-b counts payload "
                    "bits) --pacing-timer run; the first probe is at the run's app kpps, then the rate steps up x1.5 or "
                    "down x0.5 until a passing and a failing probe bracket the answer, then bisects, with a capped number "
                    "of probes (parameters in the header line). Unlike the saturation figures, the sender here only uses "
                    "the CPU it needs for the offered rate, so this is the rate a pod gets end to end without loss.\n"
                    % (limit, limit))
            for n in note_lines:
                f.write("\n* " + n)
            if note_lines:
                f.write("\n")
        f.write("\nRatios are medians divided by the Linux bridge / OVS netdev medians.\n")
EOF
if [[ -n "$OUT" ]]; then
    cp "$RESULTS" "${OUT%.md}.tsv"
    log "Markdown table written to $OUT, per-run results to ${OUT%.md}.tsv"
fi

# Non-zero exit when a selected datapath failed (skipped ones do not count).
if grep -q $'\tstatus\tfailed' "$RESULTS"; then
    exit 1
fi
