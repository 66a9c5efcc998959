/*
 * tunvs real-server addon: loads the TOA reader (native/bpf/toa_reader.bpf.c) with libbpf,
 * attaches it to a cgroup and pins what outlives this process in bpffs, so the reader keeps
 * working after `tunvs rs attach` exits and `tunvs rs detach` / `status` find it again.
 *
 *   attach(obj, cgroup, pinDir, config, trusted)
 *                                 load the object; fill the config map (entry 0) and the trusted
 *                                 map (keys, value 1) before any program is attached; pin the maps
 *                                 (config, counters, trusted) and one bpf_link per program under
 *                                 pinDir. All or nothing: on failure what was pinned is removed.
 *   detach(pinDir)                detach the pinned links (BPF_LINK_DETACH, so the programs
 *                                 leave the cgroup even if something else holds the link) and
 *                                 remove the pins. Returns the number of links detached.
 *   linkInfo(path)                { progId, cgroupId, attachType } of a pinned link.
 *   mapLookup/mapUpdate/mapDelete/mapKeys(path, ...)  raw bytes; per-CPU maps give
 *                                 possibleCpus * round8(valueSize) bytes.
 *   possibleCpus()
 *   decapAttach(obj, dev, generic, netns, ports)
 *                                 load the XDP decapsulator (native/bpf/ipip_decap.bpf.c), put
 *                                 GUE's UDP ports (host order) in its decap_gue_ports map, and
 *                                 attach it to `dev` (generic or driver mode) inside the network
 *                                 namespace file `netns` ("" for this one). Nothing is pinned:
 *                                 the device holds the program, `ip link set dev DEV xdp off`
 *                                 (or xdpgeneric off) removes it.
 *
 * Policy (paths, config encoding, messages) lives in src/rs/; this file only does syscalls.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#define _GNU_SOURCE /* setns */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <node_api.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../napi_check.h"

static const char *const PROGRAMS[] = {"toa_sockops", "toa_getpeername4", "toa_getpeername6"};
static const char *const MAPS[] = {"toa_config", "toa_counters", "toa_trusted"};
#define NPROGS (sizeof PROGRAMS / sizeof PROGRAMS[0])
#define NMAPS (sizeof MAPS / sizeof MAPS[0])

/* libbpf's messages (the verifier log among them) go here, to be quoted in an error. */
static char libbpf_log[8192];
static size_t libbpf_log_len;

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  if (libbpf_log_len >= sizeof libbpf_log - 1) {
    /* keep the tail: that is where the verifier says what it refused */
    memmove(libbpf_log, libbpf_log + sizeof libbpf_log / 2, sizeof libbpf_log / 2);
    libbpf_log_len = sizeof libbpf_log / 2 - 1;
  }
  int n = vsnprintf(libbpf_log + libbpf_log_len, sizeof libbpf_log - libbpf_log_len, fmt, args);
  if (n > 0) libbpf_log_len += (size_t)n < sizeof libbpf_log - libbpf_log_len ? (size_t)n : sizeof libbpf_log - libbpf_log_len - 1;
  return 0;
}

/* Throws Error(code) with "what: strerror(err)" and, when libbpf said something, its tail. */
static napi_value fail(napi_env env, int err, const char *what) {
  static const char *const codes[] = {[EPERM] = "EPERM", [EACCES] = "EACCES", [ENOENT] = "ENOENT",
                                      [EINVAL] = "EINVAL", [EEXIST] = "EEXIST", [EBUSY] = "EBUSY",
                                      [ENOTDIR] = "ENOTDIR", [EOPNOTSUPP] = "EOPNOTSUPP"};
  if (err < 0) err = -err;
  const char *code = (err < (int)(sizeof codes / sizeof codes[0]) && codes[err]) ? codes[err] : "EBPF";
  char msg[2600];
  const char *tail = libbpf_log_len > 1500 ? libbpf_log + libbpf_log_len - 1500 : libbpf_log;
  snprintf(msg, sizeof msg, "%.600s: %.200s%s%.1500s", what, strerror(err), libbpf_log_len ? "\n" : "",
           libbpf_log_len ? tail : "");
  napi_value e, m, c;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_value errno_v;
  napi_create_int32(env, err, &errno_v);
  napi_set_named_property(env, e, "errno", errno_v);
  napi_throw(env, e);
  return NULL;
}

