/*
 * tunvs-ha-check: keepalived's track script for a tunvs pair, without Node. Exit 0 when tunvs
 * answers on its admin socket within CHECK_TIMEOUT_MS and says it is ready to be master, else 1
 * (and one line on stderr saying why). The same question as `tunvs ha check` (src/cli/ha_check.ts):
 *
 *   args        --admin PATH (a unix socket, or tcp://HOST:PORT, tcp://[V6]:PORT) and
 *               --token T (or TUNVS_ADMIN_TOKEN), as the CLI takes them
 *   connect     non-blocking, within the deadline (a unix socket's queue full, EAGAIN: again)
 *   ask         {"cmd":"ready"} plus the token, one line of JSON
 *   read        one line back: {"ok":true,"ready":true} passes; "unknown command" (a tunvs of
 *               the version before `ready`, its package upgraded under it) asks `ha` instead
 *
 * Why C: keepalived starts the check every second on each node. A Node start costs ~0.16 s of
 * CPU (a sixth of a core per node, spent on the machine that forwards), and on a starved
 * machine it ran past keepalived's 2 s script timeout: the pair failed over with both tunvs
 * healthy (the soak's pair under load, CI). This one costs ~4 ms, its process start included.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* src/constants.ts ADMIN_SOCKET_DEFAULT */
#define ADMIN_SOCKET_DEFAULT "/run/tunvs/admin.sock"
/* src/cli/ha_check.ts CHECK_TIMEOUT_MS: under keepalived's script timeout (2 s) */
#define CHECK_TIMEOUT_MS 900
#define STR_(x) #x
#define STR(x) STR_(x)
/* The request: the command, the token (escaped, at most 6 bytes per byte) and the frame. */
#define TOKEN_MAX 1024
#define REPLY_MAX 4096

static long long deadline_ms;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *what, const char *detail) {
  fprintf(stderr, "tunvs-ha-check: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  return 1;
}

/* Wait for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events) {
  for (;;) {
    long long left = deadline_ms - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)left);
    if (n > 0) return 1;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

/* A pause between connects to a unix socket whose listener's queue is full. */
#define UNIX_RETRY_NS (5 * 1000 * 1000)

static int connect_within(int fd, const struct sockaddr *sa, socklen_t len) {
  /* A unix socket answers EAGAIN when its listener's queue of unaccepted connections is full
   * (tunvs's main thread held): nothing is in progress then, connect again until the deadline. */
  for (;;) {
    if (connect(fd, sa, len) == 0) return 0;
    if (errno != EAGAIN || sa->sa_family != AF_UNIX) break;
    if (deadline_ms - now_ms() <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct timespec pause = {.tv_sec = 0, .tv_nsec = UNIX_RETRY_NS};
    nanosleep(&pause, NULL);
  }
  if (errno != EINPROGRESS && errno != EAGAIN) return -1;
  if (wait_fd(fd, POLLOUT) != 1) {
    errno = ETIMEDOUT;
    return -1;
  }
  int err = 0;
  socklen_t l = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0) return -1;
  if (err != 0) {
    errno = err;
    return -1;
  }
  return 0;
}

/* A connected socket to PATH or tcp://HOST:PORT, or -1 with errno (EINVAL: a malformed path). */
static int open_admin(const char *path) {
  if (strncmp(path, "tcp://", 6) == 0) {
    char host[256], port[16];
    const char *h = path + 6, *end;
    if (*h == '[') {
      end = strchr(h, ']');
      if (!end || end[1] != ':') return errno = EINVAL, -1;
      h++;
    } else {
      end = strrchr(h, ':');
      if (!end) return errno = EINVAL, -1;
    }
    size_t hl = (size_t)(end - h);
    const char *p = end + (*end == ']' ? 2 : 1);
    size_t pl = strcspn(p, "/");
    if (hl == 0 || hl >= sizeof host || pl == 0 || pl >= sizeof port) return errno = EINVAL, -1;
    memcpy(host, h, hl), host[hl] = 0;
    memcpy(port, p, pl), port[pl] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai, *a;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return errno = EHOSTUNREACH, -1;
    int fd = -1;
    for (a = ai; a; a = a->ai_next) {
      fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd >= 0 && connect_within(fd, a->ai_addr, a->ai_addrlen) == 0) break;
      if (fd >= 0) close(fd);
      fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
  }
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sun.sun_path) return errno = ENAMETOOLONG, -1;
  strcpy(sun.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect_within(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* Append s as the body of a JSON string (quotes, backslashes and control bytes escaped). */
static size_t json_escape(char *out, const char *s) {
  size_t n = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') out[n++] = '\\', out[n++] = (char)c;
    else if (c < 0x20) n += (size_t)sprintf(out + n, "\\u%04x", c);
    else out[n++] = (char)c;
  }
  return n;
}

static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n, len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT) == 1) continue;
    return -1;
  }
  return 0;
}

