/*
 * tunvs native addon, the AF_XDP data path (config `io: xdp`, docs/xdp.md).
 *
 * The program side, all through the bpf() system call (no libbpf: the program is small and
 * assembled in JS, src/dataplane/xdp_program.ts, like the TUN steering program):
 *   xdpXskMap(entries)          an XSKMAP (receive queue → AF_XDP socket), one per interface;
 *   xdpLoad(insns)              load the XDP program (verifier log in the error);
 *   xdpAttach(ifindex, prog, generic)
 *                               attach it through a bpf_link: the kernel detaches it when the
 *                               link's last fd closes, so a tunvs that dies (kill -9 included)
 *                               leaves no program behind;
 *   xdpReplace(link, prog)      swap the program of a link (reload: new addresses);
 *   xdpMapSet(map, key, fd)     put (fd ≥ 0) or remove (fd < 0) a socket in an XSKMAP.
 *
 * XdpQueue: one forwarder's AF_XDP sockets, one per (interface, queue), all on one UMEM
 * (XDP_SHARED_UMEM), so a frame received on one interface is sent on another without a copy.
 * The UMEM and the burst's lens/verdicts/aux/offsets words are one mmap()ed area handed to JS
 * as an ArrayBuffer: the engine rewrites each packet where the kernel put it. In packet order:
 *   on_rx       RX descriptors → burst entries (offset of the IP header in the UMEM, length);
 *               a checksum the sender left partial (veth: the pseudo-header sum only) is
 *               completed first, so the engine's incremental updates hold → onBurst(n) in JS
 *   transmit    each FORWARD entry: next hop (nh_lookup) → Ethernet header written in front of
 *               the IP header → TX ring of the egress interface's socket. No next hop here (an
 *               interface without XDP, a neighbour not resolved) → written to the TUN device:
 *               the kernel routes it and resolves the neighbour. LINK entries (DR) → the link.
 *   kick, reap  sendto() on each socket with TX pending; completed frames → free stack →
 *               fill rings
 *   writeRing   a plain ring's FORWARD slots (generated packets, packets handed over by another
 *               forwarder): copied into free frames, then as transmit
 *   nh_lookup   per-queue cache destination → (socket, MAC); a miss asks the kernel over
 *               rtnetlink (RTM_GETROUTE, then RTM_GETNEIGH); route and neighbour notifications
 *               empty it (on_netlink)
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "bpf_load.h"
#include "napi_check.h"
#include "nl_neigh.h"
#include "ring_args.h"
#include "xdp.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef AF_XDP
#define AF_XDP 44
#endif

#define VERDICT_FORWARD 0
#define VERDICT_LINK 3 /* src/nat/verdict.ts */
#define ETH_LEN 14
#define RX_HEADROOM 256 /* XDP_PACKET_HEADROOM: where the kernel puts a received frame in its chunk */
#define RING_SIZE 4096  /* every AF_XDP ring (power of two) */
#define PORTS_MAX 8
#define BURSTS_PER_WAKEUP 8
#define NH_SLOTS 4096 /* next-hop cache entries per queue (power of two) */
#define NH_PROBES 8

static napi_value fail(napi_env env, const char *code, const char *what, int err, const char *hint) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s: %s%s%s", what, strerror(err), hint ? ". " : "", hint ? hint : "");
  napi_throw_error(env, code, msg);
  return NULL;
}

static long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof *attr); }

static napi_value int_value(napi_env env, int32_t v) {
  napi_value out;
  CHECK(env, napi_create_int32(env, v, &out));
  return out;
}

/* ---- program, map, link ------------------------------------------------------------ */

static napi_value XskMap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t entries = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &entries));
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_XSKMAP;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = (uint32_t)(entries > 0 ? entries : 1);
  int fd = (int)sys_bpf(BPF_MAP_CREATE, &attr);
  if (fd < 0) return fail(env, "TUNVS_ERR_XDP", "create XSKMAP", errno, "needs root (CAP_BPF, CAP_NET_ADMIN)");
  return int_value(env, fd);
}

static napi_value Load(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd = load_prog(env, argv[0], BPF_PROG_TYPE_XDP, "xdpLoad(Uint8Array of 8-byte instructions)", "TUNVS_ERR_XDP",
                     "the XDP program");
  if (fd < 0) return NULL;
  return int_value(env, fd);
}

static napi_value Attach(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t ifindex = 0, prog = -1;
  bool generic = false;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &ifindex));
  CHECK(env, napi_get_value_int32(env, argv[1], &prog));
  CHECK(env, napi_get_value_bool(env, argv[2], &generic));
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.link_create.prog_fd = (uint32_t)prog;
  attr.link_create.target_ifindex = (uint32_t)ifindex;
  attr.link_create.attach_type = BPF_XDP;
  attr.link_create.flags = generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  int fd = (int)sys_bpf(BPF_LINK_CREATE, &attr);
  if (fd < 0) {
    int err = errno;
    return fail(env, err == EBUSY ? "TUNVS_ERR_XDP_BUSY" : "TUNVS_ERR_XDP", "attach XDP", err,
                err == EBUSY ? "another XDP program is attached to the interface (ip link show; ip link set DEV xdp off)"
                : err == EOPNOTSUPP || err == EINVAL ? "the driver has no native XDP (xdp.mode: generic)"
                                                     : NULL);
  }
  return int_value(env, fd);
}