static int get_path(napi_env env, napi_value v, char *buf, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok || len == 0 || len >= cap - 1) return -1;
  return 0;
}

/* dir/name; an over-long result becomes "" (no such path) rather than a truncated one. */
static void join(char *out, size_t cap, const char *dir, const char *name) {
  if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap) out[0] = 0;
}

static void unpin_all(const char *dir) {
  char p[4096];
  for (size_t i = 0; i < NPROGS; i++) {
    join(p, sizeof p, dir, PROGRAMS[i]);
    unlink(p);
  }
  for (size_t i = 0; i < NMAPS; i++) {
    join(p, sizeof p, dir, MAPS[i]);
    unlink(p);
  }
  rmdir(dir);
}

static int get_bytes(napi_env env, napi_value v, void **data, size_t *len);

/* Fill config entry 0 and the trusted keys before anything is attached. */
static int fill_maps(napi_env env, struct bpf_object *obj, napi_value config, napi_value trusted, const char **what) {
  void *cfg;
  size_t cfg_len;
  if (get_bytes(env, config, &cfg, &cfg_len)) return -EINVAL;
  struct bpf_map *m = bpf_object__find_map_by_name(obj, "toa_config");
  __u32 zero = 0;
  *what = "write the config map";
  if (!m || cfg_len != bpf_map__value_size(m)) return -EINVAL;
  int err = bpf_map__update_elem(m, &zero, sizeof zero, cfg, cfg_len, BPF_ANY);
  if (err) return err;
  struct bpf_map *t = bpf_object__find_map_by_name(obj, "toa_trusted");
  uint32_t n = 0;
  *what = "write the trusted map";
  if (!t || napi_get_array_length(env, trusted, &n) != napi_ok) return -EINVAL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value k;
    void *key;
    size_t klen;
    __u8 one = 1;
    if (napi_get_element(env, trusted, i, &k) != napi_ok || get_bytes(env, k, &key, &klen)) return -EINVAL;
    if (klen != bpf_map__key_size(t)) return -EINVAL;
    err = bpf_map__update_elem(t, key, klen, &one, sizeof one, BPF_ANY);
    if (err) return err;
  }
  return 0;
}

/* attach(objPath, cgroupPath, pinDir, config: Buffer, trusted: Buffer[]) */
static napi_value Attach(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char obj_path[4096], cg_path[4096], dir[4096], p[4096];
  if (argc < 5 || get_path(env, argv[0], obj_path, sizeof obj_path) || get_path(env, argv[1], cg_path, sizeof cg_path) ||
      get_path(env, argv[2], dir, sizeof dir)) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "attach(objPath, cgroupPath, pinDir, config, trusted)");
    return NULL;
  }
  libbpf_log_len = 0;
  libbpf_log[0] = 0;
  libbpf_set_print(capture_print);

  int cg = open(cg_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) return fail(env, errno, "open cgroup");
  struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
  int err = libbpf_get_error(obj);
  if (err) {
    close(cg);
    return fail(env, err, "open BPF object");
  }
  err = bpf_object__load(obj);
  if (err) {
    bpf_object__close(obj);
    close(cg);
    return fail(env, err, "load BPF programs");
  }
  const char *fill_what = NULL;
  err = fill_maps(env, obj, argv[3], argv[4], &fill_what);
  if (err) {
    bpf_object__close(obj);
    close(cg);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    return pending ? NULL : fail(env, err, fill_what);
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    err = errno;
    bpf_object__close(obj);
    close(cg);
    return fail(env, err, "create pin directory");
  }
  const char *what = NULL;
  for (size_t i = 0; i < NMAPS && !what; i++) {
    struct bpf_map *m = bpf_object__find_map_by_name(obj, MAPS[i]);
    join(p, sizeof p, dir, MAPS[i]);
    if (!m) {
      err = ENOENT;
      what = "BPF object lacks a map";
    } else if ((err = bpf_map__pin(m, p)) != 0) {
      what = "pin map";
    }
  }
  for (size_t i = 0; i < NPROGS && !what; i++) {
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, PROGRAMS[i]);
    if (!prog) {
      err = ENOENT;
      what = "BPF object lacks a program";
      break;
    }
    struct bpf_link *link = bpf_program__attach_cgroup(prog, cg);
    err = libbpf_get_error(link);
    if (err) {
      what = i == 0 ? "attach sockops to the cgroup" : "attach getpeername to the cgroup";
      break;
    }
    join(p, sizeof p, dir, PROGRAMS[i]);
    err = bpf_link__pin(link, p);
    if (err) {
      bpf_link__destroy(link); /* not pinned: closing it detaches */
      what = "pin link";
      break;
    }
    bpf_link__destroy(link); /* the pin holds it now */
  }
  if (what) {
    /* undo: detach what was attached, remove the pins */
    for (size_t i = 0; i < NPROGS; i++) {
      join(p, sizeof p, dir, PROGRAMS[i]);
      int fd = bpf_obj_get(p);
      if (fd >= 0) {
        bpf_link_detach(fd);
        close(fd);
      }
    }
    unpin_all(dir);
    bpf_object__close(obj);
    close(cg);
    return fail(env, err, what);
  }
  bpf_object__close(obj);
  close(cg);
  return NULL;
}