/* Ask `cmd` and read the reply's first line (or its first REPLY_MAX bytes) into reply.
 * 0, or 1 having said why on stderr. */
static int ask(const char *admin, const char *cmd, const char *token, char *reply) {
  int fd = open_admin(admin);
  if (fd < 0 && (errno == ENOENT || errno == ECONNREFUSED)) return fail(admin, "nothing answers (tunvs is not running)");
  if (fd < 0 && errno == EINVAL) return fail(admin, "not a unix socket path, tcp://HOST:PORT or tcp://[V6]:PORT");
  if (fd < 0) return fail(admin, strerror(errno));

  char req[64 + 6 * TOKEN_MAX];
  size_t n = (size_t)sprintf(req, "{\"cmd\":\"%s\"", cmd);
  if (token) {
    n += (size_t)sprintf(req + n, ",\"token\":\"");
    n += json_escape(req + n, token);
    req[n++] = '"';
  }
  req[n++] = '}', req[n++] = '\n';
  int rc = 0;
  if (send_all(fd, req, n) != 0) rc = fail(admin, strerror(errno));
  size_t got = 0;
  while (rc == 0 && got < REPLY_MAX && !memchr(reply, '\n', got)) {
    ssize_t r = read(fd, reply + got, REPLY_MAX - got);
    if (r > 0) got += (size_t)r;
    else if (r == 0) rc = fail(admin, "closed without an answer");
    else if (errno == EAGAIN && wait_fd(fd, POLLIN) != 1) rc = fail(admin, "no answer in time (" STR(CHECK_TIMEOUT_MS) " ms)");
    else if (errno != EAGAIN && errno != EINTR) rc = fail(admin, strerror(errno));
  }
  close(fd);
  reply[got] = 0;
  char *nl = strchr(reply, '\n');
  if (nl) *nl = 0;
  return rc;
}

int main(int argc, char **argv) {
  const char *admin = ADMIN_SOCKET_DEFAULT, *token = getenv("TUNVS_ADMIN_TOKEN");
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("usage: tunvs-ha-check [--admin PATH|tcp://HOST:PORT] [--token T]\n"
             "exit 0 when tunvs answers within %d ms and is ready to be master (keepalived's track\n"
             "script: the same check as `tunvs ha check`, without starting Node)\n",
             CHECK_TIMEOUT_MS);
      return 0;
    }
    if (i + 1 < argc && strcmp(argv[i], "--admin") == 0) admin = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--token") == 0) token = argv[++i];
    else return fail("unknown argument (see --help)", argv[i]);
  }
  if (token && strlen(token) > TOKEN_MAX) return fail("the token is longer than", STR(TOKEN_MAX) " bytes");

  deadline_ms = now_ms() + CHECK_TIMEOUT_MS;
  char reply[REPLY_MAX + 1];
  if (ask(admin, "ready", token, reply) != 0) return 1;
  /* A tunvs of the version before `ready` (its package upgraded under it): its `ha` answer
   * has the same field, HaStatus's `ready`, as the first "ready" of the line. */
  if (strstr(reply, "unknown command") && ask(admin, "ha", token, reply) != 0) return 1;
  /* The reply is JSON.stringify's: no spaces. */
  const char *ready = strstr(reply, "\"ready\":");
  if (strncmp(reply, "{\"ok\":true", 10) == 0 && ready && strncmp(ready + 8, "true", 4) == 0) return 0;
  return fail("not ready", reply);
}