static napi_value Replace(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t link = -1, prog = -1;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &link));
  CHECK(env, napi_get_value_int32(env, argv[1], &prog));
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.link_update.link_fd = (uint32_t)link;
  attr.link_update.new_prog_fd = (uint32_t)prog;
  if (sys_bpf(BPF_LINK_UPDATE, &attr) < 0) return fail(env, "TUNVS_ERR_XDP", "replace the XDP program", errno, NULL);
  return NULL;
}

static int map_set(int map, uint32_t key, int fd) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)map;
  attr.key = (uint64_t)(uintptr_t)&key;
  if (fd < 0) return (int)sys_bpf(BPF_MAP_DELETE_ELEM, &attr);
  uint32_t value = (uint32_t)fd;
  attr.value = (uint64_t)(uintptr_t)&value;
  attr.flags = BPF_ANY;
  return (int)sys_bpf(BPF_MAP_UPDATE_ELEM, &attr);
}

/* ---- the queue ----------------------------------------------------------------------- */

typedef struct {
  uint32_t *producer, *consumer;
  void *desc;
  void *map;
  size_t map_len;
} Ring;

typedef struct {
  int fd;
  int ifindex;
  uint32_t queue;
  int map_fd;
  uint8_t mac[6];
  Ring fill, comp, rx, tx;
  uint32_t tx_pending;
  uv_poll_t poll;
  int polling;
  struct XdpQueue *owner;
} Port;

typedef struct {
  uint32_t gen;
  uint8_t af;
  int8_t port; /* index in ports, -1: hand to the kernel */
  uint8_t mac[6];
  uint8_t addr[16];
} NhEntry;

typedef struct XdpQueue {
  napi_env env;
  napi_ref self, callback;
  Port ports[PORTS_MAX];
  int nports;
  int tun_fd;
  int link_fd;
  uint8_t *area; /* UMEM, then lens, verdicts, aux, offsets (burst words each) */
  size_t area_len;
  uint32_t frames, frame_size, burst;
  size_t umem_len;
  int32_t *lens, *verdicts, *aux, *offsets;
  uint64_t *chunk_of; /* the frame of each burst entry */
  uint64_t *free_frames;
  uint32_t nfree;
  uint32_t fill_target;
  int nl_fd;    /* requests */
  int nl_events; /* route and neighbour notifications */
  uint32_t nl_seq;
  uv_poll_t nl_poll;
  int nl_polling;
  NhEntry *nh;
  uint32_t nh_gen;
  int closed;
  int pending_closes;
  double rx_packets, rx_bytes, tx_packets, tx_bytes, read_errors, write_errors, write_dropped, wakeups;
  double link_packets, link_errors, kernel_packets, csum_completed, nh_lookups;
} XdpQueue;

static uint32_t ring_free_prod(Ring *r, uint32_t size) {
  return size - (*r->producer - __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE));
}

static int map_ring(Ring *r, int fd, const struct xdp_ring_offset *o, off_t pgoff, size_t desc_size) {
  size_t len = o->desc + RING_SIZE * desc_size;
  uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
  if (m == MAP_FAILED) return -1;
  r->map = m;
  r->map_len = len;
  r->producer = (uint32_t *)(m + o->producer);
  r->consumer = (uint32_t *)(m + o->consumer);
  r->desc = m + o->desc;
  return 0;
}

static void unmap_ring(Ring *r) {
  if (r->map) munmap(r->map, r->map_len);
  r->map = NULL;
}

static uint16_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}

/* One's-complement sum of `len` bytes as big-endian 16-bit words, folded, added to `s`. The
 * sum does not depend on byte order (RFC 1071): the bytes are added four at a time in the
 * host's order and the folded result is swapped back. */
static uint64_t sum16(const uint8_t *p, uint32_t len, uint64_t s) {
  uint64_t h = 0;
  uint32_t i = 0;
  for (; i + 4 <= len; i += 4) {
    uint32_t w;
    memcpy(&w, p + i, 4);
    h += w;
  }
  if (i + 2 <= len) {
    uint16_t w;
    memcpy(&w, p + i, 2);
    h += w;
    i += 2;
  }
  if (i < len) {
    uint8_t last[2] = {p[i], 0};
    uint16_t w;
    memcpy(&w, last, 2);
    h += w;
  }
  uint16_t f = fold(h);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  f = (uint16_t)(f >> 8 | f << 8);
#endif
  return s + f;
}

/* A TCP or UDP checksum the sender left partial (CHECKSUM_PARTIAL: the field holds the
 * pseudo-header sum, the NIC was to finish it; veth hands such frames to XDP as they are):
 * finish it. A full checksum is left alone, so the engine's incremental updates keep the
 * sender's end-to-end protection. Returns 1 when completed. */