/* detach(pinDir) -> number of links detached */
static napi_value Detach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char dir[4096], p[4096];
  if (argc < 1 || get_path(env, argv[0], dir, sizeof dir)) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "detach(pinDir)");
    return NULL;
  }
  int detached = 0;
  for (size_t i = 0; i < NPROGS; i++) {
    join(p, sizeof p, dir, PROGRAMS[i]);
    int fd = bpf_obj_get(p);
    if (fd < 0) continue;
    if (bpf_link_detach(fd) == 0) detached++;
    close(fd);
  }
  unpin_all(dir);
  napi_value n;
  napi_create_int32(env, detached, &n);
  return n;
}

static int open_pinned(napi_env env, napi_value v, char *path, size_t cap) {
  if (get_path(env, v, path, cap)) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "expected a bpffs path");
    return -1;
  }
  int fd = bpf_obj_get(path);
  if (fd < 0) fail(env, errno, path);
  return fd;
}

static void put_number(napi_env env, napi_value o, const char *name, uint64_t v) {
  napi_value x;
  napi_create_double(env, (double)v, &x);
  napi_set_named_property(env, o, name, x);
}

/* The kernel's info record of the pinned object named by the call's first argument. */
static int pinned_info(napi_env env, napi_callback_info info, void *out, __u32 size) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "expected a bpffs path");
    return -1;
  }
  int fd = open_pinned(env, argv[0], path, sizeof path);
  if (fd < 0) return -1;
  memset(out, 0, size);
  int err = bpf_obj_get_info_by_fd(fd, out, &size);
  int e = errno;
  close(fd);
  if (err) {
    fail(env, e, path);
    return -1;
  }
  return 0;
}

/* linkInfo(path) -> { progId, linkId, cgroupId, attachType } */
static napi_value LinkInfo(napi_env env, napi_callback_info info) {
  struct bpf_link_info li;
  if (pinned_info(env, info, &li, sizeof li)) return NULL;
  napi_value o;
  CHECK(env, napi_create_object(env, &o));
  put_number(env, o, "progId", li.prog_id);
  put_number(env, o, "linkId", li.id);
  put_number(env, o, "cgroupId", li.type == BPF_LINK_TYPE_CGROUP ? li.cgroup.cgroup_id : 0);
  put_number(env, o, "attachType", li.type == BPF_LINK_TYPE_CGROUP ? li.cgroup.attach_type : 0);
  return o;
}

