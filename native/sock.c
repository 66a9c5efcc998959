/*
 * Socket and process helpers Node does not expose, for the real-server side:
 *
 *   setSaveSyn(fd, on)   TCP_SAVE_SYN on a listening socket: the kernel keeps each
 *                        connection's SYN (IP + TCP headers) until it is read.
 *   savedSyn(fd)         TCP_SAVED_SYN of an accepted socket -> Buffer (IP header first),
 *                        or null when there is none (not saved, or already read: reading
 *                        frees it).
 *   execvp(file, args)   replace this process (`tunvs rs exec`): the app keeps the PID, the
 *                        cgroup and the namespaces this process joined. Returns only on error.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sock.h"

static napi_value throw_sys(napi_env env, int err, const char *what) {
  char msg[640];
  snprintf(msg, sizeof msg, "%.500s: %s", what, strerror(err));
  napi_throw_error(env, err == EPERM || err == EACCES ? "EPERM" : err == ENOENT ? "ENOENT" : "ESYS", msg);
  return NULL;
}

static napi_value SetSaveSyn(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  bool on = true;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_bool(env, argv[1], &on) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "setSaveSyn(fd, on)");
    return NULL;
  }
  int v = on ? 1 : 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_SAVE_SYN, &v, sizeof v) != 0) return throw_sys(env, errno, "setsockopt(TCP_SAVE_SYN)");
  return NULL;
}

static napi_value SavedSyn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "savedSyn(fd)");
    return NULL;
  }
  unsigned char buf[512]; /* IPv6 + extension headers + a full TCP header fit */
  socklen_t len = sizeof buf;
  if (getsockopt(fd, IPPROTO_TCP, TCP_SAVED_SYN, buf, &len) != 0) return throw_sys(env, errno, "getsockopt(TCP_SAVED_SYN)");
  napi_value r;
  if (len == 0) {
    napi_get_null(env, &r);
    return r;
  }
  void *out;
  if (napi_create_buffer_copy(env, len, buf, &out, &r) != napi_ok) return NULL;
  return r;
}

static napi_value Execvp(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char file[4096];
  size_t flen = 0;
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], file, sizeof file, &flen) != napi_ok || flen == 0 ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || n > 4096) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "execvp(file, args)");
    return NULL;
  }
  char **args = calloc(n + 2, sizeof *args);
  if (!args) return throw_sys(env, ENOMEM, "execvp");
  args[0] = strdup(file);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    size_t len = 0;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
      napi_throw_type_error(env, "TUNVS_ERR_ARG", "execvp: args must be strings");
      return NULL;
    }
    args[i + 1] = malloc(len + 1);
    napi_get_value_string_utf8(env, v, args[i + 1], len + 1, &len);
  }
  /* What Node changed about this process that an exec'd program does not expect: its stdio
   * marked close-on-exec and non-blocking, SIGPIPE ignored, signals blocked on this thread. */
  for (int fd = 0; fd <= 2; fd++) {
    int fdflags = fcntl(fd, F_GETFD);
    if (fdflags >= 0) fcntl(fd, F_SETFD, fdflags & ~FD_CLOEXEC);
    int flflags = fcntl(fd, F_GETFL);
    if (flflags >= 0) fcntl(fd, F_SETFL, flflags & ~O_NONBLOCK);
  }
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  execvp(file, args);
  int err = errno;
  for (uint32_t i = 0; i <= n; i++) free(args[i]);
  free(args);
  char what[4200];
  snprintf(what, sizeof what, "cannot run %s", file);
  return throw_sys(env, err, what);
}

void register_sock(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "setSaveSyn", NAPI_AUTO_LENGTH, SetSaveSyn, NULL, &fn);
  napi_set_named_property(env, exports, "setSaveSyn", fn);
  napi_create_function(env, "savedSyn", NAPI_AUTO_LENGTH, SavedSyn, NULL, &fn);
  napi_set_named_property(env, exports, "savedSyn", fn);
  napi_create_function(env, "execvp", NAPI_AUTO_LENGTH, Execvp, NULL, &fn);
  napi_set_named_property(env, exports, "execvp", fn);
}
