#ifndef TUNVS_XDP_H
#define TUNVS_XDP_H
#include <node_api.h>
/* Adds the AF_XDP data path (native/xdp.c: XdpQueue, xdpLoad, xdpAttach, ...) to the exports. */
void register_xdp(napi_env env, napi_value exports);
#endif
