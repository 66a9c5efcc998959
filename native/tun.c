/*
 * tunvs native addon: Linux TUN I/O in bursts for the packet engine.
 *
 * What it does, and nothing more:
 *   open()            create/attach a multi-queue TUN (IFF_TUN|IFF_NO_PI|IFF_MULTI_QUEUE),
 *                     one non-blocking fd per queue;
 *   configure()       MTU, txqueuelen, link up (ioctls on a datagram socket);
 *   setOffload()      TUNSETOFFLOAD: partial checksums and GSO super-packets (IFF_VNET_HDR);
 *   attachSteering()  load a socket-filter eBPF program (instructions assembled in JS,
 *                     src/dataplane/steering.ts) and attach it with TUNSETSTEERINGEBPF;
 *   Queue             drives one queue fd with uv_poll on the *calling thread's* event loop:
 *                     on readable, read() packets straight into SharedArrayBuffer slots until
 *                     EAGAIN or the ring is full, call JS once for the burst, then write()
 *                     back every slot whose verdict is FORWARD (TUN takes one packet per
 *                     write; there is no recvmmsg for it);
 *   writeRing()       write the FORWARD slots of another ring (generated RSTs, packets handed
 *                     over by another worker);
 *   openLink()        DR mode: an AF_PACKET socket on the real servers' interface (send only,
 *                     PACKET_VNET_HDR with offloads); Queue.setLink(fd) sends the slots whose
 *                     verdict is LINK (an Ethernet frame the engine built) through it;
 *   neighbours()      DR mode: the interface's usable neighbour entries (an rtnetlink dump),
 *                     where the servers' MACs come from.
 *   localRoutes()     the local table's `local` routes (an rtnetlink dump): the host's own
 *                     addresses, which a VIP must not be;
 *   routeGet()        the kernel's route to one address (an rtnetlink request): DR's real
 *                     servers must be on a directly connected network;
 *   hostRoutes()      a table's routes to host prefixes (an rtnetlink dump): other routes
 *                     to a VIP or local address a reload or edit adds;
 *   routeChange()     add (replace) or delete one route into a device, or a blackhole, as
 *                     `ip route replace|del` would (an rtnetlink request): the VIPs' and
 *                     local addresses' routes, NAT's reply table, on the main thread, no
 *                     process forked;
 *   ruleChange()      add or delete one policy rule, as `ip rule add|del` would: NAT's reply
 *                     rules;
 *
 * The ring layout (slots, then int32 lens, verdicts, aux) is src/dataplane/ring.ts's.
 * The same addon carries the socket helpers of native/sock.c (saved SYN, execvp) and the
 * AF_XDP data path of native/xdp.c (io: xdp); the eBPF
 * TOA reader's loader is a separate addon (native/rs/) because it links libbpf.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/fib_rules.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include "bpf_load.h"
#include "napi_check.h"
#include "nl_neigh.h"
#include "ring_args.h"
#include "sock.h"
#include "stall.h"
#include "xdp.h"

#define VERDICT_FORWARD 0
#define VERDICT_LINK 3 /* src/nat/verdict.ts VERDICT_LINK */
/* Bursts handled per readiness callback before yielding to the loop (fairness with timers,
 * messages and the other queue work of this thread). */
#define BURSTS_PER_WAKEUP 8

static napi_value throw_errno(napi_env env, const char *code, const char *what, int err, const char *hint) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s%s%s", what, strerror(err), hint ? ". " : "", hint ? hint : "");
  napi_throw_error(env, code, msg);
  return NULL;
}

static int get_string(napi_env env, napi_value v, char *buf, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok) return -1;
  return (int)len;
}

/* open(name: string, queues: number, vnetHdr: boolean) -> { name, fds } */
static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ];
  if (argc < 3 || get_string(env, argv[0], name, sizeof name) < 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "open(name, queues, vnetHdr)");
    return NULL;
  }
  int32_t queues = 0;
  bool vnet = false;
  CHECK(env, napi_get_value_int32(env, argv[1], &queues));
  CHECK(env, napi_get_value_bool(env, argv[2], &vnet));
  if (queues < 1 || queues > 256) {
    napi_throw_range_error(env, "TUNVS_ERR_ARG", "queues must be 1..256");
    return NULL;
  }
  napi_value fds;
  CHECK(env, napi_create_array_with_length(env, (size_t)queues, &fds));
  char actual[IFNAMSIZ] = {0};
  int opened[256];
  for (int q = 0; q < queues; q++) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      for (int k = 0; k < q; k++) close(opened[k]);
      return throw_errno(env, "TUNVS_ERR_TUN_OPEN", "open /dev/net/tun", err,
                         err == ENOENT ? "Load the tun module (modprobe tun); in a container pass --device /dev/net/tun"
                                       : "Run tunvs as root or with CAP_NET_ADMIN");
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    /* The first queue creates the device and only that (IFF_TUN_EXCL: EBUSY if the name
     * exists): attaching to a device another process has open would split its traffic
     * between two session tables. The others attach to what it made. */
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (vnet ? IFF_VNET_HDR : 0) | (q == 0 ? IFF_TUN_EXCL : 0);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      close(fd);
      for (int k = 0; k < q; k++) close(opened[k]);
      return throw_errno(env, "TUNVS_ERR_TUN_OPEN", "TUNSETIFF", err,
                         err == EBUSY ? "A link of that name exists in this network namespace: another tunvs (or another program) has that TUN device open, or it is persistent (ip tuntap del) or another kind of link; stop what has it first, or set tun.name"
                         : err == EINVAL ? "A device of that name exists with other flags (not a multi-queue TUN): remove it or pick another name"
                         : err == EPERM ? "Run tunvs as root or with CAP_NET_ADMIN"
                                        : NULL);
    }
    opened[q] = fd;
    memcpy(actual, ifr.ifr_name, IFNAMSIZ);
    napi_value v;
    CHECK(env, napi_create_int32(env, fd, &v));
    CHECK(env, napi_set_element(env, fds, (uint32_t)q, v));
  }
  napi_value result, vname;
  CHECK(env, napi_create_object(env, &result));
  CHECK(env, napi_create_string_utf8(env, actual, NAPI_AUTO_LENGTH, &vname));
  CHECK(env, napi_set_named_property(env, result, "name", vname));
  CHECK(env, napi_set_named_property(env, result, "fds", fds));
  return result;
}