static int complete_partial(uint8_t *ip, uint32_t len) {
  uint32_t l4, l4len, proto;
  uint64_t pseudo;
  if (len < 20) return 0;
  if ((ip[0] >> 4) == 4) {
    uint32_t ihl = (uint32_t)(ip[0] & 15) * 4;
    uint32_t tot = (uint32_t)(ip[2] << 8 | ip[3]);
    if (ihl < 20 || tot > len || tot < ihl) return 0;
    if ((ip[6] & 0x3f) != 0 || ip[7] != 0) return 0; /* a fragment */
    proto = ip[9];
    l4 = ihl;
    l4len = tot - ihl;
    pseudo = sum16(ip + 12, 8, 0);
  } else if ((ip[0] >> 4) == 6 && len >= 40) {
    uint32_t end = 40 + (uint32_t)(ip[4] << 8 | ip[5]);
    if (end > len) return 0;
    proto = ip[6];
    l4 = 40;
    /* Past Hop-by-Hop and Destination Options headers, at most 3, as the engine looks past
     * them (src/packet/ipv6_ext.ts, IPV6_OPTION_HEADERS_MAX); anything else is left alone
     * and the engine drops it. */
    for (int n = 0; (proto == 0 || proto == 60) && n < 3; n++) {
      if (l4 + 8 > end) return 0;
      proto = ip[l4];
      l4 += ((uint32_t)ip[l4 + 1] + 1) * 8;
    }
    if (l4 > end) return 0;
    l4len = end - l4;
    pseudo = sum16(ip + 8, 32, 0);
  } else {
    return 0;
  }
  uint32_t at;
  if (proto == 6 && l4len >= 20) at = l4 + 16;
  else if (proto == 17 && l4len >= 8) at = l4 + 6;
  else return 0;
  pseudo += proto + l4len;
  uint16_t field = (uint16_t)(ip[at] << 8 | ip[at + 1]);
  uint16_t p = fold(pseudo);
  if (field != p && !(field == 0xffff && p == 0) && !(field == 0 && p == 0xffff)) return 0;
  if (proto == 17 && field == 0 && (ip[0] >> 4) == 4) return 0; /* IPv4 UDP without checksum */
  ip[at] = 0;
  ip[at + 1] = 0;
  uint16_t c = (uint16_t)~fold(sum16(ip + l4, l4len, pseudo));
  if (proto == 17 && c == 0) c = 0xffff;
  ip[at] = (uint8_t)(c >> 8);
  ip[at + 1] = (uint8_t)c;
  return 1;
}

/* ---- next hops ------------------------------------------------------------------------ */

static int nl_open(uint32_t groups) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (groups ? SOCK_NONBLOCK : 0), NETLINK_ROUTE);
  if (fd < 0) return -1;
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = groups};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  if (!groups) {
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  return fd;
}

static void add_attr(struct nlmsghdr *h, uint16_t type, const void *data, uint16_t len) {
  struct rtattr *a = (struct rtattr *)((uint8_t *)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = (uint16_t)RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Send one request and read its answer into buf; returns the answer (NULL: none or error). */
static struct nlmsghdr *nl_ask(XdpQueue *q, struct nlmsghdr *req, uint8_t *buf, size_t cap) {
  req->nlmsg_seq = ++q->nl_seq;
  if (send(q->nl_fd, req, req->nlmsg_len, 0) < 0) return NULL;
  for (;;) {
    ssize_t n = recv(q->nl_fd, buf, cap, 0);
    if (n <= 0) return NULL;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != q->nl_seq) continue; /* a late answer to an earlier request */
      if (h->nlmsg_type == NLMSG_ERROR) return NULL;
      return h;
    }
  }
}

/* Ask the kernel where `addr` goes. Sets *port (−1: not through one of our sockets, or no
 * usable neighbour: the kernel sends it) and mac. */
static void nh_resolve(XdpQueue *q, uint8_t af, const uint8_t *addr, int8_t *port, uint8_t *mac) {
  *port = -1;
  q->nh_lookups++;
  size_t alen = af == AF_INET ? 4 : 16;
  union {
    struct nlmsghdr h;
    uint8_t raw[256];
  } req;
  uint8_t buf[8192];
  memset(&req, 0, sizeof req);
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
  req.h.nlmsg_type = RTM_GETROUTE;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  struct rtmsg *rt = NLMSG_DATA(&req.h);
  rt->rtm_family = af;
  rt->rtm_dst_len = (uint8_t)(alen * 8);
  add_attr(&req.h, RTA_DST, addr, (uint16_t)alen);
  struct nlmsghdr *h = nl_ask(q, &req.h, buf, sizeof buf);
  if (!h || h->nlmsg_type != RTM_NEWROUTE) return;
  struct rtmsg *r = NLMSG_DATA(h);
  if (r->rtm_type != RTN_UNICAST) return;
  int oif = 0;
  uint8_t nh_af = af;
  uint8_t nh[16];
  memcpy(nh, addr, alen);
  int len = (int)RTM_PAYLOAD(h);
  for (struct rtattr *a = RTM_RTA(r); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) >= 4) memcpy(&oif, RTA_DATA(a), 4);
    else if (a->rta_type == RTA_GATEWAY && RTA_PAYLOAD(a) == alen) memcpy(nh, RTA_DATA(a), alen);
    else if (a->rta_type == RTA_VIA && RTA_PAYLOAD(a) >= 2) {
      /* RFC 5549: an IPv4 route through an IPv6 next hop. */
      struct rtvia *v = RTA_DATA(a);
      size_t vlen = v->rtvia_family == AF_INET ? 4 : 16;
      if (RTA_PAYLOAD(a) >= 2 + vlen) {
        nh_af = (uint8_t)v->rtvia_family;
        memcpy(nh, v->rtvia_addr, vlen);
      }
    }
  }
  int which = -1;
  for (int i = 0; i < q->nports; i++)
    if (q->ports[i].ifindex == oif) which = i;
  if (which < 0) return;

  memset(&req, 0, sizeof req);
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ndmsg));
  req.h.nlmsg_type = RTM_GETNEIGH;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  struct ndmsg *nd = NLMSG_DATA(&req.h);
  nd->ndm_family = nh_af;
  nd->ndm_ifindex = oif;
  add_attr(&req.h, NDA_DST, nh, (uint16_t)(nh_af == AF_INET ? 4 : 16));
  h = nl_ask(q, &req.h, buf, sizeof buf);
  if (!h || h->nlmsg_type != RTM_NEWNEIGH) return;
  struct ndmsg *n = NLMSG_DATA(h);
  if (!(n->ndm_state & NUD_USABLE)) return;
  const uint8_t *ll = neigh_attr(h, NDA_LLADDR, 6);
  if (!ll) return;
  memcpy(mac, ll, 6);
  *port = (int8_t)which;
}

