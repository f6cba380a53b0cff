#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <x86intrin.h>
#include "precond.h"
static int cmpu(const void *a, const void *b) { uint64_t x = *(uint64_t*)a, y = *(uint64_t*)b; return x < y ? -1 : x > y; }
/* streams `n` floats (x += c*g, like an SGD pass): evicts the L1 */
__attribute__((noinline)) void pass(float *restrict x, const float *restrict g, size_t n) { for (size_t i = 0; i < n; i++) x[i] += -0.01f * g[i]; }
int main(int argc, char **argv) {
    size_t n = 16, m = atol(argv[2]);
    const char *json = argv[1];
    float *x = aligned_alloc(64, 4096), *g = aligned_alloc(64, 4096);
    float *X = aligned_alloc(64, m * 4 + 64), *G = aligned_alloc(64, m * 4 + 64);
    for (size_t i = 0; i < m; i++) { X[i] = 1; G[i] = 1e-3f; }
    for (size_t i = 0; i < n; i++) { x[i] = 1; g[i] = 1e-3f; }
    precond_optimizer_t *o = NULL;
    if (precond_optimizer_new_json(json, n, &o) != PRECOND_OK) { fprintf(stderr, "%s\n", precond_last_error()); return 1; }
    enum { R = 31, K = 2000 }; uint64_t t[3][R]; unsigned a;
    for (int r = 0; r < R; r++) {
        uint64_t t0 = __rdtscp(&a);
        for (int k = 0; k < K; k++) pass(X, G, m);
        uint64_t t1 = __rdtscp(&a);
        for (int k = 0; k < K; k++) { pass(X, G, m); precond_optimizer_step_f32(o, x, g, n); }
        uint64_t t2 = __rdtscp(&a);
        for (int k = 0; k < K; k++) precond_optimizer_step_f32(o, x, g, n);
        uint64_t t3 = __rdtscp(&a);
        t[0][r] = (t1 - t0) / K; t[1][r] = (t2 - t1) / K; t[2][r] = (t3 - t2) / K;
    }
    for (int i = 0; i < 3; i++) qsort(t[i], R, 8, cmpu);
    printf("pass %lu, pass+step %lu -> step after a pass %ld ticks; step alone (warm) %lu\n", t[0][R/2], t[1][R/2], (long)t[1][R/2] - (long)t[0][R/2], t[2][R/2]);
    return 0;
}
