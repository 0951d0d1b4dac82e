// tpacket-v3-fwd: the reference point for issue 5's 64-byte UDP target, "a minimal C TPACKET_V3 forwarder".
//
// Two AF_PACKET ports, each with a TPACKET_V3 receive ring; every frame received on one port is sent out of the
// other with sendmmsg (up to 64 frames per call), straight from the ring. Nothing else: no MAC learning, no
// parsing, no counters beyond totals. It is what the fastest userspace forwarder on veths looks like, so
// perf/e2e/l2-bench.sh can measure it beside VSwitch and Open vSwitch (datapath "c-tpacket-v3").
//
// With TPACKET_V3 the kernel fills blocks of frames and wakes the reader only when a block is closed: when it
// is full or when its retire timer (--block-ms, at least 1 ms) fires. Frames are never handed over one by one,
// which is what makes it cheap for the sending CPU, and what costs latency at low rates.
//
// Usage: tpacket-v3-fwd IF_A IF_B [--secs N] [--block-ms N] [--block-kb N] [--blocks N]
// Runs until SIGINT/SIGTERM or --secs (default 600) pass, then prints its totals on stderr.
// Exit codes: 0 done, 1 a system call failed (message on stderr), 2 bad arguments.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define BATCH 64
#define FRAME_SIZE 2048

struct port {
    const char *name;
    int fd;
    uint8_t *ring;
    size_t ring_len;
    unsigned blocks, block_size, next;
    uint64_t rx, tx, tx_err;
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void fail(const char *what, const char *ifname) {
    fprintf(stderr, "tpacket-v3-fwd: %s (%s): %s\n", what, ifname, strerror(errno));
    exit(1);
}

static void open_port(struct port *p, unsigned block_kb, unsigned blocks, unsigned block_ms) {
    int v = TPACKET_V3, one = 1;
    unsigned ifindex = if_nametoindex(p->name);
    if (ifindex == 0) fail("no such interface", p->name);
    p->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (p->fd < 0) fail("socket(AF_PACKET)", p->name);
    if (setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) fail("PACKET_VERSION", p->name);
    // Frames this socket sends are not to come back into its own ring (kernels before 4.20 lack it: then the
    // kernel still skips the sending socket itself, which is all a two-port forwarder needs).
    (void)setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    struct tpacket_req3 req = {0};
    p->block_size = block_kb * 1024;
    p->blocks = blocks;
    req.tp_block_size = p->block_size;
    req.tp_block_nr = blocks;
    req.tp_frame_size = FRAME_SIZE;
    req.tp_frame_nr = (p->block_size / FRAME_SIZE) * blocks;
    req.tp_retire_blk_tov = block_ms;
    if (setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) fail("PACKET_RX_RING", p->name);
    p->ring_len = (size_t)p->block_size * blocks;
    p->ring = mmap(NULL, p->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, p->fd, 0);
    if (p->ring == MAP_FAILED) {
        p->ring = mmap(NULL, p->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
        if (p->ring == MAP_FAILED) fail("mmap", p->name);
    }
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex};
    if (bind(p->fd, (struct sockaddr *)&sll, sizeof sll) < 0) fail("bind", p->name);
}

// Sends n frames on the bound socket of `out`, all of them (sendmmsg may stop short).
static void flush(struct port *out, struct mmsghdr *msgs, unsigned n) {
    unsigned done = 0;
    while (done < n) {
        int r = sendmmsg(out->fd, msgs + done, n - done, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            // A frame the device refuses (ENOBUFS, ENETDOWN, EMSGSIZE): count it and go on with the next.
            out->tx_err++;
            done++;
            continue;
        }
        out->tx += (unsigned)r;
        done += (unsigned)r;
    }
}

// Forwards every closed block of `in` to `out`; returns the frames forwarded.
static unsigned drain(struct port *in, struct port *out) {
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    unsigned total = 0;
    for (unsigned budget = 0; budget < in->blocks; budget++) {
        struct tpacket_block_desc *bd = (void *)(in->ring + (size_t)in->next * in->block_size);
        if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) break;
        unsigned count = bd->hdr.bh1.num_pkts, n = 0;
        struct tpacket3_hdr *h = (void *)((uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt);
        for (unsigned i = 0; i < count; i++) {
            iov[n].iov_base = (uint8_t *)h + h->tp_mac;
            iov[n].iov_len = h->tp_snaplen;
            memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
            msgs[n].msg_hdr.msg_iov = &iov[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            if (++n == BATCH) {
                flush(out, msgs, n);
                n = 0;
            }
            h = (void *)((uint8_t *)h + h->tp_next_offset);
        }
        if (n) flush(out, msgs, n);
        in->rx += count;
        total += count;
        // The frames have been sent (copied by the kernel): the block goes back.
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        in->next = (in->next + 1) % in->blocks;
    }
    return total;
}

static unsigned arg_uint(const char *s, const char *name, unsigned lo, unsigned hi) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "tpacket-v3-fwd: %s needs an integer %u..%u\n", name, lo, hi);
        exit(2);
    }
    return (unsigned)v;
}

