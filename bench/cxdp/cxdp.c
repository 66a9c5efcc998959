/*
 * cxdp: ctun's FULLNAT rewrite (bench/ctun/ctun.c) on AF_XDP sockets instead of a TUN
 * device: the measured prototype of issue 15's second step, a peer for `npm run bench:lab`.
 * It answers one question before tunvs grows an XDP data path: how near the kernel's own
 * NAT can a userspace forwarder get on this machine's veth links when the frames skip the
 * stack both ways?
 *
 * Not a load balancer, like ctun: IPv4 TCP only, one local address, one real server per
 * rule, the client's port kept as the local port, no TOA, no timers. Next hops are given
 * as MAC addresses (the real path would read the kernel's neighbour table over netlink).
 *
 *   cxdp PROG.o LIP UPDEV UPMAC RSDEV RSMAC VIP:PORT=RS:PORT [VIP:PORT=RS:PORT ...]
 *
 * (every rule's VIP must be the same address: the XDP program matches one VIP and one LIP)
 * PROG.o (cxdp.bpf.c) is attached to UPDEV and RSDEV (native XDP; veth has it) and sends
 * the frames for VIP and LIP to one AF_XDP socket per device (queue 0, copy mode: veth
 * has no zero-copy). One thread polls both sockets: RX frame → rewrite → the frame copied
 * into a TX frame of the other device's UMEM with the next hop's MAC → TX ring; the RX
 * frame goes straight back to its fill ring; one sendto() per burst kicks the TX.
 * Runs until SIGTERM/SIGINT; detaches the programs and prints its counters on exit.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../ctun/fullnat.h"

#define FRAMES 4096 /* per UMEM: half for RX (fill), half for TX */
#define FRAME_SIZE 2048
#define RING 2048
#define BURST 64

struct ring {
  uint32_t *producer, *consumer;
  void *desc;
  uint32_t mask;
};

struct port {
  const char *dev;
  int ifindex;
  uint8_t mac[6];
  uint8_t next_hop[6];
  int fd;
  uint8_t *umem;
  struct ring fill, comp, rx, tx;
  uint64_t free_tx[FRAMES / 2];
  uint32_t nfree;
  uint32_t tx_pending;
  struct bpf_object *obj;
};

static volatile sig_atomic_t stop;
static unsigned long long rx, tx, dropped, tx_full;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* The TCP checksum of the IPv4 packet at `ip`, summed in full. A frame that came from a
 * local stack over veth carries only the pseudo-header sum (the sender's checksum offload:
 * XDP sees the skb's CHECKSUM_PARTIAL data as it is, and AF_XDP copy mode has no offload
 * on TX), so an incremental update would keep it wrong: every frame is summed again. */
static void tcp_checksum(uint8_t *ip, uint32_t len) {
  int ihl = (ip[0] & 15) * 4;
  uint32_t tot = rd16(ip + 2);
  if (tot > len) tot = len;
  uint32_t tcplen = tot - (uint32_t)ihl;
  uint8_t *tcp = ip + ihl;
  uint64_t s = 0;
  for (int i = 12; i < 20; i += 2) s += rd16(ip + i);
  s += IPPROTO_TCP + tcplen;
  wr16(tcp + 16, 0);
  uint32_t i = 0;
  for (; i + 1 < tcplen; i += 2) s += rd16(tcp + i);
  if (i < tcplen) s += (uint32_t)tcp[i] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  wr16(tcp + 16, (uint16_t)~s);
}

/* The shared rewrite (bench/ctun/fullnat.h), then the TCP checksum summed in full. */
static int rewrite(uint8_t *ip, uint32_t len) {
  int dir = fullnat_rewrite(ip, len, 0);
  if (dir >= 0) tcp_checksum(ip, len);
  return dir;
}

