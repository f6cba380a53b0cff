#include <stdio.h>
#include <stdlib.h>
#include "precond.h"
int main(int argc, char **argv) {
    size_t n = argc > 1 ? atol(argv[1]) : 16; long R = argc > 2 ? atol(argv[2]) : 100000;
    const char *json = argc > 3 ? argv[3] : "{\"optimizer\":\"sgd\",\"lr\":0.01,\"nonfinite\":\"propagate\"}";
    float *x = aligned_alloc(64, n * 4 + 64), *g = aligned_alloc(64, n * 4 + 64);
    for (size_t i = 0; i < n; i++) { x[i] = 1; g[i] = 1e-3f; }
    precond_optimizer_t *o = NULL;
    if (precond_optimizer_new_json(json, n, &o) != PRECOND_OK) { fprintf(stderr, "%s\n", precond_last_error()); return 1; }
    for (long r = 0; r < R; r++) if (precond_optimizer_step_f32(o, x, g, n) != PRECOND_OK) return 2;
    printf("%g\n", x[0]);
    precond_optimizer_free(o);
}