/* configure(name: string, mtu: number, txqueuelen: number): sets both and brings the link up. */
static napi_value Configure(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ];
  int32_t mtu = 0, txq = 0;
  if (argc < 3 || get_string(env, argv[0], name, sizeof name) < 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "configure(name, mtu, txqueuelen)");
    return NULL;
  }
  CHECK(env, napi_get_value_int32(env, argv[1], &mtu));
  CHECK(env, napi_get_value_int32(env, argv[2], &txq));
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_errno(env, "TUNVS_ERR_TUN_CONFIG", "socket", errno, NULL);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  ifr.ifr_mtu = mtu;
  if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
    int err = errno;
    close(s);
    return throw_errno(env, "TUNVS_ERR_TUN_CONFIG", "set MTU (SIOCSIFMTU)", err, NULL);
  }
  ifr.ifr_qlen = txq;
  if (ioctl(s, SIOCSIFTXQLEN, &ifr) < 0) {
    int err = errno;
    close(s);
    return throw_errno(env, "TUNVS_ERR_TUN_CONFIG", "set txqueuelen (SIOCSIFTXQLEN)", err, NULL);
  }
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)) {
    int err = errno;
    close(s);
    return throw_errno(env, "TUNVS_ERR_TUN_CONFIG", "link up (SIOCSIFFLAGS)", err, NULL);
  }
  close(s);
  return NULL;
}

/* setOffload(fd, flags): TUNSETOFFLOAD (TUN_F_CSUM | TUN_F_TSO4 | ...). The device then
 * hands over partial checksums and GSO super-packets behind a virtio_net_hdr. */
static napi_value SetOffload(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  uint32_t flags = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_value_uint32(env, argv[1], &flags));
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0)
    return throw_errno(env, "TUNVS_ERR_TUN_CONFIG", "TUNSETOFFLOAD", errno, NULL);
  return NULL;
}

/* closeFd(fd) */
static napi_value CloseFd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  if (fd >= 0) close(fd);
  return NULL;
}

/* attachSteering(fd, insns: Uint8Array): load a BPF_PROG_TYPE_SOCKET_FILTER program and
 * make it the queue selector of the device behind fd. fd -1 semantics are the kernel's:
 * attaching replaces the previous program; the device keeps its own reference. */
static napi_value AttachSteering(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  int prog = load_prog(env, argv[1], BPF_PROG_TYPE_SOCKET_FILTER,
                       "attachSteering(fd, Uint8Array of 8-byte instructions)", "TUNVS_ERR_STEERING",
                       "the steering program");
  if (prog < 0) return NULL;
  if (ioctl(fd, TUNSETSTEERINGEBPF, &prog) < 0) {
    int err = errno;
    close(prog);
    return throw_errno(env, "TUNVS_ERR_STEERING", "TUNSETSTEERINGEBPF", err, NULL);
  }
  close(prog);
  return NULL;
}

/* ---- Queue ------------------------------------------------------------------------- */

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref self;     /* keeps the JS object (and its SharedArrayBuffer) alive while polling */
  napi_ref callback; /* onBurst(count) */
  napi_ref sab;
  int fd;
  int link_fd; /* DR: the packet socket (-1: none) */
  uint8_t *base;
  int32_t *lens;
  int32_t *verdicts;
  uint32_t slot_size;
  uint32_t slots;
  int polling;
  int closed;
  double rx_packets, rx_bytes, tx_packets, tx_bytes, read_errors, write_errors, write_dropped, wakeups;
  double link_packets, link_errors;
} Queue;

static void write_slots(Queue *q, uint8_t *base, const int32_t *lens, const int32_t *verdicts, uint32_t slot_size,
                        uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    int link = verdicts[i] == VERDICT_LINK;
    if (verdicts[i] != VERDICT_FORWARD && !link) continue;
    int32_t len = lens[i];
    if (len <= 0 || (uint32_t)len > slot_size || (link && q->link_fd < 0)) {
      q->write_errors++;
      continue;
    }
    if (link) {
      if (write(q->link_fd, base + (size_t)i * slot_size, (size_t)len) < 0) q->link_errors++;
      else q->link_packets++;
      continue;
    }
    ssize_t w = write(q->fd, base + (size_t)i * slot_size, (size_t)len);
    if (w < 0) {
      if (errno == EAGAIN || errno == ENOBUFS) q->write_dropped++;
      else q->write_errors++;
    } else {
      q->tx_packets++;
      q->tx_bytes += (double)w;
    }
  }
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  Queue *q = (Queue *)handle->data;
  (void)events;
  if (status < 0 || q->closed) return;
  q->wakeups++;
  napi_env env = q->env;
  for (int burst = 0; burst < BURSTS_PER_WAKEUP; burst++) {
    uint32_t n = 0;
    while (n < q->slots) {
      ssize_t r = read(q->fd, q->base + (size_t)n * q->slot_size, q->slot_size);
      if (r < 0) {
        if (errno != EAGAIN && errno != EINTR) q->read_errors++;
        break;
      }
      q->lens[n] = (int32_t)r;
      q->rx_packets++;
      q->rx_bytes += (double)r;
      n++;
    }
    if (n == 0) return;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value cb, global, arg, result;
    if (napi_get_reference_value(env, q->callback, &cb) == napi_ok && napi_get_global(env, &global) == napi_ok &&
        napi_create_uint32(env, n, &arg) == napi_ok) {
      napi_status st = napi_call_function(env, global, cb, 1, &arg, &result);
      if (st == napi_pending_exception) {
        napi_value err;
        napi_get_and_clear_last_exception(env, &err);
        napi_fatal_exception(env, err);
        napi_close_handle_scope(env, scope);
        return;
      }
    }
    napi_close_handle_scope(env, scope);
    write_slots(q, q->base, q->lens, q->verdicts, q->slot_size, n);
    if (n < q->slots) return; /* drained */
  }
}