/* Throw a usage TypeError unless one is already pending (get_bytes throws its own). */
static napi_value arg_error(napi_env env, const char *usage) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_type_error(env, "TUNVS_ERR_ARG", usage);
  return NULL;
}

static int get_bytes(napi_env env, napi_value v, void **data, size_t *len) {
  bool is;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "expected a Buffer");
    return -1;
  }
  return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
}

/* mapLookup(path, key: Buffer, valueBytes: number) -> Buffer | null */
static napi_value MapLookup(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  void *key;
  size_t klen;
  uint32_t vlen = 0;
  if (argc < 3 || get_bytes(env, argv[1], &key, &klen) || napi_get_value_uint32(env, argv[2], &vlen) != napi_ok ||
      vlen == 0 || vlen > (1u << 20))
    return arg_error(env, "mapLookup(path, key: Buffer, valueBytes 1..1MiB)");
  int fd = open_pinned(env, argv[0], path, sizeof path);
  if (fd < 0) return NULL;
  void *out;
  napi_value buf;
  if (napi_create_buffer(env, vlen, &out, &buf) != napi_ok) {
    close(fd);
    return NULL;
  }
  int err = bpf_map_lookup_elem(fd, key, out);
  int e = errno;
  close(fd);
  if (err) {
    if (e == ENOENT) {
      napi_value null;
      napi_get_null(env, &null);
      return null;
    }
    return fail(env, e, path);
  }
  return buf;
}

/* mapUpdate(path, key: Buffer, value: Buffer) */
static napi_value MapUpdate(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  void *key, *val;
  size_t klen, vlen;
  if (argc < 3 || get_bytes(env, argv[1], &key, &klen) || get_bytes(env, argv[2], &val, &vlen))
    return arg_error(env, "mapUpdate(path, key: Buffer, value: Buffer)");
  int fd = open_pinned(env, argv[0], path, sizeof path);
  if (fd < 0) return NULL;
  int err = bpf_map_update_elem(fd, key, val, BPF_ANY);
  int e = errno;
  close(fd);
  if (err) return fail(env, e, path);
  return NULL;
}

/* mapDelete(path, key: Buffer) -> boolean (false: no such key) */
static napi_value MapDelete(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  void *key;
  size_t klen;
  if (argc < 2 || get_bytes(env, argv[1], &key, &klen)) return arg_error(env, "mapDelete(path, key: Buffer)");
  int fd = open_pinned(env, argv[0], path, sizeof path);
  if (fd < 0) return NULL;
  int err = bpf_map_delete_elem(fd, key);
  int e = errno;
  close(fd);
  if (err && e != ENOENT) return fail(env, e, path);
  napi_value r;
  napi_get_boolean(env, err == 0, &r);
  return r;
}

/* mapKeys(path, keySize) -> Buffer[] */
static napi_value MapKeys(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  uint32_t ksize = 0;
  if (argc < 2 || napi_get_value_uint32(env, argv[1], &ksize) != napi_ok || ksize == 0 || ksize > 256) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "mapKeys(path, keySize)");
    return NULL;
  }
  int fd = open_pinned(env, argv[0], path, sizeof path);
  if (fd < 0) return NULL;
  napi_value arr;
  CHECK(env, napi_create_array(env, &arr));
  unsigned char cur[256], next[256];
  const void *prev = NULL;
  uint32_t n = 0;
  while (n < 1000000 && bpf_map_get_next_key(fd, prev, next) == 0) {
    void *out;
    napi_value b;
    if (napi_create_buffer_copy(env, ksize, next, &out, &b) != napi_ok) break;
    napi_set_element(env, arr, n++, b);
    memcpy(cur, next, ksize);
    prev = cur;
  }
  close(fd);
  return arr;
}

/* Attach `prog_fd` to the device named `dev` with `flags`, inside the network namespace file
 * `netns` when it is not "" (this thread enters it and returns). 0 or -errno; `*what` says
 * which step failed. */
