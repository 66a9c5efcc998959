// SPDX-License-Identifier: GPL-2.0
/*
 * tunvs real-server TOA reader: unmodified applications see the client address that the
 * load balancer carried in the TCP option address (TOA), with no kernel module.
 *
 *   sockops           TCP_LISTEN_CB: turn on TCP_SAVE_SYN (the fallback source).
 *                     PASSIVE_ESTABLISHED_CB: find the TOA in the packet that completed the
 *                     handshake (skb_data..skb_data_end is its TCP header), else in the saved
 *                     SYN, and keep {family, port, address} in socket-local storage.
 *   getpeername4/6    accept() and getpeername() go through these: answer with the stored
 *                     address. A v4 TOA on a dual-stack (AF_INET6) socket becomes
 *                     ::ffff:a.b.c.d; a v6 TOA on an AF_INET socket cannot be expressed and
 *                     leaves the address as it is (counted).
 *
 * Wire format (as tunvs and the Alibaba/Huawei modules write it): kind, len, port (2 bytes,
 * network order), address (4 bytes for len 8, 16 bytes for len 20). The kinds accepted are in
 * the config map (default 254 for v4, 254 or 253 for v6; tunvs can use e.g. 200).
 *
 * Trust: with the trusted map in use (config flag), a TOA is honoured only on connections
 * whose peer is one of the load balancer's local addresses, so a client that reaches the
 * server directly cannot claim another address.
 *
 * All programs return 1 (allow): the reader never refuses a connection or a call.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10
#define SOL_TCP 6
#define TCP_SAVE_SYN 27

#define FLAG_SAVED_SYN 1u /* turn on TCP_SAVE_SYN on listeners and read the saved SYN */
#define FLAG_TRUSTED_ONLY 2u /* honour a TOA only from peers in the trusted map */

/* Options fit in 40 bytes; the load balancer puts its TOA first after the base header.
 * 12 iterations cover a TOA after MSS, SACK-permitted, timestamps, window scale and NOPs. */
#define MAX_OPTIONS 12

struct toa_addr {
  __u32 family; /* AF_INET or AF_INET6 */
  __u32 port; /* network byte order in the low 16 bits, as user_port wants it */
  __u32 addr[4]; /* network byte order; v4 in addr[0] */
};

struct config {
  __u8 kind_v4;
  __u8 kind_v6;
  __u8 kind_v6_alt;
  __u8 flags;
};

/* Counter indices: the loader (native/rs.c) and src/rs/reader.ts name them in this order. */
enum {
  C_TOA_V4,          /* TOA v4 stored from the packet that completed the handshake */
  C_TOA_V6,          /* TOA v6 stored from that packet */
  C_TOA_SAVED_SYN,   /* TOA found only in the saved SYN */
  C_NO_TOA,          /* connection established without any TOA (e.g. not through the LB) */
  C_UNTRUSTED,       /* TOA ignored: the peer is not a trusted local address */
  C_STORE_FAILED,    /* socket storage could not be allocated */
  C_REWRITTEN,       /* accept()/getpeername() answers rewritten */
  C_V6_ON_V4_SOCKET, /* v6 TOA on an AF_INET socket: left as it is */
  C_BAD_OPTION,      /* malformed option list (length < 2 or past the header) */
  C_COUNT
};

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct toa_addr);
} toa_store SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct config);
} toa_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, C_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} toa_counters SEC(".maps");

/* Peers allowed to carry a TOA; IPv4 as ::ffff:a.b.c.d with prefixlen + 96. */
struct trusted_key {
  __u32 prefixlen;
  __u8 addr[16];
};

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 256);
  __type(key, struct trusted_key);
  __type(value, __u8);
} toa_trusted SEC(".maps");

static __always_inline void count(__u32 idx) {
  __u64 *v = bpf_map_lookup_elem(&toa_counters, &idx);
  if (v) *v += 1;
}

static __always_inline struct config load_config(void) {
  __u32 zero = 0;
  struct config dflt = {254, 254, 253, FLAG_SAVED_SYN};
  struct config *c = bpf_map_lookup_elem(&toa_config, &zero);
  return c ? *c : dflt;
}

/* The option's port field (network order) as user_port holds it: the same bytes in its low 16 bits. */
static __always_inline __u32 port_of(const __u8 *p) {
  __u16 port;
  __builtin_memcpy(&port, p + 2, 2);
  return port;
}

/* What one option at `p` (with `room` bytes readable) says: 0 = not a TOA, 4 or 6 = stored. */
static __always_inline int take_toa(const __u8 *p, __u8 kind, __u8 len, const struct config *cfg,
                                    struct toa_addr *out) {
  if (len == 8 && kind == cfg->kind_v4) {
    out->family = AF_INET;
    out->port = port_of(p);
    __builtin_memcpy(&out->addr[0], p + 4, 4);
    out->addr[1] = out->addr[2] = out->addr[3] = 0;
    return 4;
  }
  if (len == 20 && (kind == cfg->kind_v6 || kind == cfg->kind_v6_alt)) {
    out->family = AF_INET6;
    out->port = port_of(p);
    __builtin_memcpy(&out->addr[0], p + 4, 16);
    return 6;
  }
  return 0;
}