static void on_close(uv_handle_t *handle) {
  Queue *q = (Queue *)handle->data;
  napi_delete_reference(q->env, q->self);
  q->self = NULL;
}

static void queue_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  Queue *q = (Queue *)data;
  if (q->callback) napi_delete_reference(env, q->callback);
  if (q->sab) napi_delete_reference(env, q->sab);
  free(q);
}

static Queue *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok) return NULL;
  return (Queue *)p;
}

/* new Queue(fd, ringBytes, slotSize, slots, onBurst) */
static napi_value QueueNew(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "new Queue(fd, ringBytes, slotSize, slots, onBurst)");
    return NULL;
  }
  Queue *q = calloc(1, sizeof *q);
  if (!q) {
    napi_throw_error(env, "TUNVS_ERR_NOMEM", "out of memory");
    return NULL;
  }
  q->env = env;
  int32_t fd, slot_size, slots;
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_value_int32(env, argv[2], &slot_size));
  CHECK(env, napi_get_value_int32(env, argv[3], &slots));
  void *data = NULL;
  size_t bytes = 0;
  if (typed_bytes(env, argv[1], &data, &bytes) != 0) {
    free(q);
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "ring must be a Uint8Array over the whole ring buffer");
    return NULL;
  }
  if (slot_size <= 0 || slots <= 0 || (size_t)slot_size * (size_t)slots + (size_t)slots * RING_WORDS_PER_SLOT_BYTES > bytes) {
    free(q);
    napi_throw_range_error(env, "TUNVS_ERR_ARG", "ring geometry does not fit the buffer");
    return NULL;
  }
  q->fd = fd;
  q->link_fd = -1;
  q->slot_size = (uint32_t)slot_size;
  q->slots = (uint32_t)slots;
  q->base = (uint8_t *)data;
  q->lens = (int32_t *)(q->base + (size_t)slot_size * slots);
  q->verdicts = q->lens + slots;
  CHECK(env, napi_create_reference(env, argv[4], 1, &q->callback));
  CHECK(env, napi_create_reference(env, argv[1], 1, &q->sab));
  CHECK(env, napi_wrap(env, self, q, queue_finalize, NULL, NULL));
  return self;
}

static napi_value QueueStart(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value self;
  CHECK(env, napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  Queue *q = unwrap(env, info, &argc, NULL);
  if (!q || q->closed) {
    napi_throw_error(env, "TUNVS_ERR_QUEUE", "queue is closed");
    return NULL;
  }
  if (q->polling) return NULL;
  uv_loop_t *loop = NULL;
  CHECK(env, napi_get_uv_event_loop(env, &loop)); /* this thread's loop, never the default one */
  if (uv_poll_init(loop, &q->poll, q->fd) != 0) {
    napi_throw_error(env, "TUNVS_ERR_QUEUE", "uv_poll_init failed");
    return NULL;
  }
  q->poll.data = q;
  CHECK(env, napi_create_reference(env, self, 1, &q->self));
  uv_poll_start(&q->poll, UV_READABLE, on_readable);
  q->polling = 1;
  return NULL;
}

/* close(): stop polling and release the handle (the fd itself is closed by closeFd). */
static napi_value QueueClose(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  Queue *q = unwrap(env, info, &argc, NULL);
  if (!q || q->closed) return NULL;
  q->closed = 1;
  if (q->polling) {
    uv_poll_stop(&q->poll);
    uv_close((uv_handle_t *)&q->poll, on_close);
    q->polling = 0;
  }
  return NULL;
}

/* writeRing(ringBytes, slotSize, slots, count): write the FORWARD slots among the first count. */
static napi_value QueueWriteRing(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  Queue *q = unwrap(env, info, &argc, argv);
  PlainRing r;
  if (!q || plain_ring_args(env, argc, argv, &r) != 0) return NULL;
  write_slots(q, r.base, r.lens, r.verdicts, r.slot_size, r.count);
  return NULL;
}

/* setLink(fd): send LINK slots through this packet socket (openLink). */
static napi_value QueueSetLink(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  Queue *q = unwrap(env, info, &argc, argv);
  if (!q || argc < 1) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "setLink(fd)");
    return NULL;
  }
  int32_t fd;
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  q->link_fd = fd;
  return NULL;
}

/* openLink(ifname, vnetHdr): a send-only AF_PACKET socket bound to the interface (protocol 0:
 * it receives nothing), non-blocking; with vnetHdr each frame starts with a virtio_net_hdr
 * (the kernel then takes partial checksums and GSO frames, as the TUN device does). */
static napi_value OpenLink(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ];
  bool vnet = false;
  if (argc < 2 || get_string(env, argv[0], name, sizeof name) <= 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "openLink(ifname, vnetHdr)");
    return NULL;
  }
  CHECK(env, napi_get_value_bool(env, argv[1], &vnet));
  unsigned idx = if_nametoindex(name);
  if (idx == 0) return throw_errno(env, "TUNVS_ERR_LINK", "if_nametoindex", errno, name);
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "TUNVS_ERR_LINK", "socket(AF_PACKET)", errno, "needs CAP_NET_RAW");
  int one = 1;
  if (vnet && setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "TUNVS_ERR_LINK", "PACKET_VNET_HDR", err, NULL);
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = 0;
  sll.sll_ifindex = (int)idx;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "TUNVS_ERR_LINK", "bind(AF_PACKET)", err, name);
  }
  napi_value out;
  CHECK(env, napi_create_int32(env, fd, &out));
  return out;
}

/* Each message of an rtnetlink dump's answer: 0 to go on, else stop (a JS exception is
 * pending). */
typedef int (*nl_each)(napi_env env, const struct nlmsghdr *h, void *ctx);

