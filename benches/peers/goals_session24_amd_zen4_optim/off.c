#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include <x86intrin.h>
#define N 10000
typedef float T;
__attribute__((noinline)) void k_sgd(T *restrict x, const T *restrict g, T *restrict s0, T *restrict s1, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = x[i] + (-0.01f) * g[i];
}
__attribute__((noinline)) void k_mom(T *restrict x, const T *restrict g, T *restrict s0, T *restrict s1, size_t n) {
  for (size_t i = 0; i < n; i++) { s0[i] = s0[i] * 0.9f + g[i]; x[i] = x[i] + (-0.01f) * s0[i]; }
}
__attribute__((noinline)) void k_rms(T *restrict x, const T *restrict g, T *restrict s0, T *restrict s1, size_t n) {
  for (size_t i = 0; i < n; i++) { s0[i] = s0[i] * 0.99f + 0.01f * (g[i] * g[i]); x[i] = x[i] + (-0.01f) * (g[i] / (sqrtf(s0[i]) + 1e-8f)); }
}
__attribute__((noinline)) void k_adam(T *restrict x, const T *restrict g, T *restrict s0, T *restrict s1, size_t n) {
  for (size_t i = 0; i < n; i++) { s0[i] = s0[i] * 0.9f + 0.1f * g[i]; s1[i] = s1[i] * 0.999f + 0.001f * (g[i] * g[i]);
    x[i] = x[i] + (-0.001f) * (s0[i] / (sqrtf(s1[i]) * 1.3f + 1e-8f)); }
}
typedef void (*kfn)(T *restrict, const T *restrict, T *restrict, T *restrict, size_t);
static inline uint64_t rd(void) { unsigned a; return __rdtscp(&a); }
int cmpu(const void *a, const void *b) { uint64_t x = *(uint64_t*)a, y = *(uint64_t*)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  const char *kn = argv[1]; long go = atol(argv[2]);
  kfn k = !strcmp(kn, "sgd") ? k_sgd : !strcmp(kn, "mom") ? k_mom : !strcmp(kn, "rms") ? k_rms : k_adam;
  long so[] = {0, 64, 128, 256, 1024, 2048, 3072, -64, -128};
  enum { V = sizeof so / sizeof so[0], R = 31 };
  char *arena = aligned_alloc(4096, 1 << 20); memset(arena, 0, 1 << 20);
  uint64_t t[V][R];
  for (int r = 0; r < R; r++) for (int v = 0; v < V; v++) {
    T *x = (T *)(arena + 4096), *g = (T *)(arena + 65536 + go);
    T *s0 = (T *)(arena + 131072 + 4096 + so[v]), *s1 = (T *)(arena + 196608 + 4096 + so[v] + 1024);
    if (r == 0 && v == 0) for (int i = 0; i < N; i++) { x[i] = 1; g[i] = 1e-3f * (i % 7 + 1); }
    for (int w = 0; w < 20; w++) k(x, g, s0, s1, N);
    uint64_t t0 = rd();
    for (int w = 0; w < 200; w++) k(x, g, s0, s1, N);
    t[v][r] = (rd() - t0) / 200;
  }
  printf("%-4s g%+5ld |", kn, go);
  for (int v = 0; v < V; v++) { qsort(t[v], R, 8, cmpu); printf(" %+5ld:%5lu", so[v], t[v][R/2]); }
  printf("\n");
  return 0;
}
