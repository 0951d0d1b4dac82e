#!/usr/bin/env bash
# VSwitch: the two commands.
#   ./run.sh            build, then run the demo on the embedded default config
#   ./run.sh test       install what the tests need, build, run every test
#   ./run.sh bench      stage benchmarks (BenchmarkDotNet) and the end-to-end comparison
#   ./run.sh build      build only (out/vswitch/vswitch)
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(pwd)
BIN="$REPO/out/vswitch/vswitch"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
}

require_root() {
    [ "$(id -u)" = 0 ] || die "this needs root (TAP devices, AF_PACKET sockets and network namespaces): run it with sudo"
}

# Debian packages the switch, its tests and benchmarks use. Installed only when something is missing.
deps() {
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v tshark >/dev/null || missing+=(tshark)
    command -v ethtool >/dev/null || missing+=(ethtool)
    command -v socat >/dev/null || missing+=(socat)
    /usr/bin/python3 -c 'import scapy' 2>/dev/null || missing+=(python3-scapy)
    # libnftables: the uplink steers node-port and masquerade replies from the underlay into the switch.
    command -v nft >/dev/null || missing+=(nftables)
    if [ "${1:-}" = test ] || [ "${1:-}" = bench ]; then
        # The cluster store's tests run real etcd members (unit tests on loopback, the system test in namespaces) with
        # certificates made by openssl.
        command -v etcd >/dev/null || missing+=(etcd-server)
        command -v etcdctl >/dev/null || missing+=(etcd-client)
        command -v openssl >/dev/null || missing+=(openssl)
    fi
    if [ "${1:-}" = bench ]; then
        command -v ovs-vswitchd >/dev/null || missing+=(openvswitch-switch)
        command -v iptables >/dev/null || missing+=(iptables)
        # The C reference forwarder that l2-bench.sh builds and measures beside the switches.
        command -v gcc >/dev/null || missing+=(gcc)
        [ -e /usr/include/linux/if_packet.h ] && [ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    fi
    command -v dotnet >/dev/null || die "the .NET 10 SDK (dotnet) is not on PATH"
    [ -e /dev/net/tun ] || modprobe tun 2>/dev/null || die "/dev/net/tun is missing and the tun module cannot be loaded"
}

build() {
    say "building"
    dotnet build VSwitch.sln -c Release -nologo -clp:ErrorsOnly >&2 || die "build failed"
    # ReadyToRun: the switch and its CLI start without waiting for the JIT (a restart's gap, every CLI call).
    dotnet publish src/Switch/VSwitch.Switch.csproj -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
        -o out/vswitch -nologo -clp:ErrorsOnly >&2 || die "publish failed"
}

demo() {
    require_root
    deps
    build
    local sock=/run/vswitch/vswitch.sock
    DEMO_LOG=$(mktemp /tmp/vswitch-demo.XXXXXX.log)
    DEMO_PID=""
    local log=$DEMO_LOG
    stop() {
        if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
            kill -TERM "$DEMO_PID"
            for _ in $(seq 50); do kill -0 "$DEMO_PID" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$DEMO_PID" 2>/dev/null; then kill -KILL "$DEMO_PID"; fi
        fi
        DEMO_PID=""
    }
    trap 'stop; rm -f "$DEMO_LOG"' EXIT
    say "starting the switch on the embedded default (three pods: vd-pod-a, vd-pod-b, vd-pod-c on TAP ports)"
    "$BIN" config default
    "$BIN" run >"$log" 2>&1 &
    DEMO_PID=$!
    for _ in $(seq 100); do "$BIN" status --socket "$sock" >/dev/null 2>&1 && break; kill -0 "$DEMO_PID" 2>/dev/null || break; sleep 0.2; done
    if ! "$BIN" status --socket "$sock"; then cat "$log" >&2; die "the switch did not start"; fi
    cat "$log"
    "$BIN" trace add 8 >/dev/null
    local pods=(a:10.244.1.2 b:10.244.1.3 c:10.244.1.4)
    for src in "${pods[@]}"; do
        for dst in "${pods[@]}"; do
            [ "$src" = "$dst" ] && continue
            say "pod ${src%%:*} (${src#*:}) pings pod ${dst%%:*} (${dst#*:})"
            ip netns exec "vd-pod-${src%%:*}" ping -c 2 -i 0.2 -W 1 "${dst#*:}"
        done
    done
    say "pod a pings its gateway 10.244.1.1 (the switch's router answers)"
    ip netns exec vd-pod-a ping -c 2 -i 0.2 -W 1 10.244.1.1
    say "pod a's routes (the default route via the gateway was set by the switch)"; ip -n vd-pod-a route show
    say "ARP cache of pod a"; ip -n vd-pod-a neigh show
    say "vswitch routes"; "$BIN" routes
    say "vswitch neighbors"; "$BIN" neighbors
    say "vswitch mac"; "$BIN" mac
    say "vswitch ports"; "$BIN" ports
    say "vswitch trace show (the first packets after 'trace add', stage by stage)"; "$BIN" trace show 8
    say "vswitch counters"; "$BIN" counters
    say "stopping the switch (SIGTERM): it removes its TAP devices and the namespaces it created"
    stop
    tail -3 "$log"
    if ip netns list | grep -q '^vd-pod-'; then die "namespaces left behind"; fi
    echo "demo finished; nothing left behind"
}

tests() {
    require_root
    deps test
    build
    local total_pass=0 total_fail=0 rc=0 out
    say "unit, property, contract and golden tests (dotnet test)"
    out=$(mktemp)
    if ! dotnet test VSwitch.sln -c Release --no-build -nologo 2>&1 | tee "$out"; then rc=1; fi
    while read -r f p; do total_fail=$((total_fail + f)); total_pass=$((total_pass + p)); done < <(
        sed -n 's/.*Failed: *\([0-9]*\), Passed: *\([0-9]*\),.*/\1 \2/p' "$out")
    grep -q 'Passed: *[0-9]' "$out" || { echo "run.sh: no test results from dotnet test" >&2; rc=1; }
    rm -f "$out"
    for t in tests/netns/*.sh; do
        [ "$(basename "$t")" = lib.sh ] && continue
        say "system test $t"
        out=$(mktemp)
        if ! VSWITCH="$BIN" timeout 900 bash "$t" 2>&1 | tee "$out"; then rc=1; fi
        read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$out" | tail -1) || true
        if [ -z "${p:-}" ]; then echo "run.sh: $t printed no result line" >&2; rc=1; total_fail=$((total_fail + 1)); else total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); fi
        rm -f "$out"
    done
    say "demo (./run.sh) as a smoke test"
    if ! demo >/dev/null 2>&1; then echo "not ok - demo" >&2; rc=1; total_fail=$((total_fail + 1)); else echo "ok - demo"; total_pass=$((total_pass + 1)); fi
    echo
    echo "${total_pass} passed, ${total_fail} failed"
    [ "$total_fail" = 0 ] || rc=1
    return $rc
}

bench() {
    require_root
    deps bench
    build
    say "stage benchmarks (BenchmarkDotNet, ns/packet, allocations)"
    dotnet run -c Release --project perf/VSwitch.Benchmarks -- --filter '*' "$@"
    say "end-to-end, same node: Linux bridge vs Open vSwitch netdev vs VSwitch"
    VSWITCH="$BIN" bash perf/e2e/l2-bench.sh --runs 3 --out out/bench-l2.md
    say "end-to-end, same node with offloads on: Linux bridge vs VSwitch"
    VSWITCH="$BIN" bash perf/e2e/l2-bench.sh --runs 3 --offloads --only bridge,vswitch,vswitch-afpacket,vswitch-poll,vswitch-rps --no-udp-search \
        --out out/bench-l2-offloads.md
    say "end-to-end, across nodes over VXLAN: kernel flannel-style vs VSwitch"
    VSWITCH="$BIN" bash perf/e2e/overlay-bench.sh --runs 3 --out out/bench-overlay.md
    say "end-to-end, Services: new TCP connections/s through a ClusterIP, kernel iptables DNAT vs VSwitch"
    VSWITCH="$BIN" bash perf/e2e/services-bench.sh --runs 3 --out out/bench-services.md
    say "end-to-end, the cluster store: apply to answering on every node, lease to reachable, memory and CPU"
    VSWITCH="$BIN" bash perf/e2e/cluster-bench.sh --out out/bench-cluster.md
    say "summary: every end-to-end figure against the kernel and Open vSwitch, with the targets"
    python3 perf/e2e/summary.py --dir out --out out/bench-summary.md
}

case "${1:-demo}" in
    demo | "") demo ;;
    test) tests ;;
    bench) shift; bench "$@" ;;
    build) deps; build ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
