#ifndef TUNVS_NAPI_CHECK_H
#define TUNVS_NAPI_CHECK_H
#include <node_api.h>

/* Return NULL (to JS: throw) when an N-API call fails. */
#define CHECK(env, call)                                                                   \
  do {                                                                                     \
    if ((call) != napi_ok) {                                                               \
      napi_throw_error((env), "TUNVS_ERR_NAPI", "N-API call failed: " #call);             \
      return NULL;                                                                         \
    }                                                                                      \
  } while (0)

#endif