/* One rtnetlink request on a socket of its own, and its answer: send `req` (a dump:
 * NLM_F_REQUEST | NLM_F_DUMP; one object: NLM_F_REQUEST | NLM_F_ACK), asking the kernel to
 * check it strictly and filter a dump by the request's fields (NETLINK_GET_STRICT_CHK, 4.20+;
 * an older one dumps everything, so each() filters again), and hand every answer message to
 * each() until the dump's end or the ack. 0 when done, -1 when each() stopped it (its
 * exception pending), else an errno for the caller to throw. */
static int nl_ask(napi_env env, struct nlmsghdr *req, nl_each each, void *ctx) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return errno;
  int one = 1;
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
  int err = 0;
  if (send(fd, req, req->nlmsg_len, 0) < 0) err = errno;
  static uint8_t buf[32768];
  for (int done = err != 0; !done;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    int left = (int)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = 1;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        err = e->error < 0 ? -e->error : 0;
        done = 1;
        break;
      }
      if (each(env, h, ctx) != 0) {
        close(fd);
        return -1;
      }
    }
  }
  close(fd);
  return err;
}

/* An answer with nothing to read but its ack (a change's). */
static int ignore_answer(napi_env env, const struct nlmsghdr *h, void *ctx) {
  (void)env;
  (void)h;
  (void)ctx;
  return 0;
}

/* The header of a request whose body (the struct after it) is `body` bytes, zeroed. */
static void nl_request(struct nlmsghdr *h, size_t body, uint16_t type, uint16_t flags) {
  memset(h, 0, NLMSG_LENGTH(body));
  h->nlmsg_len = NLMSG_LENGTH(body);
  h->nlmsg_type = type;
  h->nlmsg_flags = flags;
  h->nlmsg_seq = 1;
}

/* Append attribute `type` of `len` bytes to a request built in a buffer with room for it. */
static void nl_attr(struct nlmsghdr *h, unsigned short type, const void *data, size_t len) {
  struct rtattr *a = (struct rtattr *)((uint8_t *)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_SPACE(len);
}

/* Append a string to a JS array; 0, or -1 with the exception pending. */
static int push_string(napi_env env, napi_value array, uint32_t *count, const char *text) {
  napi_value v;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_element(env, array, (*count)++, v) != napi_ok) {
    napi_throw_error(env, "TUNVS_ERR_NAPI", "N-API call failed: push_string");
    return -1;
  }
  return 0;
}

/* Set a string property of a JS object; 0, or -1 with the exception pending. */
static int set_string(napi_env env, napi_value object, const char *name, const char *text) {
  napi_value v;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, object, name, v) != napi_ok) {
    napi_throw_error(env, "TUNVS_ERR_NAPI", "N-API call failed: set_string");
    return -1;
  }
  return 0;
}

struct neigh_ctx {
  int ifindex;
  napi_value out;
  uint32_t count;
};

static int each_neighbour(napi_env env, const struct nlmsghdr *h, void *ctx) {
  struct neigh_ctx *c = ctx;
  if (h->nlmsg_type != RTM_NEWNEIGH) return 0;
  const struct ndmsg *nd = NLMSG_DATA(h);
  if (nd->ndm_ifindex != c->ifindex || !(nd->ndm_state & (NUD_USABLE | NUD_NOARP))) return 0;
  const uint8_t *dst = neigh_attr(h, NDA_DST, nd->ndm_family == AF_INET ? 4 : 16);
  const uint8_t *ll = neigh_attr(h, NDA_LLADDR, 6);
  if (!dst || !ll) return 0;
  char addr[INET6_ADDRSTRLEN], mac[18];
  if (!inet_ntop(nd->ndm_family, dst, addr, sizeof addr)) return 0;
  snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", ll[0], ll[1], ll[2], ll[3], ll[4], ll[5]);
  napi_value entry;
  if (napi_create_object(env, &entry) != napi_ok || napi_set_element(env, c->out, c->count++, entry) != napi_ok) {
    napi_throw_error(env, "TUNVS_ERR_NAPI", "N-API call failed: neighbours");
    return -1;
  }
  return set_string(env, entry, "dst", addr) || set_string(env, entry, "lladdr", mac) ? -1 : 0;
}

/* neighbours(ifname): the kernel's usable neighbour entries on the interface (REACHABLE,
 * STALE, DELAY, PROBE, PERMANENT, NOARP), both families, as [{dst, lladdr}] in the text
 * `ip -j neigh` prints. One rtnetlink dump: no process is forked (DR's refresh runs it every
 * LINK_REFRESH_MS on the main thread, whose fork of a large process took milliseconds). */
static napi_value Neighbours(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ];
  if (argc < 1 || get_string(env, argv[0], name, sizeof name) <= 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "neighbours(ifname)");
    return NULL;
  }
  struct neigh_ctx c = {.ifindex = (int)if_nametoindex(name), .count = 0};
  if (c.ifindex == 0) return throw_errno(env, "TUNVS_ERR_LINK", "if_nametoindex", errno, name);
  CHECK(env, napi_create_array(env, &c.out));
  struct {
    struct nlmsghdr h;
    struct ndmsg nd;
  } req;
  nl_request(&req.h, sizeof req.nd, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP);
  req.nd.ndm_family = AF_UNSPEC;
  int err = nl_ask(env, &req.h, each_neighbour, &c);
  if (err > 0) return throw_errno(env, "TUNVS_ERR_LINK", "RTM_GETNEIGH dump", err, NULL);
  return err == 0 ? c.out : NULL;
}

/* Dump the routes of `table` (of `type`; RTN_UNSPEC: any) of both families to `each`, the
 * kernel filtering by both (strict checking). 0, or -1 with an exception pending. A family the
 * host lacks (IPv6 disabled at boot) dumps nothing. */