static void die(const char *what) {
  fprintf(stderr, "cxdp: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void map_ring(struct ring *r, int fd, const struct xdp_ring_offset *o, off_t pgoff, size_t desc_size) {
  size_t len = o->desc + RING * desc_size;
  uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
  if (m == MAP_FAILED) die("mmap ring");
  r->producer = (uint32_t *)(m + o->producer);
  r->consumer = (uint32_t *)(m + o->consumer);
  r->desc = m + o->desc;
  r->mask = RING - 1;
}

static void open_port(struct port *p, const char *prog) {
  p->ifindex = (int)if_nametoindex(p->dev);
  if (!p->ifindex) die(p->dev);
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", p->dev);
  if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
  memcpy(p->mac, ifr.ifr_hwaddr.sa_data, 6);
  close(s);

  p->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (p->fd < 0) die("socket(AF_XDP)");
  p->umem = mmap(NULL, (size_t)FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p->umem == MAP_FAILED) die("mmap umem");
  struct xdp_umem_reg mr = {.addr = (uint64_t)(uintptr_t)p->umem,
                            .len = (uint64_t)FRAMES * FRAME_SIZE,
                            .chunk_size = FRAME_SIZE};
  if (setsockopt(p->fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof mr) < 0) die("XDP_UMEM_REG");
  int n = RING;
  if (setsockopt(p->fd, SOL_XDP, XDP_UMEM_FILL_RING, &n, sizeof n) < 0 ||
      setsockopt(p->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n, sizeof n) < 0 ||
      setsockopt(p->fd, SOL_XDP, XDP_RX_RING, &n, sizeof n) < 0 ||
      setsockopt(p->fd, SOL_XDP, XDP_TX_RING, &n, sizeof n) < 0)
    die("ring sizes");
  struct xdp_mmap_offsets off;
  socklen_t ol = sizeof off;
  if (getsockopt(p->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) < 0) die("XDP_MMAP_OFFSETS");
  map_ring(&p->fill, p->fd, &off.fr, XDP_UMEM_PGOFF_FILL_RING, sizeof(uint64_t));
  map_ring(&p->comp, p->fd, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, sizeof(uint64_t));
  map_ring(&p->rx, p->fd, &off.rx, XDP_PGOFF_RX_RING, sizeof(struct xdp_desc));
  map_ring(&p->tx, p->fd, &off.tx, XDP_PGOFF_TX_RING, sizeof(struct xdp_desc));

  /* Frames 0 .. FRAMES/2 − 1 wait in the fill ring for RX; the rest are TX frames. */
  uint64_t *fill = p->fill.desc;
  for (uint32_t i = 0; i < FRAMES / 2 && i < RING; i++) fill[i] = (uint64_t)i * FRAME_SIZE;
  __atomic_store_n(p->fill.producer, FRAMES / 2 < RING ? FRAMES / 2 : RING, __ATOMIC_RELEASE);
  for (uint32_t i = 0; i < FRAMES / 2; i++) p->free_tx[p->nfree++] = (uint64_t)(FRAMES / 2 + i) * FRAME_SIZE;

  struct sockaddr_xdp sx = {.sxdp_family = AF_XDP, .sxdp_ifindex = (uint32_t)p->ifindex, .sxdp_queue_id = 0,
                            .sxdp_flags = XDP_COPY};
  if (bind(p->fd, (struct sockaddr *)&sx, sizeof sx) < 0) die("bind(AF_XDP)");

  p->obj = bpf_object__open_file(prog, NULL);
  if (!p->obj || bpf_object__load(p->obj)) die("loading the XDP program");
  int xsks = bpf_object__find_map_fd_by_name(p->obj, "xsks");
  int addrs = bpf_object__find_map_fd_by_name(p->obj, "addrs");
  uint32_t k = 0;
  if (bpf_map_update_elem(xsks, &k, &p->fd, 0)) die("xsks map");
  for (int i = 0; i < nrules && i < 1; i++) bpf_map_update_elem(addrs, &k, &rules[i].vip, 0);
  k = 1;
  bpf_map_update_elem(addrs, &k, &lip, 0);
  int pfd = bpf_program__fd(bpf_object__find_program_by_name(p->obj, "cxdp"));
  if (bpf_xdp_attach(p->ifindex, pfd, XDP_FLAGS_DRV_MODE, NULL)) die("attaching XDP (native mode)");
}

/* Recycle the TX frames the kernel has sent. */
static void reap(struct port *p) {
  uint32_t cons = *p->comp.consumer;
  uint32_t prod = __atomic_load_n(p->comp.producer, __ATOMIC_ACQUIRE);
  uint64_t *ring = p->comp.desc;
  for (; cons != prod; cons++) p->free_tx[p->nfree++] = ring[cons & p->comp.mask];
  __atomic_store_n(p->comp.consumer, cons, __ATOMIC_RELEASE);
}

/* Queue `len` bytes of frame `src` for transmission on `out`. */
static int send_frame(struct port *out, const uint8_t *src, uint32_t len) {
  if (out->nfree == 0) reap(out);
  uint32_t prod = *out->tx.producer;
  uint32_t cons = __atomic_load_n(out->tx.consumer, __ATOMIC_ACQUIRE);
  if (out->nfree == 0 || prod - cons >= RING) {
    tx_full++;
    return -1;
  }
  uint64_t addr = out->free_tx[--out->nfree];
  uint8_t *f = out->umem + addr;
  memcpy(f, out->next_hop, 6);
  memcpy(f + 6, out->mac, 6);
  memcpy(f + 12, src + 12, len - 12);
  struct xdp_desc *d = (struct xdp_desc *)out->tx.desc + (prod & out->tx.mask);
  d->addr = addr;
  d->len = len;
  d->options = 0;
  __atomic_store_n(out->tx.producer, prod + 1, __ATOMIC_RELEASE);
  out->tx_pending++;
  return 0;
}

/* Receive a burst on `in`, forward it to `ports`; returns how many frames it took. */
static int service(struct port *in, struct port *ports) {
  uint32_t cons = *in->rx.consumer;
  uint32_t prod = __atomic_load_n(in->rx.producer, __ATOMIC_ACQUIRE);
  uint32_t n = prod - cons;
  if (n == 0) return 0;
  if (n > BURST) n = BURST;
  uint64_t *fill = in->fill.desc;
  uint32_t fprod = *in->fill.producer;
  for (uint32_t i = 0; i < n; i++) {
    struct xdp_desc *d = (struct xdp_desc *)in->rx.desc + ((cons + i) & in->rx.mask);
    uint8_t *frame = in->umem + d->addr;
    rx++;
    int dir = d->len > 14 ? rewrite(frame + 14, d->len - 14) : -1;
    if (dir < 0 || send_frame(&ports[dir], frame, d->len) < 0) dropped++;
    else tx++;
    fill[fprod++ & in->fill.mask] = d->addr & ~(uint64_t)(FRAME_SIZE - 1);
  }
  __atomic_store_n(in->rx.consumer, cons + n, __ATOMIC_RELEASE);
  __atomic_store_n(in->fill.producer, fprod, __ATOMIC_RELEASE);
  return (int)n;
}

static int parse_mac(const char *s, uint8_t *mac) {
  unsigned v[6];
  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
  for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: cxdp PROG.o LIP UPDEV UPMAC RSDEV RSMAC VIP:PORT=RS:PORT [VIP:PORT=RS:PORT ...]\n");
    return 2;
  }
  if (inet_pton(AF_INET, argv[2], &lip) != 1) {
    fprintf(stderr, "cxdp: bad local address %s\n", argv[2]);
    return 2;
  }
  if (parse_rules(argc, argv, 7, 1, "cxdp")) return 2;
  /* ports[0]: toward the real servers; ports[1]: toward the clients (rewrite()'s result). */
  static struct port ports[2];
  ports[0].dev = argv[5];
  ports[1].dev = argv[3];
  if (parse_mac(argv[6], ports[0].next_hop) || parse_mac(argv[4], ports[1].next_hop)) {
    fprintf(stderr, "cxdp: bad MAC address\n");
    return 2;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  open_port(&ports[0], argv[1]);
  open_port(&ports[1], argv[1]);
  fprintf(stderr, "cxdp: %s and %s attached (copy mode)\n", ports[1].dev, ports[0].dev);

  struct pollfd pfd[2] = {{.fd = ports[0].fd, .events = POLLIN}, {.fd = ports[1].fd, .events = POLLIN}};
  while (!stop) {
    if (poll(pfd, 2, 500) <= 0) continue;
    for (;;) {
      int n = service(&ports[0], ports) + service(&ports[1], ports);
      for (int i = 0; i < 2; i++) {
        if (ports[i].tx_pending) {
          sendto(ports[i].fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
          ports[i].tx_pending = 0;
        }
        reap(&ports[i]);
      }
      if (n == 0) break;
    }
  }
  for (int i = 0; i < 2; i++) bpf_xdp_detach(ports[i].ifindex, XDP_FLAGS_DRV_MODE, NULL);
  fprintf(stderr, "cxdp: rx %llu tx %llu dropped %llu tx_full %llu\n", rx, tx, dropped, tx_full);
  return 0;
}
