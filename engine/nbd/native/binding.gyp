{
  "targets": [
    {
      "target_name": "okeanos_socket",
      "sources": ["socket_buffer.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
