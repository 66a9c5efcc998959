/*
 * Where the main thread is while it is held (src/control/loop_watch.ts says when it is):
 *
 *   stallStart(lateMs, periodMs)  from the main thread: note its thread id, start the sampler
 *   stallBeat()                   the main thread's watch timer ran: -> { cpuMs, waitMs, samples }
 *                                 since the previous beat: its time on a CPU and waiting for one
 *                                 (/proc/thread-self/schedstat), and what the sampler saw
 *   sampler thread                every periodMs, while the last beat is lateMs old or older: one
 *                                 look at the main thread: its state (/proc/self/task/TID/stat)
 *                                 and, asleep, where in the kernel (the top frames of its
 *                                 /proc/self/task/TID/stack, root only; else its system call)
 *   stallStop()
 *
 * A thread of its own because the held thread cannot say what holds it: by the time its timer
 * runs again, the cause is gone. The samples are counted by what they saw (at most
 * STALL_KINDS different ones, then "other"), so a stall of any length is one short line.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "stall.h"

/* Distinct things one stall's samples can name before the rest count as "other". */
#define STALL_KINDS 12
/* Kernel frames named per sample: the sleep and what led to it. */
#define STALL_FRAMES 3

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t sampler;
static atomic_bool running;
static pid_t main_tid;
static int64_t late_ms, period_ms;
static _Atomic int64_t beat_at;
static uint64_t last_cpu_ns, last_wait_ns;
static struct {
  char what[160];
  uint32_t n;
} kinds[STALL_KINDS + 1];
static int nkinds;

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The whole of a small /proc file into buf (NUL-terminated); its length, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = 0;
  return n;
}

/* The main thread's state letter (R running or runnable, S/D asleep, T stopped). */
static char state_of(pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  if (read_small(path, buf, sizeof buf) < 0) return '?';
  const char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
  return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/* "f1 < f2 < f3": the innermost kernel frames of a sleeping thread, offsets dropped. */
static bool frames_of(pid_t tid, char *out, size_t size) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/self/task/%d/stack", tid);
  if (read_small(path, buf, sizeof buf) <= 0) return false;
  size_t len = 0;
  int frames = 0;
  for (char *line = buf; *line != 0 && frames < STALL_FRAMES;) {
    char *end = strchr(line, '\n');
    if (end != NULL) *end = 0;
    char *name = strchr(line, ' '); /* "[<0>] name+0x1f/0x80" */
    if (name != NULL) {
      name++;
      name[strcspn(name, "+")] = 0;
      int w = snprintf(out + len, size - len, "%s%s", frames > 0 ? " < " : "", name);
      if (w < 0 || (size_t)w >= size - len) break;
      len += (size_t)w;
      frames++;
    }
    if (end == NULL) break;
    line = end + 1;
  }
  return frames > 0;
}

static void sample(void) {
  char what[160];
  char state = state_of(main_tid);
  if (state == 'R') {
    snprintf(what, sizeof what, "running");
  } else if (state == 'T' || state == 't') {
    snprintf(what, sizeof what, "stopped");
  } else {
    char where[140];
    if (!frames_of(main_tid, where, sizeof where)) {
      char path[64], buf[256];
      snprintf(path, sizeof path, "/proc/self/task/%d/syscall", main_tid);
      if (read_small(path, buf, sizeof buf) > 0) {
        buf[strcspn(buf, " \n")] = 0;
        snprintf(where, sizeof where, "system call %.20s", buf);
      } else {
        snprintf(where, sizeof where, "?");
      }
    }
    snprintf(what, sizeof what, "%s %s", state == 'D' ? "waiting (D) in" : "asleep in", where);
  }
  pthread_mutex_lock(&mu);
  int k = 0;
  while (k < nkinds && strcmp(kinds[k].what, what) != 0) k++;
  if (k == nkinds) {
    if (nkinds < STALL_KINDS) {
      snprintf(kinds[k].what, sizeof kinds[k].what, "%s", what);
      nkinds++;
    } else {
      k = STALL_KINDS;
      snprintf(kinds[k].what, sizeof kinds[k].what, "other");
    }
  }
  kinds[k].n++;
  pthread_mutex_unlock(&mu);
}

