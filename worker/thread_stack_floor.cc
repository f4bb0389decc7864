// Linked into sparsevid-worker only. civetweb (the HTTP server inside
// prometheus-cpp's Exposer) starts its threads with a fixed 100 KiB stack,
// and glibc carves every loaded library's static TLS out of each thread's
// stack; OpenBLAS alone takes 60 KiB of TLS, so serving /metrics overflowed
// the stack. Defining pthread_attr_setstacksize in the executable interposes
// the libc one and raises explicit stack sizes to at least 1 MiB.
#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  constexpr size_t kMinStackBytes = size_t{1} << 20;
  return real(attr, size < kMinStackBytes ? kMinStackBytes : size);
}
