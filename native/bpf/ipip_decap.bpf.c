// SPDX-License-Identifier: GPL-2.0
/*
 * tunvs real-server decapsulation for TUNNEL mode, for kernels without the ipip, ip6_tunnel
 * or ip_gre modules (or hosts that would rather not load them): an XDP program on the
 * interface the LB's tunnel packets arrive on.
 *
 *   decap   an IPv4 packet of protocol 4 (IPv4 in IPv4) or an IPv6 packet of next header 41
 *           (IPv6 in IPv6), outer header without options or extension headers: the outer
 *           header is cut (the Ethernet header moves up over it) and the inner packet —
 *           client → VIP, untouched by the LB — goes on up the stack, where the VIP is on
 *           the loopback device. Everything else passes as it is.
 *   gre     the same for protocol / next header 47 (a service of tunnel.type gre): a GRE
 *           header of version 0 without routing (RFC 2784 / 2890: its checksum, key and
 *           sequence number are skipped, not checked — the inner packet's own checksums
 *           are), carrying IPv4 or IPv6 (EtherType 0x0800 / 0x86dd), is cut with the outer
 *           header.
 *   gue     the same for UDP to one of the ports in decap_gue_ports (a service of tunnel.type
 *           gue; `tunvs rs decap attach --gue-port P` fills it): a GUE header of version 0,
 *           data (C clear), without extension fields or flags, naming protocol 4 or 41, is
 *           cut with the UDP and outer headers. The UDP checksum is not checked either (the
 *           inner packet's are, by the stack it goes up to).
 *
 * Fragmented tunnel packets (IPv4 without DF, larger than the path: the LB lets the kernel
 * fragment those) are reassembled only after XDP, and then need the ipip module.
 *
 * Trust: like a tunl0 or gre0 device with no fixed remote (or a fou port), it takes tunnel
 * packets from anyone that can reach the interface; filter protocols 4 / 41 / 47 and the GUE
 * ports at the edge, as for those.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* GRE flags (RFC 2784, 2890): checksum, routing, key, sequence number present; version. */
#define GRE_CSUM 0x8000
#define GRE_ROUTING 0x4000
#define GRE_KEY 0x2000
#define GRE_SEQ 0x1000
#define GRE_VERSION 0x0007

/* GUE's UDP ports (network order) → 1, filled by the loader (tunvs rs decap --gue-port). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 8);
  __type(key, __u16);
  __type(value, __u8);
} decap_gue_ports SEC(".maps");

/* Cut `len` bytes of outer header after the Ethernet header; the inner packet is of
 * EtherType `proto` (network order). */
static __always_inline int cut(struct xdp_md *ctx, int len, __be16 proto)
{
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr eth;
  if (data + sizeof(eth) > end)
    return XDP_PASS;
  __builtin_memcpy(&eth, data, sizeof(eth));
  eth.h_proto = proto;
  if (bpf_xdp_adjust_head(ctx, len))
    return XDP_DROP;
  data = (void *)(long)ctx->data;
  end = (void *)(long)ctx->data_end;
  if (data + sizeof(eth) > end)
    return XDP_DROP;
  __builtin_memcpy(data, &eth, sizeof(eth));
  return XDP_PASS;
}

/* The GRE header at `gre` (after an outer header of `outer` bytes): cut both when it
 * carries an IPv4 or IPv6 packet as a version-0 GRE without routing, else pass. */