static void *sampler_main(void *arg) {
  (void)arg;
  struct timespec nap = {.tv_sec = period_ms / 1000, .tv_nsec = (period_ms % 1000) * 1000000};
  while (atomic_load(&running)) {
    nanosleep(&nap, NULL);
    if (atomic_load(&running) && now_ms() - atomic_load(&beat_at) >= late_ms) sample();
  }
  return NULL;
}

/* The calling thread's time on a CPU and waiting for one, in ns; false without schedstat. */
static bool schedstat(uint64_t *cpu, uint64_t *wait) {
  char buf[128];
  if (read_small("/proc/thread-self/schedstat", buf, sizeof buf) <= 0) return false;
  unsigned long long c, w;
  if (sscanf(buf, "%llu %llu", &c, &w) != 2) return false;
  *cpu = c;
  *wait = w;
  return true;
}

static napi_value StallStart(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int64_t late = 0, period = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int64(env, argv[0], &late) != napi_ok || napi_get_value_int64(env, argv[1], &period) != napi_ok ||
      late < 1 || period < 1) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "stallStart(lateMs, periodMs)");
    return NULL;
  }
  if (atomic_load(&running)) return NULL;
  main_tid = (pid_t)syscall(SYS_gettid);
  late_ms = late;
  period_ms = period;
  atomic_store(&beat_at, now_ms());
  schedstat(&last_cpu_ns, &last_wait_ns);
  nkinds = 0;
  memset(kinds, 0, sizeof kinds);
  atomic_store(&running, true);
  int err = pthread_create(&sampler, NULL, sampler_main, NULL);
  if (err != 0) {
    atomic_store(&running, false);
    napi_throw_error(env, "ESYS", strerror(err));
  }
  return NULL;
}

static napi_value StallBeat(napi_env env, napi_callback_info info) {
  (void)info;
  atomic_store(&beat_at, now_ms());
  napi_value out, v;
  napi_create_object(env, &out);
  uint64_t cpu, wait;
  if (schedstat(&cpu, &wait)) {
    napi_create_double(env, (double)(cpu - last_cpu_ns) / 1e6, &v);
    napi_set_named_property(env, out, "cpuMs", v);
    napi_create_double(env, (double)(wait - last_wait_ns) / 1e6, &v);
    napi_set_named_property(env, out, "waitMs", v);
    last_cpu_ns = cpu;
    last_wait_ns = wait;
  }
  pthread_mutex_lock(&mu);
  int n = nkinds + (kinds[STALL_KINDS].n > 0 ? 1 : 0);
  if (n > 0) {
    napi_value list;
    napi_create_array_with_length(env, (size_t)n, &list);
    int at = 0;
    for (int k = 0; k <= STALL_KINDS; k++) {
      if (kinds[k].n == 0) continue;
      napi_value pair, what, count;
      napi_create_array_with_length(env, 2, &pair);
      napi_create_string_utf8(env, kinds[k].what, NAPI_AUTO_LENGTH, &what);
      napi_create_uint32(env, kinds[k].n, &count);
      napi_set_element(env, pair, 0, what);
      napi_set_element(env, pair, 1, count);
      napi_set_element(env, list, (uint32_t)at++, pair);
    }
    napi_set_named_property(env, out, "samples", list);
    nkinds = 0;
    memset(kinds, 0, sizeof kinds);
  }
  pthread_mutex_unlock(&mu);
  return out;
}

static napi_value StallStop(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  if (atomic_exchange(&running, false)) pthread_join(sampler, NULL);
  return NULL;
}

void register_stall(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "stallStart", NAPI_AUTO_LENGTH, StallStart, NULL, &fn);
  napi_set_named_property(env, exports, "stallStart", fn);
  napi_create_function(env, "stallBeat", NAPI_AUTO_LENGTH, StallBeat, NULL, &fn);
  napi_set_named_property(env, exports, "stallBeat", fn);
  napi_create_function(env, "stallStop", NAPI_AUTO_LENGTH, StallStop, NULL, &fn);
  napi_set_named_property(env, exports, "stallStop", fn);
}