static int dump_routes(napi_env env, uint32_t table, unsigned char type, nl_each each, void *ctx) {
  const unsigned char families[] = {AF_INET, AF_INET6};
  for (size_t i = 0; i < sizeof families; i++) {
    struct {
      struct nlmsghdr h;
      struct rtmsg rt;
      char attrs[RTA_SPACE(4)];
    } req;
    nl_request(&req.h, sizeof req.rt, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP);
    req.rt.rtm_family = families[i];
    req.rt.rtm_table = table < 256 ? (unsigned char)table : RT_TABLE_UNSPEC;
    req.rt.rtm_type = type;
    if (table >= 256) nl_attr((struct nlmsghdr *)&req, RTA_TABLE, &table, 4);
    int err = nl_ask(env, &req.h, each, ctx);
    if (err < 0) return -1;
    if (err == EAFNOSUPPORT && families[i] == AF_INET6) continue;
    if (err > 0) {
      throw_errno(env, "TUNVS_ERR_LINK", "RTM_GETROUTE dump", err, NULL);
      return -1;
    }
  }
  return 0;
}

struct local_ctx {
  napi_value out;
  uint32_t count;
};

static int each_local_route(napi_env env, const struct nlmsghdr *h, void *ctx) {
  struct local_ctx *c = ctx;
  if (h->nlmsg_type != RTM_NEWROUTE) return 0;
  const struct rtmsg *rt = NLMSG_DATA(h);
  if (rt->rtm_type != RTN_LOCAL || (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6)) return 0;
  uint32_t table = rt->rtm_table;
  const uint8_t *dst = NULL;
  size_t alen = rt->rtm_family == AF_INET ? 4 : 16;
  int left = (int)RTM_PAYLOAD(h);
  for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type == RTA_TABLE && RTA_PAYLOAD(a) == 4) memcpy(&table, RTA_DATA(a), 4);
    if (a->rta_type == RTA_DST && RTA_PAYLOAD(a) == alen) dst = RTA_DATA(a);
  }
  if (table != RT_TABLE_LOCAL || !dst) return 0;
  char addr[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 5];
  if (!inet_ntop(rt->rtm_family, dst, addr, sizeof addr)) return 0;
  snprintf(text, sizeof text, "%s/%u", addr, rt->rtm_dst_len);
  return push_string(env, c->out, &c->count, text);
}

/* localRoutes(): the `local` routes of the local routing table, both families, as
 * "ADDRESS/LENGTH" (the kernel adds one per address of every interface, `ip route add local`
 * more) — what `ip route show table local type local` lists. One rtnetlink dump per family:
 * the host's own addresses are compared with the VIPs every SHADOW_CHECK_MS on the main
 * thread, where forking `ip` twice blocked it 0.3-1 s on a loaded machine (keepalived's
 * check of a healthy master timed out twice: the pair failed over). A family the host lacks
 * lists nothing. */
static napi_value LocalRoutes(napi_env env, napi_callback_info info) {
  (void)info;
  struct local_ctx c = {.count = 0};
  CHECK(env, napi_create_array(env, &c.out));
  return dump_routes(env, RT_TABLE_LOCAL, RTN_LOCAL, each_local_route, &c) == 0 ? c.out : NULL;
}

struct route_ctx {
  napi_value out;
};

/* If `a` names a route's next hop (RTA_GATEWAY, or RTA_VIA: an IPv4 route via an IPv6 next
 * hop, RFC 5549), its address as text in `out` (INET6_ADDRSTRLEN bytes); 1 if it did. */
static int route_gateway(const struct rtattr *a, char *out) {
  size_t n = RTA_PAYLOAD(a);
  if (a->rta_type == RTA_GATEWAY && (n == 4 || n == 16))
    return inet_ntop(n == 4 ? AF_INET : AF_INET6, RTA_DATA(a), out, INET6_ADDRSTRLEN) != NULL;
  if (a->rta_type != RTA_VIA || n < sizeof(struct rtvia)) return 0;
  const struct rtvia *v = RTA_DATA(a);
  size_t alen = n - sizeof(struct rtvia);
  if ((v->rtvia_family == AF_INET && alen == 4) || (v->rtvia_family == AF_INET6 && alen == 16))
    return inet_ntop(v->rtvia_family, v->rtvia_addr, out, INET6_ADDRSTRLEN) != NULL;
  return 0;
}

static int each_route(napi_env env, const struct nlmsghdr *h, void *ctx) {
  struct route_ctx *c = ctx;
  if (h->nlmsg_type != RTM_NEWROUTE) return 0;
  const struct rtmsg *rt = NLMSG_DATA(h);
  char dev[IF_NAMESIZE] = "", gateway[INET6_ADDRSTRLEN] = "";
  int left = (int)RTM_PAYLOAD(h);
  for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) == 4) {
      uint32_t idx;
      memcpy(&idx, RTA_DATA(a), 4);
      if (!if_indextoname(idx, dev)) dev[0] = '\0';
    }
    route_gateway(a, gateway);
  }
  if (dev[0] && set_string(env, c->out, "dev", dev)) return -1;
  if (gateway[0] && set_string(env, c->out, "gateway", gateway)) return -1;
  return 0;
}

/* routeGet(address): the kernel's route to one address, as `ip route get` finds it:
 * {dev, gateway} (either absent when the route has none; {} when there is no route: the
 * kernel's error). One rtnetlink request, no process forked: DR's plan asks it for every
 * real server at each start, reload and edit, on the main thread. */
static napi_value RouteGet(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char text[INET6_ADDRSTRLEN];
  struct {
    struct nlmsghdr h;
    struct rtmsg rt;
    char attrs[RTA_SPACE(16)];
  } req;
  memset(&req, 0, sizeof req);
  unsigned char addr[16];
  int family = 0;
  if (argc >= 1 && get_string(env, argv[0], text, sizeof text) > 0) {
    if (inet_pton(AF_INET, text, addr) == 1) family = AF_INET;
    else if (inet_pton(AF_INET6, text, addr) == 1) family = AF_INET6;
  }
  if (family == 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "routeGet(address): an IPv4 or IPv6 address");
    return NULL;
  }
  size_t alen = family == AF_INET ? 4 : 16;
  nl_request(&req.h, sizeof req.rt, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK);
  req.rt.rtm_family = (unsigned char)family;
  req.rt.rtm_dst_len = (unsigned char)(alen * 8);
  nl_attr((struct nlmsghdr *)&req, RTA_DST, addr, alen);
  struct route_ctx c;
  CHECK(env, napi_create_object(env, &c.out));
  int err = nl_ask(env, &req.h, each_route, &c);
  if (err < 0) return NULL;
  if (err > 0) CHECK(env, napi_create_object(env, &c.out)); /* no route: nothing of it */
  return c.out;
}

