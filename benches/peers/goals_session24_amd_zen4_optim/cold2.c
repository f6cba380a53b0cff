#include <stdio.h>
#include <stdlib.h>
#include "precond.h"
__attribute__((noinline)) void pass(float *restrict x, const float *restrict g, size_t n) { for (size_t i = 0; i < n; i++) x[i] += -0.01f * g[i]; }
int main(int argc, char **argv) {
    size_t n = 16, m = 10000; long K = atol(argv[2]);
    float *x = aligned_alloc(64, 4096), *g = aligned_alloc(64, 4096);
    float *X = aligned_alloc(64, m * 4 + 64), *G = aligned_alloc(64, m * 4 + 64);
    for (size_t i = 0; i < m; i++) { X[i] = 1; G[i] = 1e-3f; }
    for (size_t i = 0; i < n; i++) { x[i] = 1; g[i] = 1e-3f; }
    precond_optimizer_t *o = NULL;
    if (precond_optimizer_new_json(argv[1], n, &o) != PRECOND_OK) return 1;
    for (long k = 0; k < K; k++) { pass(X, G, m); precond_optimizer_step_f32(o, x, g, n); }
    printf("%g\n", x[0]);
    return 0;
}
