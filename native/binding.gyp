{
  "targets": [
    {
      "target_name": "tunvs_native",
      "sources": ["tun.c", "sock.c", "stall.c", "xdp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "tunvs-ha-check",
      "type": "executable",
      "sources": ["ha_check.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