struct host_ctx {
  uint32_t table;
  napi_value out;
  uint32_t count;
  uint32_t oif; /* the last interface named, and its name: if_indextoname asks the kernel */
  char dev[IF_NAMESIZE];
};

/* Route types by number, as ip names them (rtnetlink.h RTN_*). */
static const char *const route_types[] = {"unspec",    "unicast",   "local",       "broadcast",
                                          "anycast",   "multicast", "blackhole",   "unreachable",
                                          "prohibit",  "throw",     "nat",         "xresolve"};

static int set_number(napi_env env, napi_value object, const char *name, double n) {
  napi_value v;
  if (napi_create_double(env, n, &v) != napi_ok || napi_set_named_property(env, object, name, v) != napi_ok) {
    napi_throw_error(env, "TUNVS_ERR_NAPI", "N-API call failed: set_number");
    return -1;
  }
  return 0;
}

static int each_host_route(napi_env env, const struct nlmsghdr *h, void *ctx) {
  struct host_ctx *c = ctx;
  if (h->nlmsg_type != RTM_NEWROUTE) return 0;
  const struct rtmsg *rt = NLMSG_DATA(h);
  size_t alen = rt->rtm_family == AF_INET ? 4 : rt->rtm_family == AF_INET6 ? 16 : 0;
  if (alen == 0 || rt->rtm_dst_len != alen * 8) return 0;
  uint32_t table = rt->rtm_table, oif = 0, metric = 0, nhid = 0;
  const uint8_t *dst = NULL;
  char gateway[INET6_ADDRSTRLEN] = "";
  bool has_oif = false, has_metric = false;
  uint32_t nexthops = 0;
  int left = (int)RTM_PAYLOAD(h);
  for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    size_t n = RTA_PAYLOAD(a);
    route_gateway(a, gateway);
    if (a->rta_type == RTA_TABLE && n == 4) memcpy(&table, RTA_DATA(a), 4);
    else if (a->rta_type == RTA_DST && n == alen) dst = RTA_DATA(a);
    else if (a->rta_type == RTA_OIF && n == 4) {
      memcpy(&oif, RTA_DATA(a), 4);
      has_oif = true;
    } else if (a->rta_type == RTA_PRIORITY && n == 4) {
      memcpy(&metric, RTA_DATA(a), 4);
      has_metric = true;
    } else if (a->rta_type == RTA_MULTIPATH) {
      int hops = (int)n;
      for (const struct rtnexthop *nh = RTA_DATA(a); RTNH_OK(nh, hops); nh = RTNH_NEXT(nh)) {
        nexthops++;
        hops -= RTNH_ALIGN(nh->rtnh_len);
      }
    } else if (a->rta_type == RTA_NH_ID && n == 4) {
      memcpy(&nhid, RTA_DATA(a), 4);
    }
  }
  if (table != c->table || !dst) return 0;
  char addr[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 5];
  if (!inet_ntop(rt->rtm_family, dst, addr, sizeof addr)) return 0;
  snprintf(text, sizeof text, "%s/%u", addr, rt->rtm_dst_len);
  napi_value entry;
  if (napi_create_object(env, &entry) != napi_ok || napi_set_element(env, c->out, c->count++, entry) != napi_ok) {
    napi_throw_error(env, "TUNVS_ERR_NAPI", "N-API call failed: hostRoutes");
    return -1;
  }
  const char *type = rt->rtm_type < sizeof route_types / sizeof *route_types ? route_types[rt->rtm_type] : "unspec";
  if (set_string(env, entry, "prefix", text) || set_string(env, entry, "type", type)) return -1;
  if (has_oif && oif != c->oif) c->oif = if_indextoname(oif, c->dev) ? oif : 0;
  if (has_oif && oif == c->oif && set_string(env, entry, "dev", c->dev)) return -1;
  if (gateway[0] && set_string(env, entry, "gateway", gateway)) return -1;
  if (has_metric && set_number(env, entry, "metric", metric)) return -1;
  if (nexthops && set_number(env, entry, "nexthops", nexthops)) return -1;
  if (nhid && set_number(env, entry, "nhid", nhid)) return -1;
  return 0;
}

/* hostRoutes(table): the routes of a table (0: main) to host prefixes (/32, /128), both
 * families (dump_routes), as [{prefix, type, dev?, gateway?, metric?, nexthops?, nhid?}]:
 * what `ip route show table T` lists of them, fields as `ip -j` names them (nexthops: how
 * many, when the route has several; nhid: a nexthop object's id). A reload or edit that adds
 * a VIP looks through them for other routes to it, on the main thread: one dump per family,
 * where `ip route show exact P` (forked from tunvs before) dumped the table once per prefix. */
static napi_value HostRoutes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t table = -1;
  if (argc < 1 || napi_get_value_int64(env, argv[0], &table) != napi_ok || table < 0 || table > UINT32_MAX) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "hostRoutes(table): a table number or 0 (main)");
    return NULL;
  }
  struct host_ctx c = {.table = table == 0 ? RT_TABLE_MAIN : (uint32_t)table, .count = 0, .oif = 0};
  CHECK(env, napi_create_array(env, &c.out));
  return dump_routes(env, c.table, RTN_UNSPEC, each_host_route, &c) == 0 ? c.out : NULL;
}

/* "ADDRESS/LENGTH" (or a bare address: its host prefix) -> family, address bytes, length;
 * family 0 when it is neither. */