static uint32_t nh_hash(const uint8_t *addr, size_t alen) {
  uint32_t h = 0x9747b28c;
  for (size_t i = 0; i < alen; i += 4) {
    uint32_t w;
    memcpy(&w, addr + i, 4);
    h ^= w;
    h *= 0x85ebca6b;
    h ^= h >> 13;
  }
  return h;
}

/* The next hop of the packet at `ip`: its socket's index (−1: the kernel's), MAC in mac. */
static int nh_lookup(XdpQueue *q, const uint8_t *ip, uint8_t *mac) {
  uint8_t af = (ip[0] >> 4) == 4 ? AF_INET : AF_INET6;
  const uint8_t *dst = af == AF_INET ? ip + 16 : ip + 24;
  size_t alen = af == AF_INET ? 4 : 16;
  uint32_t h = nh_hash(dst, alen);
  NhEntry *victim = NULL;
  for (uint32_t k = 0; k < NH_PROBES; k++) {
    NhEntry *e = &q->nh[(h + k) & (NH_SLOTS - 1)];
    if (e->gen != q->nh_gen) {
      if (!victim) victim = e;
      continue;
    }
    if (e->af == af && memcmp(e->addr, dst, alen) == 0) {
      memcpy(mac, e->mac, 6);
      return e->port;
    }
  }
  if (!victim) victim = &q->nh[h & (NH_SLOTS - 1)];
  victim->gen = q->nh_gen;
  victim->af = af;
  memcpy(victim->addr, dst, alen);
  nh_resolve(q, af, dst, &victim->port, victim->mac);
  memcpy(mac, victim->mac, 6);
  return victim->port;
}

