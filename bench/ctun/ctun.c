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
 * (partial checksums of offloaded packets too; the rewrite is fullnat.h, shared with
 * bench/cxdp), write() each packet back. With IFF_VNET_HDR
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

#include "fullnat.h"

#define VNET_HDR_LEN 10
#define VNET_NEEDS_CSUM 1
#define BUF_SIZE (65536 + 128)
#define BURST 64

static volatile sig_atomic_t stop;
static unsigned long long rx, tx, dropped;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* Rewrite in place; 0 to forward, -1 to drop. */
static int rewrite(uint8_t *pkt, ssize_t len) {
  if (len < VNET_HDR_LEN) return -1;
  return fullnat_rewrite(pkt + VNET_HDR_LEN, (size_t)len - VNET_HDR_LEN, pkt[0] & VNET_NEEDS_CSUM) < 0 ? -1 : 0;
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
  if (parse_rules(argc, argv, 3, 0, "ctun")) return 2;

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