static int parse_prefix(char *text, unsigned char addr[16], int *len) {
  char *slash = strchr(text, '/');
  if (slash != NULL) *slash = 0;
  int family = inet_pton(AF_INET, text, addr) == 1 ? AF_INET : inet_pton(AF_INET6, text, addr) == 1 ? AF_INET6 : 0;
  int max = family == AF_INET ? 32 : 128;
  *len = max;
  if (slash != NULL) {
    char *end;
    long n = strtol(slash + 1, &end, 10);
    if (*end != 0 || slash[1] == 0 || n < 0 || n > max) family = 0;
    *len = (int)n;
    *slash = '/';
  }
  return family;
}

/* A change's outcome for JS: undefined when done, else the kernel's reason. */
static napi_value change_outcome(napi_env env, int err) {
  napi_value out;
  if (err == 0) CHECK(env, napi_get_undefined(env, &out));
  else CHECK(env, napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &out));
  return out;
}

/* routeChange(replace, prefix, dev, metric, table): `ip route replace PREFIX dev DEV [metric M]
 * [table T]` (replace true) or `ip route del ...`; dev "" is `blackhole PREFIX`; metric -1 the
 * kernel's default, table 0 main. The message fields iproute2 fills for the same command
 * (protocol boot, scope link for a route into a device; a delete matches any scope). ->
 * undefined when done, else the kernel's reason (strerror: "No such process" for a route
 * that is not there). One rtnetlink request each: a cluster node's readiness change moves
 * every route (a forked `ip -batch` held the main thread 0.3 s for 32 of them on the loaded
 * lab). */
static napi_value RouteChange(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool replace = false;
  char prefix[INET6_ADDRSTRLEN + 8], dev[64];
  int64_t metric = -1, table = 0;
  unsigned char addr[16];
  int family = 0, plen = 0, devlen = -1;
  if (argc >= 5 && napi_get_value_bool(env, argv[0], &replace) == napi_ok &&
      get_string(env, argv[1], prefix, sizeof prefix) > 0 && (devlen = get_string(env, argv[2], dev, sizeof dev)) >= 0 &&
      devlen < IF_NAMESIZE && napi_get_value_int64(env, argv[3], &metric) == napi_ok && metric >= -1 &&
      metric <= UINT32_MAX && napi_get_value_int64(env, argv[4], &table) == napi_ok && table >= 0 &&
      table <= UINT32_MAX)
    family = parse_prefix(prefix, addr, &plen);
  if (family == 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG",
                          "routeChange(replace, prefix, dev, metric, table): ADDRESS/LENGTH, a device name or \"\" "
                          "(blackhole), a metric or -1, a table or 0 (main)");
    return NULL;
  }
  struct {
    struct nlmsghdr h;
    struct rtmsg rt;
    char attrs[RTA_SPACE(16) + 3 * RTA_SPACE(4)];
  } req;
  uint16_t flags = NLM_F_REQUEST | NLM_F_ACK | (replace ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  nl_request(&req.h, sizeof req.rt, replace ? RTM_NEWROUTE : RTM_DELROUTE, flags);
  size_t alen = family == AF_INET ? 4 : 16;
  bool blackhole = dev[0] == 0;
  req.rt.rtm_family = (unsigned char)family;
  req.rt.rtm_dst_len = (unsigned char)plen;
  uint32_t tid = table == 0 ? RT_TABLE_MAIN : (uint32_t)table;
  req.rt.rtm_table = tid < 256 ? (unsigned char)tid : RT_TABLE_UNSPEC;
  if (replace) {
    req.rt.rtm_protocol = RTPROT_BOOT;
    req.rt.rtm_type = blackhole ? RTN_BLACKHOLE : RTN_UNICAST;
    req.rt.rtm_scope = blackhole ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
  } else {
    req.rt.rtm_type = blackhole ? RTN_BLACKHOLE : RTN_UNSPEC;
    req.rt.rtm_scope = blackhole ? RT_SCOPE_UNIVERSE : RT_SCOPE_NOWHERE;
  }
  uint32_t oif = 0;
  if (!blackhole && (oif = if_nametoindex(dev)) == 0) {
    napi_value why;
    CHECK(env, napi_create_string_utf8(env, "Cannot find device", NAPI_AUTO_LENGTH, &why));
    return why;
  }
  if (plen > 0) nl_attr((struct nlmsghdr *)&req, RTA_DST, addr, alen);
  if (!blackhole) nl_attr((struct nlmsghdr *)&req, RTA_OIF, &oif, 4);
  uint32_t prio = (uint32_t)metric;
  if (metric >= 0) nl_attr((struct nlmsghdr *)&req, RTA_PRIORITY, &prio, 4);
  if (tid >= 256) nl_attr((struct nlmsghdr *)&req, RTA_TABLE, &tid, 4);
  int err = nl_ask(env, &req.h, ignore_answer, NULL);
  if (err < 0) return NULL;
  return change_outcome(env, err);
}

/* ruleChange(add, family, priority, table, from, proto, sport): `ip -4|-6 rule add|del
 * priority P [from ADDRESS] [ipproto PROTO] [sport PORT] [lookup TABLE]` (family 4 or 6;
 * from "", proto 0, sport 0 and table 0 leave that out: a delete of "priority P" alone takes
 * the first rule of that priority). -> undefined when done, else the kernel's reason. NAT's
 * reply rules, one per real server: forked one `ip` each before. */
