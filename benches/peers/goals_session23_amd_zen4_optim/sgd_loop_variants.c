#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x86intrin.h>
#define N 10000
static float *X, *G;
__attribute__((noinline)) void ref(float *restrict x, const float *restrict g, size_t n, float lr) {
    for (size_t i = 0; i < n; i++) x[i] -= lr * g[i];
}
__attribute__((noinline)) void v512u1(float *x, const float *g, size_t n, float lr) {
    __m512 l = _mm512_set1_ps(lr);
    for (size_t i = 0; i < n; i += 16) {
        __m512 a = _mm512_load_ps(x + i), b = _mm512_loadu_ps(g + i);
        _mm512_store_ps(x + i, _mm512_fnmadd_ps(l, b, a));
    }
}
__attribute__((noinline)) void v512u4(float *x, const float *g, size_t n, float lr) {
    __m512 l = _mm512_set1_ps(lr);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a0 = _mm512_load_ps(x + i), a1 = _mm512_load_ps(x + i + 16), a2 = _mm512_load_ps(x + i + 32), a3 = _mm512_load_ps(x + i + 48);
        __m512 b0 = _mm512_load_ps(g + i), b1 = _mm512_load_ps(g + i + 16), b2 = _mm512_load_ps(g + i + 32), b3 = _mm512_load_ps(g + i + 48);
        _mm512_store_ps(x + i, _mm512_fnmadd_ps(l, b0, a0));
        _mm512_store_ps(x + i + 16, _mm512_fnmadd_ps(l, b1, a1));
        _mm512_store_ps(x + i + 32, _mm512_fnmadd_ps(l, b2, a2));
        _mm512_store_ps(x + i + 48, _mm512_fnmadd_ps(l, b3, a3));
    }
    for (; i < n; i += 16) _mm512_store_ps(x + i, _mm512_fnmadd_ps(l, _mm512_load_ps(g + i), _mm512_load_ps(x + i)));
}
__attribute__((noinline)) void v256u4(float *x, const float *g, size_t n, float lr) {
    __m256 l = _mm256_set1_ps(lr);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a0 = _mm256_load_ps(x + i), a1 = _mm256_load_ps(x + i + 8), a2 = _mm256_load_ps(x + i + 16), a3 = _mm256_load_ps(x + i + 24);
        __m256 b0 = _mm256_load_ps(g + i), b1 = _mm256_load_ps(g + i + 8), b2 = _mm256_load_ps(g + i + 16), b3 = _mm256_load_ps(g + i + 24);
        _mm256_store_ps(x + i, _mm256_fnmadd_ps(l, b0, a0));
        _mm256_store_ps(x + i + 8, _mm256_fnmadd_ps(l, b1, a1));
        _mm256_store_ps(x + i + 16, _mm256_fnmadd_ps(l, b2, a2));
        _mm256_store_ps(x + i + 24, _mm256_fnmadd_ps(l, b3, a3));
    }
    for (; i < n; i += 8) _mm256_store_ps(x + i, _mm256_fnmadd_ps(l, _mm256_load_ps(g + i), _mm256_load_ps(x + i)));
}
__attribute__((noinline)) void v512pf(float *x, const float *g, size_t n, float lr) {
    __m512 l = _mm512_set1_ps(lr);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        _mm_prefetch((const char*)(x + i + PF), _MM_HINT_T0);
        _mm_prefetch((const char*)(x + i + PF + 16), _MM_HINT_T0);
        _mm_prefetch((const char*)(x + i + PF + 32), _MM_HINT_T0);
        _mm_prefetch((const char*)(x + i + PF + 48), _MM_HINT_T0);
        _mm_prefetch((const char*)(g + i + PF), _MM_HINT_T0);
        _mm_prefetch((const char*)(g + i + PF + 16), _MM_HINT_T0);
        _mm_prefetch((const char*)(g + i + PF + 32), _MM_HINT_T0);
        _mm_prefetch((const char*)(g + i + PF + 48), _MM_HINT_T0);
        __m512 a0 = _mm512_load_ps(x + i), a1 = _mm512_load_ps(x + i + 16), a2 = _mm512_load_ps(x + i + 32), a3 = _mm512_load_ps(x + i + 48);
        __m512 b0 = _mm512_load_ps(g + i), b1 = _mm512_load_ps(g + i + 16), b2 = _mm512_load_ps(g + i + 32), b3 = _mm512_load_ps(g + i + 48);
        _mm512_store_ps(x + i, _mm512_fnmadd_ps(l, b0, a0));
        _mm512_store_ps(x + i + 16, _mm512_fnmadd_ps(l, b1, a1));
        _mm512_store_ps(x + i + 32, _mm512_fnmadd_ps(l, b2, a2));
        _mm512_store_ps(x + i + 48, _mm512_fnmadd_ps(l, b3, a3));
    }
    for (; i < n; i += 16) _mm512_store_ps(x + i, _mm512_fnmadd_ps(l, _mm512_load_ps(g + i), _mm512_load_ps(x + i)));
}
typedef void (*fn)(float *, const float *, size_t, float);
int main(int argc, char **argv) {
    size_t goff = argc > 1 ? atoi(argv[1]) : 0;
    X = aligned_alloc(4096, 4 * N + 8192); G = aligned_alloc(4096, 4 * N + 8192 + 4096);
    G = (float *)((char *)G + goff);
    for (int i = 0; i < N; i++) { X[i] = 1; G[i] = 1e-3f; }
    fn f[] = {ref, v512u1, v512u4, v256u4, v512pf};
    const char *nm[] = {"gcc", "512u1", "512u4", "256u4", "512pf"};
    double best[5][3];
    for (int k = 0; k < 5; k++) best[k][0] = 1e30;
    for (int round = 0; round < 41; round++)
        for (int k = 0; k < 5; k++) {
            unsigned long long t = __rdtsc();
            for (int r = 0; r < 200; r++) f[k](X, G, N, 1e-9f);
            double c = (double)(__rdtsc() - t) / 200;
            if (c < best[k][0]) best[k][0] = c;
        }
    for (int k = 0; k < 5; k++) printf("%s %.0f ticks\n", nm[k], best[k][0]);
}