/* Walk the options of the TCP header in the packet (data..end). -1 = malformed. */
static __always_inline int find_in_packet(const __u8 *data, const __u8 *end, const struct config *cfg,
                                          struct toa_addr *out) {
  if (data + 20 > end) return 0;
  __u32 hdr = (data[12] >> 4) * 4;
  __u32 off = 20;
#pragma unroll
  for (int i = 0; i < MAX_OPTIONS; i++) {
    asm volatile("" ::: "memory"); /* keep the mask below (clang may fold it away) */
    off &= 0x3f;
    if (off >= hdr) return 0;
    const __u8 *p = data + off;
    if (p + 1 > end) return 0;
    __u8 kind = p[0];
    if (kind == 0) return 0;
    if (kind == 1) {
      off += 1;
      continue;
    }
    if (p + 2 > end) return -1;
    __u8 len = p[1];
    if (len < 2 || off + len > hdr) return -1;
    if (len == 8 && p + 8 <= end) {
      int got = take_toa(p, kind, len, cfg, out);
      if (got) return got;
    } else if (len == 20 && p + 20 <= end) {
      int got = take_toa(p, kind, len, cfg, out);
      if (got) return got;
    }
    off += len;
  }
  return 0;
}

/* The same walk over the saved SYN's TCP header, copied to the stack: n bytes in a buffer
 * of SYN_BUF, so that any masked offset (< 64) plus a 20-byte option stays inside it and the
 * verifier can prove every variable-offset read. */
#define SYN_BUF (64 + 20)
static __always_inline int find_in_buffer(const __u8 *buf, __u32 n, const struct config *cfg, struct toa_addr *out) {
  if (n < 20 || n > 60) return 0;
  __u32 hdr = (buf[12] >> 4) * 4;
  if (hdr > n) hdr = n;
  __u32 off = 20;
#pragma unroll
  for (int i = 0; i < MAX_OPTIONS; i++) {
    asm volatile("" ::: "memory");
    off &= 0x3f;
    if (off >= hdr) return 0;
    __u8 kind = buf[off];
    if (kind == 0) return 0;
    if (kind == 1) {
      off += 1;
      continue;
    }
    __u8 len = buf[off + 1];
    if (len < 2 || off + len > hdr) return -1;
    if (len == 8 || len == 20) {
      int got = take_toa(buf + off, kind, len, cfg, out);
      if (got) return got;
    }
    off += len;
  }
  return 0;
}

static __always_inline int peer_trusted(struct bpf_sock_ops *skops) {
  struct trusted_key key = {.prefixlen = 128};
  if (skops->family == AF_INET) {
    __u32 a = skops->remote_ip4;
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    __builtin_memcpy(&key.addr[12], &a, 4);
  } else {
    __u32 w[4] = {skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2], skops->remote_ip6[3]};
    __builtin_memcpy(key.addr, w, 16);
  }
  return bpf_map_lookup_elem(&toa_trusted, &key) != 0;
}

SEC("sockops")
int toa_sockops(struct bpf_sock_ops *skops) {
  struct config cfg = load_config();
  if (skops->op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
    if (cfg.flags & FLAG_SAVED_SYN) {
      int one = 1;
      bpf_setsockopt(skops, SOL_TCP, TCP_SAVE_SYN, &one, sizeof one);
    }
    return 1;
  }
  if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) return 1;

  struct toa_addr t = {};
  int got = find_in_packet((const __u8 *)(long)skops->skb_data, (const __u8 *)(long)skops->skb_data_end, &cfg, &t);
  if (got < 0) count(C_BAD_OPTION);
  int from_syn = 0;
  if (got <= 0 && (cfg.flags & FLAG_SAVED_SYN)) {
    __u8 buf[SYN_BUF] = {};
    int n = bpf_getsockopt(skops, SOL_TCP, TCP_BPF_SYN, buf, 60);
    if (n > 0) {
      got = find_in_buffer(buf, (__u32)n, &cfg, &t);
      if (got < 0) count(C_BAD_OPTION);
      from_syn = got > 0;
    }
  }
  if (got <= 0) {
    count(C_NO_TOA);
    return 1;
  }
  if ((cfg.flags & FLAG_TRUSTED_ONLY) && !peer_trusted(skops)) {
    count(C_UNTRUSTED);
    return 1;
  }
  struct bpf_sock *sk = skops->sk;
  if (!sk) return 1;
  struct toa_addr *slot = bpf_sk_storage_get(&toa_store, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!slot) {
    count(C_STORE_FAILED);
    return 1;
  }
  *slot = t;
  count(from_syn ? C_TOA_SAVED_SYN : got == 4 ? C_TOA_V4 : C_TOA_V6);
  return 1;
}

SEC("cgroup/getpeername4")
int toa_getpeername4(struct bpf_sock_addr *ctx) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 1;
  struct toa_addr *t = bpf_sk_storage_get(&toa_store, sk, 0, 0);
  if (!t) return 1;
  if (t->family != AF_INET) {
    count(C_V6_ON_V4_SOCKET);
    return 1;
  }
  ctx->user_ip4 = t->addr[0];
  ctx->user_port = t->port;
  count(C_REWRITTEN);
  return 1;
}

SEC("cgroup/getpeername6")
int toa_getpeername6(struct bpf_sock_addr *ctx) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 1;
  struct toa_addr *t = bpf_sk_storage_get(&toa_store, sk, 0, 0);
  if (!t) return 1;
  if (t->family == AF_INET) {
    ctx->user_ip6[0] = 0;
    ctx->user_ip6[1] = 0;
    ctx->user_ip6[2] = __builtin_bswap32(0x0000ffff);
    ctx->user_ip6[3] = t->addr[0];
  } else {
    ctx->user_ip6[0] = t->addr[0];
    ctx->user_ip6[1] = t->addr[1];
    ctx->user_ip6[2] = t->addr[2];
    ctx->user_ip6[3] = t->addr[3];
  }
  ctx->user_port = t->port;
  count(C_REWRITTEN);
  return 1;
}

char LICENSE[] SEC("license") = "GPL";