int main(int argc, char **argv) {
    unsigned secs = 600, block_ms = 1, block_kb = 64, blocks = 64;
    const char *names[2] = {0};
    int nn = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: tpacket-v3-fwd IF_A IF_B [--secs N] [--block-ms N] [--block-kb N] [--blocks N]\n"
                   "Forwards every frame between two interfaces: TPACKET_V3 receive rings, sendmmsg transmit.\n"
                   "  --secs N      stop after N seconds (default 600)\n"
                   "  --block-ms N  ring block retire timeout in ms (default 1)\n"
                   "  --block-kb N  ring block size in KB, a power of two (default 64)\n"
                   "  --blocks N    ring blocks per port (default 64)\n");
            return 0;
        } else if (i + 1 < argc && !strcmp(argv[i], "--secs")) {
            secs = arg_uint(argv[++i], "--secs", 1, 86400);
        } else if (i + 1 < argc && !strcmp(argv[i], "--block-ms")) {
            block_ms = arg_uint(argv[++i], "--block-ms", 1, 1000);
        } else if (i + 1 < argc && !strcmp(argv[i], "--block-kb")) {
            block_kb = arg_uint(argv[++i], "--block-kb", 4, 4096);
        } else if (i + 1 < argc && !strcmp(argv[i], "--blocks")) {
            blocks = arg_uint(argv[++i], "--blocks", 2, 1024);
        } else if (argv[i][0] != '-' && nn < 2) {
            names[nn++] = argv[i];
        } else {
            fprintf(stderr, "tpacket-v3-fwd: unexpected argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (nn != 2 || (block_kb & (block_kb - 1)) != 0) {
        fprintf(stderr, "tpacket-v3-fwd: needs two interfaces and a power-of-two --block-kb (see --help)\n");
        return 2;
    }
    struct port ports[2] = {{.name = names[0]}, {.name = names[1]}};
    for (int i = 0; i < 2; i++) open_port(&ports[i], block_kb, blocks, block_ms);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fprintf(stderr, "tpacket-v3-fwd: forwarding %s <-> %s (%u blocks of %u KB per port, retire %u ms)\n",
            names[0], names[1], blocks, block_kb, block_ms);
    struct pollfd pfd[2] = {{.fd = ports[0].fd, .events = POLLIN | POLLERR}, {.fd = ports[1].fd, .events = POLLIN | POLLERR}};
    while (!stop) {
        unsigned moved = drain(&ports[0], &ports[1]) + drain(&ports[1], &ports[0]);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= (time_t)secs) break;
        if (!moved && poll(pfd, 2, 100) < 0 && errno != EINTR) fail("poll", names[0]);
    }
    for (int i = 0; i < 2; i++) {
        struct tpacket_stats_v3 st = {0};
        socklen_t len = sizeof st;
        (void)getsockopt(ports[i].fd, SOL_PACKET, PACKET_STATISTICS, &st, &len);
        fprintf(stderr, "tpacket-v3-fwd: %s rx %llu tx %llu tx-errors %llu ring-drops %u\n", ports[i].name,
                (unsigned long long)ports[i].rx, (unsigned long long)ports[i].tx,
                (unsigned long long)ports[i].tx_err, st.tp_drops);
    }
    return 0;
}
