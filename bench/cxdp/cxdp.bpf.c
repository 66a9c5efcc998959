// SPDX-License-Identifier: GPL-2.0
/*
 * cxdp's XDP program (bench/cxdp/cxdp.c): frames of IPv4 TCP addressed to the forwarder's
 * VIP or local address go to its AF_XDP socket on this queue; everything else (ARP, the
 * node's own traffic, other addresses) passes to the kernel as if nothing were attached.
 * One copy of the program (and so of its maps) per interface.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, __u32);
} xsks SEC(".maps");

/* [0] the VIP, [1] the local address (network order). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u32);
} addrs SEC(".maps");

SEC("xdp")
int cxdp(struct xdp_md *ctx)
{
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP) return XDP_PASS;
  __u32 k0 = 0, k1 = 1;
  __u32 *vip = bpf_map_lookup_elem(&addrs, &k0);
  __u32 *lip = bpf_map_lookup_elem(&addrs, &k1);
  if (!vip || !lip) return XDP_PASS;
  if (ip->daddr != *vip && ip->daddr != *lip) return XDP_PASS;
  return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
