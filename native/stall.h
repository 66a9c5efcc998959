#ifndef TUNVS_STALL_H
#define TUNVS_STALL_H
#include <node_api.h>
/* Adds stallStart, stallBeat and stallStop (native/stall.c) to the addon's exports. */
void register_stall(napi_env env, napi_value exports);
#endif
