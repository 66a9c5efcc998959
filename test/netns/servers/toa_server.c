/* An unmodified C server: a dual-stack AF_INET6 socket (or AF_INET with -4), the client's
 * address from accept() and again from getpeername(); answers one HTTP request per
 * connection. Usage: toa_server [-4] PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void text(const struct sockaddr_storage *ss, char *out, size_t cap) {
  char a[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const void *)ss;
    inet_ntop(AF_INET, &s->sin_addr, a, sizeof a);
    port = ntohs(s->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const void *)ss;
    inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof a);
    port = ntohs(s->sin6_port);
  }
  snprintf(out, cap, "%s:%u", strncmp(a, "::ffff:", 7) == 0 ? a + 7 : a, port);
}

int main(int argc, char **argv) {
  int v4 = argc > 2 && strcmp(argv[1], "-4") == 0;
  int port = atoi(argv[argc - 1]);
  int fd = socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM, 0);
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (v4) {
    struct sockaddr_in *s = (void *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    len = sizeof *s;
  } else {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 *s = (void *)&ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    len = sizeof *s;
  }
  if (bind(fd, (void *)&ss, len) != 0 || listen(fd, 1024) != 0) {
    perror("bind/listen");
    return 1;
  }
  printf("c listening on %d\n", port);
  fflush(stdout);
  for (;;) {
    struct sockaddr_storage peer, again;
    socklen_t plen = sizeof peer, alen = sizeof again;
    int c = accept(fd, (void *)&peer, &plen);
    if (c < 0) continue;
    getpeername(c, (void *)&again, &alen);
    char a[80], b[80], req[2048], out[256];
    text(&peer, a, sizeof a);
    text(&again, b, sizeof b);
    ssize_t n = read(c, req, sizeof req); /* one request, HTTP/1.0 */
    (void)n;
    int body = strcmp(a, b) == 0 ? snprintf(out, sizeof out, "c saw client %s\n", a)
                                 : snprintf(out, sizeof out, "c MISMATCH accept %s getpeername %s\n", a, b);
    char head[128];
    int h = snprintf(head, sizeof head, "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n", body);
    if (write(c, head, h) < 0 || write(c, out, body) < 0) perror("write");
    close(c);
  }
}
