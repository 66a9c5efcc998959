/*
 * ctun: the smallest TUN forwarder that can stand in a FULLNAT path, as a peer for
 * `npm run bench:lab`. It shows what the TUN design itself costs on this machine, so the
 * benchmark can tell that cost apart from tunvs's own.
 *
 * Not a load balancer: IPv4 TCP only, one local address, one real server per rule, the
 * client's port kept as the local port (so it is only correct with one client address per
 * port, as in the bench), no TOA, no timers, no state beyond one client address per port.
 * It does what a FULLNAT data path must do per packet and nothing else: one queue, one
 * thread; poll, read() until EAGAIN, rewrite addresses/ports with incremental checksums
 * (partial checksums of offloaded packets too), write() each packet back. With IFF_VNET_HDR
 * and TUNSETOFFLOAD (CSUM, TSO4, TSO6) GSO super-packets pass through whole, like tunvs.
 *
 *   ctun DEV LIP VIP:PORT=RS:PORT [VIP:PORT=RS:PORT ...]
 *
 * Runs until SIGTERM/SIGINT; prints its packet counters on exit.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define VNET_HDR_LEN 10
#define VNET_NEEDS_CSUM 1
#define BUF_SIZE (65536 + 128)
#define BURST 64
#define MAX_RULES 8

struct rule {
  uint32_t vip, rs; /* network order */
  uint16_t vport, rsport; /* network order */
  uint32_t client[65536]; /* client address by client (= local) port */
};

static struct rule rules[MAX_RULES];
static int nrules;
static uint32_t lip;
static volatile sig_atomic_t stop;
static unsigned long long rx, tx, dropped;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

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

/* Rewrite in place; 0 to forward, -1 to drop. */
static int rewrite(uint8_t *pkt, ssize_t len) {
  if (len < VNET_HDR_LEN + 40) return -1;
  int partial = pkt[0] & VNET_NEEDS_CSUM;
  uint8_t *ip = pkt + VNET_HDR_LEN;
  if ((ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP) return -1;
  int ihl = (ip[0] & 15) * 4;
  if (ihl < 20 || len < VNET_HDR_LEN + ihl + 20) return -1;
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
      return 0;
    }
  }
  return -1;
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

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: ctun DEV LIP VIP:PORT=RS:PORT [VIP:PORT=RS:PORT ...]\n");
    return 2;
  }
  if (inet_pton(AF_INET, argv[2], &lip) != 1) {
    fprintf(stderr, "ctun: bad local address %s\n", argv[2]);
    return 2;
  }
  for (int i = 3; i < argc && nrules < MAX_RULES; i++) {
    char *eq = strchr(argv[i], '=');
    struct rule *r = &rules[nrules];
    if (!eq) goto bad;
    *eq = 0;
    if (parse_addr_port(argv[i], &r->vip, &r->vport) || parse_addr_port(eq + 1, &r->rs, &r->rsport)) goto bad;
    nrules++;
    continue;
  bad:
    fprintf(stderr, "ctun: bad rule %s (want VIP:PORT=RS:PORT)\n", argv[i]);
    return 2;
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    perror("ctun: open /dev/net/tun");
    return 1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", argv[1]);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    perror("ctun: TUNSETIFF");
    return 1;
  }
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)) < 0) {
    perror("ctun: TUNSETOFFLOAD");
    return 1;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  fprintf(stderr, "ctun: %s up, %d rules\n", ifr.ifr_name, nrules);

  static uint8_t bufs[BURST][BUF_SIZE];
  static ssize_t lens[BURST];
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  while (!stop) {
    if (poll(&pfd, 1, 500) <= 0) continue;
    for (;;) {
      int n = 0;
      while (n < BURST) {
        ssize_t r = read(fd, bufs[n], BUF_SIZE);
        if (r < 0) break;
        lens[n++] = r;
      }
      rx += (unsigned long long)n;
      for (int i = 0; i < n; i++) {
        if (rewrite(bufs[i], lens[i]) < 0) {
          dropped++;
          continue;
        }
        if (write(fd, bufs[i], (size_t)lens[i]) == lens[i]) tx++;
        else dropped++;
      }
      if (n < BURST) break;
    }
  }
  fprintf(stderr, "ctun: rx %llu tx %llu dropped %llu\n", rx, tx, dropped);
  return 0;
}
