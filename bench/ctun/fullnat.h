/*
 * The FULLNAT rewrite that the two C peers of `npm run bench:lab` share: ctun (a TUN
 * device, bench/ctun/ctun.c) and cxdp (AF_XDP sockets, bench/cxdp/cxdp.c). IPv4 TCP, one
 * local address, one real server per rule, the client's port kept as the local port (so
 * only correct with one client address per port, as in the bench), no TOA, no timers.
 * Included by each program's single source file; not a library.
 */
#ifndef TUNVS_BENCH_FULLNAT_H
#define TUNVS_BENCH_FULLNAT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES 8

struct rule {
  uint32_t vip, rs; /* network order */
  uint16_t vport, rsport; /* network order */
  uint32_t client[65536]; /* client address by client (= local) port */
};

/* The rules; the local address (network order). */
static struct rule rules[MAX_RULES];
static int nrules;
static uint32_t lip;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* RFC 1624 eqn. 3 for a 16-bit field at `sum` changing from `from` to `to` (host order
 * values). A partial checksum (the pseudo-header sum of an offloaded packet) is stored
 * uncomplemented, so it is updated without the complements. */
static void csum_replace16(uint8_t *sum, uint16_t from, uint16_t to, int partial) {
  uint32_t s = partial ? rd16(sum) : (uint16_t)~rd16(sum);
  s += (uint16_t)~from;
  s += to;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  wr16(sum, partial ? (uint16_t)s : (uint16_t)~s);
}

static void csum_replace32(uint8_t *sum, uint32_t from, uint32_t to, int partial) {
  from = ntohl(from);
  to = ntohl(to);
  csum_replace16(sum, (uint16_t)(from >> 16), (uint16_t)(to >> 16), partial);
  csum_replace16(sum, (uint16_t)from, (uint16_t)to, partial);
}

/* Replace a 32-bit address in the IP header at `field`: IP checksum always, TCP checksum
 * as a pseudo-header field (also when partial). */
static void set_addr(uint8_t *ip, uint8_t *tcp, int off, uint32_t to, int partial) {
  uint32_t from;
  memcpy(&from, ip + off, 4);
  memcpy(ip + off, &to, 4);
  csum_replace32(ip + 10, from, to, 0);
  csum_replace32(tcp + 16, from, to, partial);
}

/* A port is covered by the TCP checksum only when it is complete: the device sums the
 * segment itself for a partial one. */
static void set_port(uint8_t *tcp, int off, uint16_t to, int partial) {
  uint16_t from;
  memcpy(&from, tcp + off, 2);
  memcpy(tcp + off, &to, 2);
  if (!partial) csum_replace16(tcp + 16, ntohs(from), ntohs(to), 0);
}

static int parse_addr_port(const char *s, uint32_t *addr, uint16_t *port) {
  char buf[64];
  const char *colon = strrchr(s, ':');
  if (!colon || (size_t)(colon - s) >= sizeof buf) return -1;
  memcpy(buf, s, (size_t)(colon - s));
  buf[colon - s] = 0;
  int p = atoi(colon + 1);
  if (inet_pton(AF_INET, buf, addr) != 1 || p < 1 || p > 65535) return -1;
  *port = htons((uint16_t)p);
  return 0;
}

/* Rewrite the IPv4 packet at `ip` (`len` bytes) in place: 0 when it now goes to the real
 * server, 1 when it now goes to the client, -1 to drop. `partial`: the TCP checksum field
 * holds the pseudo-header sum of an offloaded packet (virtio NEEDS_CSUM), not a full sum. */
static int fullnat_rewrite(uint8_t *ip, size_t len, int partial) {
  if (len < 40 || (ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP) return -1;
  int ihl = (ip[0] & 15) * 4;
  if (ihl < 20 || len < (size_t)ihl + 20) return -1;
  uint8_t *tcp = ip + ihl;
  uint32_t saddr, daddr;
  uint16_t sport, dport;
  memcpy(&saddr, ip + 12, 4);
  memcpy(&daddr, ip + 16, 4);
  memcpy(&sport, tcp, 2);
  memcpy(&dport, tcp + 2, 2);
  for (int i = 0; i < nrules; i++) {
    struct rule *r = &rules[i];
    if (daddr == r->vip && dport == r->vport) { /* client -> VIP: to LIP -> RS */
      r->client[ntohs(sport)] = saddr;
      set_addr(ip, tcp, 12, lip, partial);
      set_addr(ip, tcp, 16, r->rs, partial);
      set_port(tcp, 2, r->rsport, partial);
      return 0;
    }
    if (daddr == lip && saddr == r->rs && sport == r->rsport) { /* RS -> LIP: to VIP -> client */
      uint32_t client = r->client[ntohs(dport)];
      if (client == 0) return -1;
      set_addr(ip, tcp, 12, r->vip, partial);
      set_addr(ip, tcp, 16, client, partial);
      set_port(tcp, 0, r->vport, partial);
      return 1;
    }
  }
  return -1;
}

/* Read the rules VIP:PORT=RS:PORT from argv[first ..]; with `one_vip`, every rule must have
 * the first one's VIP. Returns 0, or -1 after saying what is wrong on stderr. */
static int parse_rules(int argc, char **argv, int first, int one_vip, const char *prog) {
  for (int i = first; i < argc && nrules < MAX_RULES; i++) {
    char *eq = strchr(argv[i], '=');
    struct rule *r = &rules[nrules];
    if (!eq) goto bad;
    *eq = 0;
    if (parse_addr_port(argv[i], &r->vip, &r->vport) || parse_addr_port(eq + 1, &r->rs, &r->rsport)) goto bad;
    if (one_vip && nrules > 0 && r->vip != rules[0].vip) goto bad;
    nrules++;
    continue;
  bad:
    fprintf(stderr, "%s: bad rule %s (want VIP:PORT=RS:PORT%s)\n", prog, argv[i], one_vip ? ", one VIP" : "");
    return -1;
  }
  return 0;
}

#endif
