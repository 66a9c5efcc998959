#ifndef TUNVS_NL_NEIGH_H
#define TUNVS_NL_NEIGH_H
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stddef.h>
#include <stdint.h>

/* Neighbour states whose link-layer address can be sent to (ip-neighbour(8)). */
#define NUD_USABLE (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT)

/* The payload of attribute `type` of an RTM_NEWNEIGH message if it is `len` bytes long, else
 * NULL (NDA_DST: 4 or 16 bytes; NDA_LLADDR: 6 on Ethernet). */
static inline const uint8_t *neigh_attr(const struct nlmsghdr *h, unsigned short type, size_t len) {
  const struct ndmsg *nd = NLMSG_DATA(h);
  int left = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *nd));
  for (const struct rtattr *a = (const struct rtattr *)((const uint8_t *)nd + NLMSG_ALIGN(sizeof *nd));
       RTA_OK(a, left); a = RTA_NEXT(a, left))
    if (a->rta_type == type && RTA_PAYLOAD(a) == len) return RTA_DATA(a);
  return NULL;
}

#endif