static int xdp_attach_in(const char *netns, const char *dev, int prog_fd, __u32 flags, const char **what) {
  int back = -1, err = 0;
  if (netns[0]) {
    back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int ns = back < 0 ? -1 : open(netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
      err = -errno;
      *what = "enter the network namespace";
      if (ns >= 0) close(ns);
      if (back >= 0) close(back);
      return err;
    }
    close(ns);
  }
  unsigned ifindex = if_nametoindex(dev);
  if (ifindex == 0) {
    err = -errno;
    *what = "find the device";
  } else if ((err = bpf_xdp_attach((int)ifindex, prog_fd, flags, NULL)) != 0) {
    *what = "attach the XDP program";
  }
  if (back >= 0) {
    if (setns(back, CLONE_NEWNET) != 0) abort(); /* this thread must not stay in another namespace */
    close(back);
  }
  return err;
}

/* decapAttach(objPath, dev, generic: boolean, netnsPath, ports: number[]) */
static napi_value DecapAttach(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char obj_path[4096], dev[IF_NAMESIZE + 1], netns[4096] = "";
  bool generic = false, is_array = false;
  uint32_t nports = 0;
  size_t len = 0;
  const char *usage = "decapAttach(objPath, dev, generic, netnsPath, ports)";
  if (argc < 5 || get_path(env, argv[0], obj_path, sizeof obj_path) ||
      napi_get_value_string_utf8(env, argv[1], dev, sizeof dev, &len) != napi_ok || len == 0 || len >= IF_NAMESIZE ||
      napi_get_value_bool(env, argv[2], &generic) != napi_ok ||
      napi_get_value_string_utf8(env, argv[3], netns, sizeof netns, &len) != napi_ok || len >= sizeof netns - 1 ||
      napi_is_array(env, argv[4], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[4], &nports) != napi_ok)
    return arg_error(env, usage);
  libbpf_log_len = 0;
  libbpf_log[0] = 0;
  libbpf_set_print(capture_print);
  struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
  int err = libbpf_get_error(obj);
  if (err) return fail(env, err, "open BPF object");
  const char *what = "load the XDP decapsulator";
  err = bpf_object__load(obj);
  struct bpf_map *ports = err ? NULL : bpf_object__find_map_by_name(obj, "decap_gue_ports");
  if (!err && !ports) {
    err = -ENOENT;
    what = "BPF object lacks the decap_gue_ports map";
  }
  for (uint32_t i = 0; !err && i < nports; i++) {
    napi_value v;
    uint32_t port = 0;
    if (napi_get_element(env, argv[4], i, &v) != napi_ok || napi_get_value_uint32(env, v, &port) != napi_ok ||
        port == 0 || port > 65535) {
      bpf_object__close(obj);
      return arg_error(env, "decapAttach: ports are 1-65535");
    }
    __u16 key = htons((__u16)port);
    __u8 one = 1;
    if ((err = bpf_map__update_elem(ports, &key, sizeof key, &one, sizeof one, BPF_ANY)) != 0)
      what = "fill decap_gue_ports";
  }
  struct bpf_program *prog = err ? NULL : bpf_object__find_program_by_name(obj, "ipip_decap");
  if (!err && !prog) {
    err = -ENOENT;
    what = "BPF object lacks the ipip_decap program";
  }
  if (!err) err = xdp_attach_in(netns, dev, bpf_program__fd(prog), generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE, &what);
  /* Attached, the device holds the program and the program its map. */
  bpf_object__close(obj);
  return err ? fail(env, err, what) : NULL;
}

static napi_value PossibleCpus(napi_env env, napi_callback_info info) {
  napi_value n;
  napi_create_int32(env, libbpf_num_possible_cpus(), &n);
  return n;
}

NAPI_MODULE_INIT() {
  struct {
    const char *name;
    napi_callback cb;
  } fns[] = {{"attach", Attach},       {"detach", Detach},       {"linkInfo", LinkInfo},
             {"mapLookup", MapLookup}, {"mapUpdate", MapUpdate}, {"mapDelete", MapDelete}, {"mapKeys", MapKeys},
             {"possibleCpus", PossibleCpus}, {"decapAttach", DecapAttach}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok) return NULL;
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}