/* A route or neighbour changed somewhere: forget every next hop (they are asked again). */
static void on_netlink(uv_poll_t *handle, int status, int events) {
  XdpQueue *q = (XdpQueue *)handle->data;
  (void)events;
  if (status < 0) return;
  uint8_t buf[16384];
  while (recv(q->nl_events, buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
  q->nh_gen++;
  if (q->nh_gen == 0) q->nh_gen = 1;
}

/* ---- frames -------------------------------------------------------------------------- */

static void recycle(XdpQueue *q, uint64_t frame) { q->free_frames[q->nfree++] = frame; }

static void reap(XdpQueue *q, Port *p) {
  uint32_t cons = *p->comp.consumer;
  uint32_t prod = __atomic_load_n(p->comp.producer, __ATOMIC_ACQUIRE);
  uint64_t *ring = p->comp.desc;
  for (; cons != prod; cons++) recycle(q, ring[cons & (RING_SIZE - 1)] & ~(uint64_t)(q->frame_size - 1));
  __atomic_store_n(p->comp.consumer, cons, __ATOMIC_RELEASE);
}

static void refill(XdpQueue *q, Port *p) {
  uint32_t prod = *p->fill.producer;
  uint32_t outstanding = prod - __atomic_load_n(p->fill.consumer, __ATOMIC_ACQUIRE);
  if (outstanding >= q->fill_target) return;
  uint32_t want = q->fill_target - outstanding;
  if (want > q->nfree) want = q->nfree;
  uint64_t *ring = p->fill.desc;
  for (uint32_t i = 0; i < want; i++) ring[prod++ & (RING_SIZE - 1)] = q->free_frames[--q->nfree];
  __atomic_store_n(p->fill.producer, prod, __ATOMIC_RELEASE);
}

/* Hand the TX ring's frames to the kernel (copy mode sends in batches of 32 per call). */
static void kick(XdpQueue *q, Port *p) {
  for (int i = 0; i < 64 && p->tx_pending; i++) {
    if (sendto(p->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN && errno != EBUSY) {
      if (errno != ENOBUFS) q->write_errors++;
      break;
    }
    if (__atomic_load_n(p->tx.consumer, __ATOMIC_ACQUIRE) == *p->tx.producer) p->tx_pending = 0;
  }
}

static void service_all(XdpQueue *q) {
  for (int i = 0; i < q->nports; i++) {
    kick(q, &q->ports[i]);
    reap(q, &q->ports[i]);
  }
  for (int i = 0; i < q->nports; i++) refill(q, &q->ports[i]);
}

static void to_kernel(XdpQueue *q, const uint8_t *ip, uint32_t len) {
  if (q->tun_fd < 0 || write(q->tun_fd, ip, len) < 0) q->write_dropped++;
  else q->kernel_packets++;
}

/* Send the IP packet at UMEM offset `at` (in frame `frame`, which this call takes). */
static void transmit(XdpQueue *q, uint64_t frame, uint64_t at, uint32_t len) {
  uint8_t *ip = q->area + at;
  uint8_t mac[6];
  int which = len >= 20 ? nh_lookup(q, ip, mac) : -1;
  if (which < 0) {
    to_kernel(q, ip, len);
    recycle(q, frame);
    return;
  }
  Port *p = &q->ports[which];
  if (ring_free_prod(&p->tx, RING_SIZE) == 0) {
    kick(q, p);
    reap(q, p);
    if (ring_free_prod(&p->tx, RING_SIZE) == 0) {
      q->write_dropped++;
      recycle(q, frame);
      return;
    }
  }
  uint8_t *eth = ip - ETH_LEN;
  memcpy(eth, mac, 6);
  memcpy(eth + 6, p->mac, 6);
  eth[12] = (ip[0] >> 4) == 4 ? 0x08 : 0x86;
  eth[13] = (ip[0] >> 4) == 4 ? 0x00 : 0xdd;
  uint32_t prod = *p->tx.producer;
  struct xdp_desc *d = (struct xdp_desc *)p->tx.desc + (prod & (RING_SIZE - 1));
  d->addr = at - ETH_LEN;
  d->len = len + ETH_LEN;
  d->options = 0;
  __atomic_store_n(p->tx.producer, prod + 1, __ATOMIC_RELEASE);
  p->tx_pending++;
  q->tx_packets++;
  q->tx_bytes += len;
}

static void call_js(XdpQueue *q, uint32_t n) {
  napi_env env = q->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, global, arg, result;
  if (napi_get_reference_value(env, q->callback, &cb) == napi_ok && napi_get_global(env, &global) == napi_ok &&
      napi_create_uint32(env, n, &arg) == napi_ok) {
    if (napi_call_function(env, global, cb, 1, &arg, &result) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_rx(uv_poll_t *handle, int status, int events) {
  Port *p = (Port *)handle->data;
  XdpQueue *q = p->owner;
  (void)events;
  if (status < 0 || q->closed) return;
  q->wakeups++;
  uint64_t mask = ~(uint64_t)(q->frame_size - 1);
  for (int b = 0; b < BURSTS_PER_WAKEUP; b++) {
    uint32_t cons = *p->rx.consumer;
    uint32_t avail = __atomic_load_n(p->rx.producer, __ATOMIC_ACQUIRE) - cons;
    if (avail == 0) break;
    uint32_t take = avail < q->burst ? avail : q->burst;
    uint32_t n = 0;
    for (uint32_t i = 0; i < take; i++) {
      struct xdp_desc *d = (struct xdp_desc *)p->rx.desc + ((cons + i) & (RING_SIZE - 1));
      uint64_t frame = d->addr & mask;
      q->rx_packets++;
      q->rx_bytes += d->len;
      /* The engine may grow a packet to the end of its frame: the frame must start where
       * the ring's slot size assumes (RX_HEADROOM) or earlier. */
      if (d->len < ETH_LEN + 20 || d->addr - frame > RX_HEADROOM) {
        q->read_errors++;
        recycle(q, frame);
        continue;
      }
      uint8_t *ip = q->area + d->addr + ETH_LEN;
      if (complete_partial(ip, d->len - ETH_LEN)) q->csum_completed++;
      q->chunk_of[n] = frame;
      q->offsets[n] = (int32_t)(d->addr + ETH_LEN);
      q->lens[n] = (int32_t)(d->len - ETH_LEN);
      n++;
    }
    __atomic_store_n(p->rx.consumer, cons + take, __ATOMIC_RELEASE);
    if (n > 0) {
      call_js(q, n);
      if (q->closed) return;
      for (uint32_t i = 0; i < n; i++) {
        int32_t v = q->verdicts[i];
        int32_t len = q->lens[i];
        uint64_t at = (uint64_t)q->offsets[i];
        if (v == VERDICT_FORWARD && len > 0 && at + (uint64_t)len <= q->chunk_of[i] + q->frame_size) {
          transmit(q, q->chunk_of[i], at, (uint32_t)len);
          continue;
        }
        if (v == VERDICT_LINK && len > 0) {
          if (q->link_fd < 0 || write(q->link_fd, q->area + at, (size_t)len) < 0) q->link_errors++;
          else q->link_packets++;
        } else if (v == VERDICT_FORWARD) {
          q->write_errors++;
        }
        recycle(q, q->chunk_of[i]);
      }
    }
    service_all(q);
    if (take < q->burst) break;
  }
  service_all(q);
}

static XdpQueue *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok) return NULL;
  return (XdpQueue *)p;
}

static void area_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static void queue_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  XdpQueue *q = (XdpQueue *)data;
  if (q->callback) napi_delete_reference(env, q->callback);
  free(q->free_frames);
  free(q->chunk_of);
  free(q->nh);
  free(q);
}

static void release_sockets(XdpQueue *q) {
  for (int i = 0; i < q->nports; i++) {
    Port *p = &q->ports[i];
    if (p->map_fd >= 0) map_set(p->map_fd, p->queue, -1);
    unmap_ring(&p->fill);
    unmap_ring(&p->comp);
    unmap_ring(&p->rx);
    unmap_ring(&p->tx);
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
  }
  if (q->nl_fd >= 0) close(q->nl_fd);
  if (q->nl_events >= 0) close(q->nl_events);
  q->nl_fd = q->nl_events = -1;
}

/* Open and bind port i's socket; the first owns the UMEM, the others share it. */
static const char *open_port(XdpQueue *q, int i, bool zero_copy) {
  Port *p = &q->ports[i];
  p->owner = q;
  p->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (p->fd < 0) return "socket(AF_XDP)";
  if (i == 0) {
    struct xdp_umem_reg mr = {.addr = (uint64_t)(uintptr_t)q->area, .len = q->umem_len, .chunk_size = q->frame_size};
    if (setsockopt(p->fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof mr) < 0) return "XDP_UMEM_REG";
  }
  int n = RING_SIZE;
  if (setsockopt(p->fd, SOL_XDP, XDP_UMEM_FILL_RING, &n, sizeof n) < 0 ||
      setsockopt(p->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n, sizeof n) < 0 ||
      setsockopt(p->fd, SOL_XDP, XDP_RX_RING, &n, sizeof n) < 0 ||
      setsockopt(p->fd, SOL_XDP, XDP_TX_RING, &n, sizeof n) < 0)
    return "AF_XDP ring sizes";
  struct xdp_mmap_offsets off;
  socklen_t ol = sizeof off;
  if (getsockopt(p->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) < 0) return "XDP_MMAP_OFFSETS";
  if (map_ring(&p->fill, p->fd, &off.fr, XDP_UMEM_PGOFF_FILL_RING, sizeof(uint64_t)) ||
      map_ring(&p->comp, p->fd, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, sizeof(uint64_t)) ||
      map_ring(&p->rx, p->fd, &off.rx, XDP_PGOFF_RX_RING, sizeof(struct xdp_desc)) ||
      map_ring(&p->tx, p->fd, &off.tx, XDP_PGOFF_TX_RING, sizeof(struct xdp_desc)))
    return "mmap of an AF_XDP ring";
  refill(q, p); /* the kernel takes frames from the fill ring at bind */
  struct sockaddr_xdp sx = {.sxdp_family = AF_XDP, .sxdp_ifindex = (uint32_t)p->ifindex, .sxdp_queue_id = p->queue};
  if (i == 0) {
    sx.sxdp_flags = zero_copy ? XDP_ZEROCOPY : XDP_COPY;
  } else {
    sx.sxdp_flags = XDP_SHARED_UMEM;
    sx.sxdp_shared_umem_fd = (uint32_t)q->ports[0].fd;
  }
  if (bind(p->fd, (struct sockaddr *)&sx, sizeof sx) < 0) return "bind(AF_XDP)";
  if (p->map_fd >= 0 && map_set(p->map_fd, p->queue, p->fd) < 0) return "XSKMAP update";
  return NULL;
}

static int32_t get_int(napi_env env, napi_value obj, const char *name, int32_t dflt) {
  napi_value v;
  int32_t out = dflt;
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return dflt;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return dflt;
  napi_get_value_int32(env, v, &out);
  return out;
}

/* new XdpQueue(ports: {ifindex, queue, mapFd, mac: Uint8Array}[], options: {tunFd, frames,
 * frameSize, burst, zeroCopy}, onBurst). this.buffer: the UMEM and the burst words. */
static napi_value QueueNew(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  uint32_t nports = 0;
  bool is_array = false;
  if (argc < 3 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "new XdpQueue(ports, options, onBurst)");
    return NULL;
  }
  CHECK(env, napi_get_array_length(env, argv[0], &nports));
  if (nports < 1 || nports > PORTS_MAX) {
    napi_throw_range_error(env, "TUNVS_ERR_ARG", "an XDP queue has 1..8 ports");
    return NULL;
  }
  XdpQueue *q = calloc(1, sizeof *q);
  if (!q) return fail(env, "TUNVS_ERR_NOMEM", "XdpQueue", ENOMEM, NULL);
  q->env = env;
  q->tun_fd = get_int(env, argv[1], "tunFd", -1);
  q->link_fd = -1;
  q->frames = (uint32_t)get_int(env, argv[1], "frames", 8192);
  q->frame_size = (uint32_t)get_int(env, argv[1], "frameSize", 2048);
  q->burst = (uint32_t)get_int(env, argv[1], "burst", 64);
  bool zero_copy = get_int(env, argv[1], "zeroCopy", 0) != 0;
  q->nl_fd = q->nl_events = -1;
  q->nh_gen = 1;
  q->nports = (int)nports;
  for (uint32_t i = 0; i < nports; i++) q->ports[i].fd = -1;
  if (q->frame_size != 2048 && q->frame_size != 4096) {
    free(q);
    napi_throw_range_error(env, "TUNVS_ERR_ARG", "frameSize must be 2048 or 4096");
    return NULL;
  }
  q->umem_len = (size_t)q->frames * q->frame_size;
  size_t words = (size_t)q->burst * 16;
  q->area_len = q->umem_len + ((words + 4095) & ~(size_t)4095);
  q->area = mmap(NULL, q->area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (q->area == MAP_FAILED) {
    free(q);
    return fail(env, "TUNVS_ERR_NOMEM", "mmap of the UMEM", errno, NULL);
  }
  q->lens = (int32_t *)(q->area + q->umem_len);
  q->verdicts = q->lens + q->burst;
  q->aux = q->verdicts + q->burst;
  q->offsets = q->aux + q->burst;
  q->chunk_of = calloc(q->burst, sizeof *q->chunk_of);
  q->free_frames = calloc(q->frames, sizeof *q->free_frames);
  q->nh = calloc(NH_SLOTS, sizeof *q->nh);
  /* The buffer JS sees owns the mapping: it is unmapped when JS lets go of it. */
  napi_value buffer;
  if (!q->chunk_of || !q->free_frames || !q->nh ||
      napi_create_external_arraybuffer(env, q->area, q->area_len, area_finalize, (void *)(uintptr_t)q->area_len,
                                       &buffer) != napi_ok) {
    munmap(q->area, q->area_len);
    free(q->chunk_of);
    free(q->free_frames);
    free(q->nh);
    free(q);
    napi_throw_error(env, "TUNVS_ERR_XDP", "cannot hand the UMEM to JS");
    return NULL;
  }
  for (uint32_t f = 0; f < q->frames; f++) q->free_frames[q->nfree++] = (uint64_t)(q->frames - 1 - f) * q->frame_size;
  /* A quarter of the frames wait in the fill rings; the rest hold what the RX rings have
   * received and not yet been handed (a forwarder kept off its core for a few ms) and what
   * is being sent. */
  q->fill_target = q->frames / (4 * nports);
  if (q->fill_target > RING_SIZE) q->fill_target = RING_SIZE;
  CHECK(env, napi_wrap(env, self, q, queue_finalize, NULL, NULL));
  CHECK(env, napi_set_named_property(env, self, "buffer", buffer));
  CHECK(env, napi_create_reference(env, argv[2], 1, &q->callback));

  for (uint32_t i = 0; i < nports; i++) {
    napi_value o, macv;
    CHECK(env, napi_get_element(env, argv[0], i, &o));
    Port *p = &q->ports[i];
    p->ifindex = get_int(env, o, "ifindex", 0);
    p->queue = (uint32_t)get_int(env, o, "queue", 0);
    p->map_fd = get_int(env, o, "mapFd", -1);
    void *mac = NULL;
    size_t maclen = 0;
    CHECK(env, napi_get_named_property(env, o, "mac", &macv));
    napi_typedarray_type type;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, macv, &type, &maclen, &mac, &ab, &off) != napi_ok || maclen != 6) {
      release_sockets(q);
      napi_throw_type_error(env, "TUNVS_ERR_ARG", "port.mac: a Uint8Array of 6 bytes");
      return NULL;
    }
    memcpy(p->mac, mac, 6);
  }
  for (uint32_t i = 0; i < nports; i++) {
    const char *what = open_port(q, (int)i, zero_copy);
    if (what) {
      int err = errno;
      char ifname[IF_NAMESIZE] = "?";
      if_indextoname((unsigned)q->ports[i].ifindex, ifname);
      char hint[256];
      snprintf(hint, sizeof hint, "interface %s queue %u%s", ifname, q->ports[i].queue,
               err == EOPNOTSUPP && zero_copy ? " (no zero-copy here: set xdp.zeroCopy false)"
               : strcmp(what, "XDP_UMEM_REG") == 0 && (err == ENOBUFS || err == ENOMEM || err == EPERM)
                   ? " (the UMEM is pinned memory: raise the memlock limit, e.g. LimitMEMLOCK=infinity, or grant CAP_IPC_LOCK)"
                   : "");
      release_sockets(q);
      return fail(env, "TUNVS_ERR_XDP", what, err, hint);
    }
  }
  q->nl_fd = nl_open(0);
  q->nl_events = nl_open(RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE);
  if (q->nl_fd < 0 || q->nl_events < 0) {
    int err = errno;
    release_sockets(q);
    return fail(env, "TUNVS_ERR_XDP", "rtnetlink socket", err, NULL);
  }
  return self;
}

static napi_value QueueStart(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value self;
  CHECK(env, napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  XdpQueue *q = unwrap(env, info, &argc, NULL);
  if (!q || q->closed) {
    napi_throw_error(env, "TUNVS_ERR_QUEUE", "queue is closed");
    return NULL;
  }
  if (q->self) return NULL;
  uv_loop_t *loop = NULL;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  CHECK(env, napi_create_reference(env, self, 1, &q->self));
  for (int i = 0; i < q->nports; i++) {
    Port *p = &q->ports[i];
    if (uv_poll_init(loop, &p->poll, p->fd) != 0) continue;
    p->poll.data = p;
    uv_poll_start(&p->poll, UV_READABLE, on_rx);
    p->polling = 1;
  }
  if (uv_poll_init(loop, &q->nl_poll, q->nl_events) == 0) {
    q->nl_poll.data = q;
    uv_poll_start(&q->nl_poll, UV_READABLE, on_netlink);
    q->nl_polling = 1;
  }
  return NULL;
}

static void on_port_close(uv_handle_t *handle) {
  XdpQueue *q = ((Port *)handle->data)->owner;
  if (--q->pending_closes == 0) {
    release_sockets(q);
    napi_delete_reference(q->env, q->self);
    q->self = NULL;
  }
}

static void on_nl_close(uv_handle_t *handle) {
  XdpQueue *q = (XdpQueue *)handle->data;
  if (--q->pending_closes == 0) {
    release_sockets(q);
    napi_delete_reference(q->env, q->self);
    q->self = NULL;
  }
}

/* close(): stop polling, take the sockets out of the XSKMAPs (the program then passes those
 * frames to the kernel) and close them. The UMEM stays mapped until JS drops the buffer. */
static napi_value QueueClose(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  XdpQueue *q = unwrap(env, info, &argc, NULL);
  if (!q || q->closed) return NULL;
  q->closed = 1;
  int handles = 0;
  for (int i = 0; i < q->nports; i++) handles += q->ports[i].polling;
  handles += q->nl_polling;
  if (handles == 0) {
    release_sockets(q);
    return NULL;
  }
  q->pending_closes = handles;
  for (int i = 0; i < q->nports; i++) {
    Port *p = &q->ports[i];
    if (!p->polling) continue;
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, on_port_close);
    p->polling = 0;
  }
  if (q->nl_polling) {
    uv_poll_stop(&q->nl_poll);
    uv_close((uv_handle_t *)&q->nl_poll, on_nl_close);
    q->nl_polling = 0;
  }
  return NULL;
}

/* writeRing(ringBytes, slotSize, slots, count): send the FORWARD slots of a plain ring
 * (slot i at i × slotSize, no headroom), each copied into a free frame first. */
static napi_value QueueWriteRing(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  XdpQueue *q = unwrap(env, info, &argc, argv);
  PlainRing r;
  if (!q || plain_ring_args(env, argc, argv, &r) != 0 || q->closed) return NULL;
  uint8_t *base = r.base;
  int32_t *lens = r.lens;
  int32_t *verdicts = r.verdicts;
  int32_t slot_size = (int32_t)r.slot_size, count = (int32_t)r.count;
  uint32_t room = q->frame_size - RX_HEADROOM - ETH_LEN;
  for (int32_t i = 0; i < count; i++) {
    int link = verdicts[i] == VERDICT_LINK;
    if (verdicts[i] != VERDICT_FORWARD && !link) continue;
    int32_t len = lens[i];
    const uint8_t *pkt = base + (size_t)i * slot_size;
    if (len <= 0 || len > slot_size) {
      q->write_errors++;
      continue;
    }
    if (link) {
      if (q->link_fd < 0 || write(q->link_fd, pkt, (size_t)len) < 0) q->link_errors++;
      else q->link_packets++;
      continue;
    }
    if ((uint32_t)len > room) { /* larger than a frame (cannot be sent on this link either) */
      to_kernel(q, pkt, (uint32_t)len);
      continue;
    }
    if (q->nfree == 0) service_all(q);
    if (q->nfree == 0) {
      q->write_dropped++;
      continue;
    }
    uint64_t frame = q->free_frames[--q->nfree];
    uint64_t at = frame + RX_HEADROOM + ETH_LEN;
    memcpy(q->area + at, pkt, (size_t)len);
    transmit(q, frame, at, (uint32_t)len);
  }
  service_all(q);
  return NULL;
}

static napi_value QueueSetLink(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  XdpQueue *q = unwrap(env, info, &argc, argv);
  if (!q || argc < 1) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "setLink(fd)");
    return NULL;
  }
  int32_t fd;
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  q->link_fd = fd;
  return NULL;
}

