// SPDX-License-Identifier: GPL-2.0
/*
 * tunvs real-server IPIP decapsulation for TUNNEL mode, for kernels without the ipip and
 * ip6_tunnel modules (or hosts that would rather not load them): an XDP program on the
 * interface the LB's tunnel packets arrive on.
 *
 *   decap   an IPv4 packet of protocol 4 (IPv4 in IPv4) or an IPv6 packet of next header 41
 *           (IPv6 in IPv6), outer header without options or extension headers: the outer
 *           header is cut (the Ethernet header moves up over it) and the inner packet —
 *           client → VIP, untouched by the LB — goes on up the stack, where the VIP is on
 *           the loopback device. Everything else passes as it is.
 *
 * Fragmented tunnel packets (IPv4 without DF, larger than the path: the LB lets the kernel
 * fragment those) are reassembled only after XDP, and then need the ipip module.
 *
 * Trust: like a tunl0 device with no fixed remote, it takes tunnel packets from anyone that
 * can reach the interface; filter protocol 4 / 41 at the edge, as for tunl0.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Cut `len` bytes of outer header after the Ethernet header. */
static __always_inline int cut(struct xdp_md *ctx, int len)
{
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr eth;
  if (data + sizeof(eth) > end)
    return XDP_PASS;
  __builtin_memcpy(&eth, data, sizeof(eth));
  if (bpf_xdp_adjust_head(ctx, len))
    return XDP_DROP;
  data = (void *)(long)ctx->data;
  end = (void *)(long)ctx->data_end;
  if (data + sizeof(eth) > end)
    return XDP_DROP;
  __builtin_memcpy(data, &eth, sizeof(eth));
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
    if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_IPIP || ip->ihl != 5)
      return XDP_PASS;
    /* A fragment of a tunnel packet (the LB sent an IPv4 packet without DF that did not fit):
     * only a kernel with the ipip module can take it after reassembly. */
    if (ip->frag_off & bpf_htons(0x3fff))
      return XDP_PASS;
    struct iphdr *inner = ip + 1;
    if ((void *)(inner + 1) > end || inner->version != 4)
      return XDP_PASS;
    return cut(ctx, sizeof(struct iphdr));
  }
  if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_IPV6)
      return XDP_PASS;
    struct ipv6hdr *inner = ip6 + 1;
    if ((void *)(inner + 1) > end || inner->version != 6)
      return XDP_PASS;
    return cut(ctx, sizeof(struct ipv6hdr));
  }
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
