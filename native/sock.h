#ifndef TUNVS_SOCK_H
#define TUNVS_SOCK_H
#include <node_api.h>
/* Adds setSaveSyn, savedSyn and execvp (native/sock.c) to the addon's exports. */
void register_sock(napi_env env, napi_value exports);
#endif