static napi_value QueueStats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  XdpQueue *q = unwrap(env, info, &argc, NULL);
  if (!q) return NULL;
  /* The kernel's own drops before the queue: RX ring full, no fill frame, bad TX descriptors. */
  double rx_dropped = 0;
  for (int i = 0; i < q->nports; i++) {
    struct xdp_statistics st;
    socklen_t sl = sizeof st;
    memset(&st, 0, sizeof st);
    if (q->ports[i].fd >= 0 && getsockopt(q->ports[i].fd, SOL_XDP, XDP_STATISTICS, &st, &sl) == 0)
      rx_dropped += (double)(st.rx_dropped + st.rx_ring_full + st.rx_fill_ring_empty_descs + st.tx_invalid_descs);
  }
  napi_value o, v;
  CHECK(env, napi_create_object(env, &o));
#define PUT(value, name)                                     \
  CHECK(env, napi_create_double(env, (value), &v));          \
  CHECK(env, napi_set_named_property(env, o, name, v));
  PUT(q->rx_packets, "rxPackets");
  PUT(q->rx_bytes, "rxBytes");
  PUT(q->tx_packets, "txPackets");
  PUT(q->tx_bytes, "txBytes");
  PUT(q->read_errors, "readErrors");
  PUT(q->write_errors, "writeErrors");
  PUT(q->write_dropped, "writeDropped");
  PUT(q->wakeups, "wakeups");
  PUT(q->link_packets, "linkPackets");
  PUT(q->link_errors, "linkErrors");
  PUT(q->kernel_packets, "kernelPackets");
  PUT(rx_dropped, "rxDropped");
  PUT(q->csum_completed, "csumCompleted");
  PUT(q->nh_lookups, "nextHopLookups");
