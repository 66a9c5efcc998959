#ifndef TUNVS_RING_ARGS_H
#define TUNVS_RING_ARGS_H
#include <node_api.h>
#include <stdint.h>

/* Bytes of per-slot words after a ring's packet area: lens, verdicts, aux, offsets
 * (src/dataplane/ring.ts). */
#define RING_WORDS_PER_SLOT_BYTES 16

/* A plain ring as JS passes it: slot i at i × slot_size, then the per-slot words. */
typedef struct {
  uint8_t *base;
  int32_t *lens;
  int32_t *verdicts;
  uint32_t slot_size;
  uint32_t slots;
  uint32_t count;
} PlainRing;

/* The ring arrives as a Uint8Array over its whole SharedArrayBuffer: N-API on Node 20
 * cannot take a SharedArrayBuffer itself, but reads typed arrays backed by one. */
static inline int typed_bytes(napi_env env, napi_value v, void **data, size_t *bytes) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, bytes, data, &ab, &off) != napi_ok) return -1;
  return type == napi_uint8_array ? 0 : -1;
}

/* writeRing(ringBytes, slotSize, slots, count)'s arguments; 0, or −1 with a JS error thrown. */
static inline int plain_ring_args(napi_env env, size_t argc, napi_value *argv, PlainRing *r) {
  void *data = NULL;
  size_t bytes = 0;
  int32_t slot_size = 0, slots = 0, count = 0;
  if (argc < 4 || typed_bytes(env, argv[0], &data, &bytes) != 0 ||
      napi_get_value_int32(env, argv[1], &slot_size) != napi_ok ||
      napi_get_value_int32(env, argv[2], &slots) != napi_ok || napi_get_value_int32(env, argv[3], &count) != napi_ok) {
    napi_throw_type_error(env, "TUNVS_ERR_ARG", "writeRing(ringBytes: Uint8Array over the whole ring, slotSize, slots, count)");
    return -1;
  }
  if (slot_size <= 0 || slots <= 0 || count < 0 || count > slots ||
      (size_t)slot_size * (size_t)slots + (size_t)slots * RING_WORDS_PER_SLOT_BYTES > bytes) {
    napi_throw_range_error(env, "TUNVS_ERR_ARG", "ring geometry does not fit the buffer");
    return -1;
  }
  r->base = (uint8_t *)data;
  r->lens = (int32_t *)(r->base + (size_t)slot_size * (size_t)slots);
  r->verdicts = r->lens + slots;
  r->slot_size = (uint32_t)slot_size;
  r->slots = (uint32_t)slots;
  r->count = (uint32_t)count;
  return 0;
}
#endif
