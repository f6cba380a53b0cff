#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <x86intrin.h>
#include "precond.h"
static int cmpu(const void *a, const void *b) { uint64_t x = *(uint64_t*)a, y = *(uint64_t*)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
    size_t n = atol(argv[1]);
    const char *json = argv[2];
    float *x = aligned_alloc(64, n * 4 + 64), *g = aligned_alloc(64, n * 4 + 64);
    for (size_t i = 0; i < n; i++) { x[i] = 1; g[i] = 1e-3f; }
    precond_optimizer_t *o = NULL;
    if (precond_optimizer_new_json(json, n, &o) != PRECOND_OK) { fprintf(stderr, "%s\n", precond_last_error()); return 1; }
    enum { R = 31 }; uint64_t t[R]; unsigned a;
    for (int r = 0; r < R; r++) {
        uint64_t t0 = __rdtscp(&a);
        for (int k = 0; k < 20000; k++) if (precond_optimizer_step_f32(o, x, g, n) != PRECOND_OK) return 2;
        t[r] = (__rdtscp(&a) - t0) / 20000;
    }
    qsort(t, R, 8, cmpu);
    printf("%lu ", t[R/2]);
    precond_optimizer_free(o);
    return 0;
}