#undef PUT
  return o;
}

static napi_value MapSet(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t map = -1, key = 0, fd = -1;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &map));
  CHECK(env, napi_get_value_int32(env, argv[1], &key));
  CHECK(env, napi_get_value_int32(env, argv[2], &fd));
  if (map_set(map, (uint32_t)key, fd) < 0 && !(fd < 0 && errno == ENOENT))
    return fail(env, "TUNVS_ERR_XDP", "XSKMAP update", errno, NULL);
  return NULL;
}

void register_xdp(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"start", NULL, QueueStart, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, QueueClose, NULL, NULL, NULL, napi_default, NULL},
      {"writeRing", NULL, QueueWriteRing, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, QueueStats, NULL, NULL, NULL, napi_default, NULL},
      {"setLink", NULL, QueueSetLink, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls, fn;
  if (napi_define_class(env, "XdpQueue", NAPI_AUTO_LENGTH, QueueNew, NULL, 5, methods, &cls) != napi_ok) return;
  napi_set_named_property(env, exports, "XdpQueue", cls);
  struct {
    const char *name;
    napi_callback cb;
  } fns[] = {{"xdpXskMap", XskMap}, {"xdpLoad", Load}, {"xdpAttach", Attach}, {"xdpReplace", Replace},
             {"xdpMapSet", MapSet}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
}
