{
  "targets": [
    {
      "target_name": "tunvs_rs",
      "sources": ["rs.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lbpf"]
    }
  ]
}