static napi_value RuleChange(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool add = false;
  int64_t fam = 0, prio = -1, table = -1, proto = -1, sport = -1;
  char from[INET6_ADDRSTRLEN + 8];
  unsigned char addr[16];
  int family = 0, flen = 0, fromlen = -1;
  bool ok = argc >= 7 && napi_get_value_bool(env, argv[0], &add) == napi_ok &&
            napi_get_value_int64(env, argv[1], &fam) == napi_ok && (fam == 4 || fam == 6) &&
            napi_get_value_int64(env, argv[2], &prio) == napi_ok && prio >= 0 && prio <= UINT32_MAX &&
            napi_get_value_int64(env, argv[3], &table) == napi_ok && table >= 0 && table <= UINT32_MAX &&
            (fromlen = get_string(env, argv[4], from, sizeof from)) >= 0 &&
            napi_get_value_int64(env, argv[5], &proto) == napi_ok && proto >= 0 && proto <= 255 &&
            napi_get_value_int64(env, argv[6], &sport) == napi_ok && sport >= 0 && sport <= 65535;
  if (ok) {
    family = fam == 4 ? AF_INET : AF_INET6;
    if (fromlen > 0 && parse_prefix(from, addr, &flen) != family) ok = false;
  }
  if (!ok) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG",
                          "ruleChange(add, family, priority, table, from, proto, sport): 4 or 6, numbers (0: "
                          "none) and an address of that family or \"\"");
    return NULL;
  }
  struct {
    struct nlmsghdr h;
    struct fib_rule_hdr frh;
    char attrs[RTA_SPACE(16) + 3 * RTA_SPACE(4) + RTA_SPACE(1) + RTA_SPACE(sizeof(struct fib_rule_port_range))];
  } req;
  nl_request(&req.h, sizeof req.frh, add ? RTM_NEWRULE : RTM_DELRULE,
             NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0));
  req.frh.family = (unsigned char)family;
  if (add) req.frh.action = FR_ACT_TO_TBL;
  uint32_t p = (uint32_t)prio, t = (uint32_t)table;
  nl_attr((struct nlmsghdr *)&req, FRA_PRIORITY, &p, 4);
  if (fromlen > 0) {
    req.frh.src_len = (unsigned char)flen;
    nl_attr((struct nlmsghdr *)&req, FRA_SRC, addr, family == AF_INET ? 4 : 16);
  }
  if (proto > 0) {
    uint8_t ip = (uint8_t)proto;
    nl_attr((struct nlmsghdr *)&req, FRA_IP_PROTO, &ip, 1);
  }
  if (sport > 0) {
    struct fib_rule_port_range r = {.start = (uint16_t)sport, .end = (uint16_t)sport};
    nl_attr((struct nlmsghdr *)&req, FRA_SPORT_RANGE, &r, sizeof r);
  }
  if (table > 0) {
    req.frh.table = t < 256 ? (unsigned char)t : RT_TABLE_UNSPEC;
    nl_attr((struct nlmsghdr *)&req, FRA_TABLE, &t, 4);
  }
  int err = nl_ask(env, &req.h, ignore_answer, NULL);
  if (err < 0) return NULL;
  return change_outcome(env, err);
}

static napi_value QueueStats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  Queue *q = unwrap(env, info, &argc, NULL);
  if (!q) return NULL;
  napi_value o, v;
  CHECK(env, napi_create_object(env, &o));
#define PUT(field, name)                                       \
  CHECK(env, napi_create_double(env, q->field, &v));          \
  CHECK(env, napi_set_named_property(env, o, name, v));
  PUT(rx_packets, "rxPackets");
  PUT(rx_bytes, "rxBytes");
  PUT(tx_packets, "txPackets");
  PUT(tx_bytes, "txBytes");
  PUT(read_errors, "readErrors");
  PUT(write_errors, "writeErrors");
  PUT(write_dropped, "writeDropped");
  PUT(wakeups, "wakeups");
  PUT(link_packets, "linkPackets");
  PUT(link_errors, "linkErrors");
#undef PUT
  return o;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_property_descriptor methods[] = {
      {"start", NULL, QueueStart, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, QueueClose, NULL, NULL, NULL, napi_default, NULL},
      {"writeRing", NULL, QueueWriteRing, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, QueueStats, NULL, NULL, NULL, napi_default, NULL},
      {"setLink", NULL, QueueSetLink, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  if (napi_define_class(env, "Queue", NAPI_AUTO_LENGTH, QueueNew, NULL, 5, methods, &cls) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "Queue", cls);
  napi_create_function(env, "open", NAPI_AUTO_LENGTH, Open, NULL, &fn);
  napi_set_named_property(env, exports, "open", fn);
  napi_create_function(env, "configure", NAPI_AUTO_LENGTH, Configure, NULL, &fn);
  napi_set_named_property(env, exports, "configure", fn);
  napi_create_function(env, "closeFd", NAPI_AUTO_LENGTH, CloseFd, NULL, &fn);
  napi_set_named_property(env, exports, "closeFd", fn);
  napi_create_function(env, "hostRoutes", NAPI_AUTO_LENGTH, HostRoutes, NULL, &fn);
  napi_set_named_property(env, exports, "hostRoutes", fn);
  napi_create_function(env, "setOffload", NAPI_AUTO_LENGTH, SetOffload, NULL, &fn);
  napi_set_named_property(env, exports, "setOffload", fn);
  napi_create_function(env, "attachSteering", NAPI_AUTO_LENGTH, AttachSteering, NULL, &fn);
  napi_set_named_property(env, exports, "attachSteering", fn);
  napi_create_function(env, "openLink", NAPI_AUTO_LENGTH, OpenLink, NULL, &fn);
  napi_set_named_property(env, exports, "openLink", fn);
  napi_create_function(env, "neighbours", NAPI_AUTO_LENGTH, Neighbours, NULL, &fn);
  napi_set_named_property(env, exports, "neighbours", fn);
  napi_create_function(env, "localRoutes", NAPI_AUTO_LENGTH, LocalRoutes, NULL, &fn);
  napi_set_named_property(env, exports, "localRoutes", fn);
  napi_create_function(env, "routeGet", NAPI_AUTO_LENGTH, RouteGet, NULL, &fn);
  napi_set_named_property(env, exports, "routeGet", fn);
  napi_create_function(env, "routeChange", NAPI_AUTO_LENGTH, RouteChange, NULL, &fn);
  napi_set_named_property(env, exports, "routeChange", fn);
  napi_create_function(env, "ruleChange", NAPI_AUTO_LENGTH, RuleChange, NULL, &fn);
  napi_set_named_property(env, exports, "ruleChange", fn);
  register_sock(env, exports);
  register_stall(env, exports);
  register_xdp(env, exports);
  return exports;
}