static __always_inline int gre_decap(struct xdp_md *ctx, void *gre, int outer, void *end)
{
  __be16 *h = gre;
  if ((void *)(h + 2) > end)
    return XDP_PASS;
  __u16 flags = bpf_ntohs(h[0]);
  if (flags & (GRE_ROUTING | GRE_VERSION))
    return XDP_PASS;
  int len = 4 + (flags & GRE_CSUM ? 4 : 0) + (flags & GRE_KEY ? 4 : 0) + (flags & GRE_SEQ ? 4 : 0);
  __u8 *inner = (__u8 *)gre + len;
  if ((void *)(inner + 1) > end)
    return XDP_PASS;
  if (h[1] == bpf_htons(ETH_P_IP) && (inner[0] >> 4) == 4)
    return cut(ctx, outer + len, bpf_htons(ETH_P_IP));
  if (h[1] == bpf_htons(ETH_P_IPV6) && (inner[0] >> 4) == 6)
    return cut(ctx, outer + len, bpf_htons(ETH_P_IPV6));
  return XDP_PASS;
}

/* The UDP datagram at `udp` (after an outer header of `outer` bytes): when it goes to a GUE
 * port and carries a plain version-0 GUE header naming IPv4 or IPv6, cut the outer, UDP and
 * GUE headers (the inner packet is of the outer's family, `proto`), else pass. */
static __always_inline int gue_decap(struct xdp_md *ctx, struct udphdr *udp, int outer, void *end, __be16 proto)
{
  __u8 *gue = (__u8 *)(udp + 1);
  if ((void *)(gue + 4 + 1) > end)
    return XDP_PASS;
  __u16 port = udp->dest;
  if (!bpf_map_lookup_elem(&decap_gue_ports, &port))
    return XDP_PASS;
  /* Version 0, C clear, Hlen 0; no flags. */
  if (gue[0] != 0 || gue[2] != 0 || gue[3] != 0)
    return XDP_PASS;
  __u8 *inner = gue + 4;
  if (gue[1] == IPPROTO_IPIP && proto == bpf_htons(ETH_P_IP) && (inner[0] >> 4) == 4)
    return cut(ctx, outer + sizeof(*udp) + 4, proto);
  if (gue[1] == IPPROTO_IPV6 && proto == bpf_htons(ETH_P_IPV6) && (inner[0] >> 4) == 6)
    return cut(ctx, outer + sizeof(*udp) + 4, proto);
  return XDP_PASS;
}

SEC("xdp")
int ipip_decap(struct xdp_md *ctx)
{
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end)
    return XDP_PASS;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 ||
        (ip->protocol != IPPROTO_IPIP && ip->protocol != IPPROTO_GRE && ip->protocol != IPPROTO_UDP))
      return XDP_PASS;
    /* A fragment of a tunnel packet (the LB sent an IPv4 packet without DF that did not fit):
     * only a kernel with the ipip (ip_gre) module can take it after reassembly. */
    if (ip->frag_off & bpf_htons(0x3fff))
      return XDP_PASS;
    if (ip->protocol == IPPROTO_GRE)
      return gre_decap(ctx, ip + 1, sizeof(struct iphdr), end);
    if (ip->protocol == IPPROTO_UDP)
      return gue_decap(ctx, (void *)(ip + 1), sizeof(struct iphdr), end, bpf_htons(ETH_P_IP));
    struct iphdr *inner = ip + 1;
    if ((void *)(inner + 1) > end || inner->version != 4)
      return XDP_PASS;
    return cut(ctx, sizeof(struct iphdr), bpf_htons(ETH_P_IP));
  }
  if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > end)
      return XDP_PASS;
    if (ip6->nexthdr == IPPROTO_GRE)
      return gre_decap(ctx, ip6 + 1, sizeof(struct ipv6hdr), end);
    if (ip6->nexthdr == IPPROTO_UDP)
      return gue_decap(ctx, (void *)(ip6 + 1), sizeof(struct ipv6hdr), end, bpf_htons(ETH_P_IPV6));
    if (ip6->nexthdr != IPPROTO_IPV6)
      return XDP_PASS;
    struct ipv6hdr *inner = ip6 + 1;
    if ((void *)(inner + 1) > end || inner->version != 6)
      return XDP_PASS;
    return cut(ctx, sizeof(struct ipv6hdr), bpf_htons(ETH_P_IPV6));
  }
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
