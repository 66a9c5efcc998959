#ifndef TUNVS_BPF_LOAD_H
#define TUNVS_BPF_LOAD_H
#include <errno.h>
#include <linux/bpf.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Load a program assembled in TypeScript (src/dataplane/bpf_asm.ts): `insns` is a
 * Uint8Array of 8-byte instructions. Returns the program's fd, or −1 with a JS error
 * thrown: a TypeError naming `usage` for a bad argument, else `code` with what failed to
 * load, the kernel's reason and the start of the verifier's log (the log is one static
 * buffer: programs are loaded on the main thread only). */
static inline int load_prog(napi_env env, napi_value insns, uint32_t prog_type, const char *usage, const char *code,
                            const char *what) {
  void *data = NULL;
  size_t len = 0, off;
  napi_typedarray_type type;
  napi_value ab;
  if (napi_get_typedarray_info(env, insns, &type, &len, &data, &ab, &off) != napi_ok || type != napi_uint8_array ||
      len == 0 || len % 8 != 0) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", usage);
    return -1;
  }
  static char log[65536];
  log[0] = 0;
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = prog_type;
  attr.insns = (uint64_t)(uintptr_t)data;
  attr.insn_cnt = (uint32_t)(len / 8);
  attr.license = (uint64_t)(uintptr_t) "GPL";
  attr.log_buf = (uint64_t)(uintptr_t)log;
  attr.log_size = sizeof log;
  attr.log_level = 1;
  int fd = (int)syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
  if (fd < 0) {
    int err = errno;
    char msg[1024];
    snprintf(msg, sizeof msg, "load %s: %s. Verifier: %.700s", what, strerror(err), log);
    napi_throw_error(env, code, msg);
  }
  return fd;
}

#endif
