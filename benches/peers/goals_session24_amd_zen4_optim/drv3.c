#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include <x86intrin.h>
#include "precond.h"
static int cmpu(const void *a, const void *b) { uint64_t x = *(uint64_t*)a, y = *(uint64_t*)b; return x < y ? -1 : x > y; }
__attribute__((noinline)) void c_rms(float *restrict x, const float *restrict g, float *restrict v, size_t n) {
  const float lr = 0.01f, a = 0.99f, c = 1.0f - 0.99f, eps = 1e-8f;
  for (size_t i = 0; i < n; i++) { v[i] = v[i] * a + c * (g[i] * g[i]); x[i] = x[i] + (-lr) * (g[i] / (sqrtf(v[i]) + eps)); }
}
int main(int argc, char **argv) {
    size_t n = atol(argv[1]);
    long voff = atol(argv[2]);
    char *arena = aligned_alloc(4096, 1 << 21); memset(arena, 0, 1 << 21);
    float *x = (float *)(arena + 4096), *g = (float *)(arena + 4096 + 65536 + 3200);
    float *x2 = (float *)(arena + 4096 + 4 * 65536), *g2 = (float *)(arena + 4096 + 5 * 65536 + 3200), *v2 = (float *)(arena + 4096 + 6 * 65536 + voff);
    for (size_t i = 0; i < n; i++) { x[i] = x2[i] = 1; g[i] = g2[i] = 1e-3f * (i % 7 + 1); }
    precond_optimizer_t *o = NULL;
    if (precond_optimizer_new_json("{\"optimizer\":\"rmsprop\",\"lr\":0.01,\"alpha\":0.99,\"eps\":1e-8,\"nonfinite\":\"propagate\"}", n, &o) != PRECOND_OK) return 1;
    enum { R = 31 }; uint64_t t[2][R]; unsigned a;
    for (int r = 0; r < R; r++) {
        uint64_t t0 = __rdtscp(&a);
        for (int k = 0; k < 2000; k++) if (precond_optimizer_step_f32(o, x, g, n) != PRECOND_OK) return 2;
        uint64_t t1 = __rdtscp(&a);
        for (int k = 0; k < 2000; k++) c_rms(x2, g2, v2, n);
        uint64_t t2 = __rdtscp(&a);
        t[0][r] = (t1 - t0) / 2000; t[1][r] = (t2 - t1) / 2000;
    }
    qsort(t[0], R, 8, cmpu); qsort(t[1], R, 8, cmpu);
    printf("ours %lu C(v at x+%ld) %lu ratio %.3f\n", t[0][R/2], voff, t[1][R/2], (double)t[1][R/2] / t[0][R/2]);
    return 0;
}
