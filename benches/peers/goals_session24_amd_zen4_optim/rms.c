#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <x86intrin.h>
#define N 10000
__attribute__((noinline)) void plain(float *restrict x, const float *restrict g, float *restrict v, size_t n) {
  const float lr = 0.01f, a = 0.99f, c = 1.0f - 0.99f, eps = 1e-8f;
  for (size_t i = 0; i < n; i++) { v[i] = v[i] * a + c * (g[i] * g[i]); x[i] = x[i] + (-lr) * (g[i] / (__builtin_sqrtf(v[i]) + eps)); }
}
/* ours: g ^= sign; v = a*v + (c*g)*g; d = sqrt(v)+eps; x += (scale*g)/d; detect */
__attribute__((noinline)) int ours(float *restrict x, const float *restrict g, float *restrict v, size_t n, int detect, int xorsign, int scalefirst, int unroll) {
  __m512 A = _mm512_set1_ps(0.99f), C = _mm512_set1_ps(1.0f - 0.99f), E = _mm512_set1_ps(1e-8f), S = _mm512_set1_ps(-0.01f);
  __m512i M = _mm512_set1_epi32(0x7fffffff), INF = _mm512_set1_epi32(0x7f7fffff), SG = _mm512_set1_epi32(xorsign ? 0 : 0);
  __mmask16 bad = 0;
  for (size_t i = 0; i < n; i += 16) {
    __m512i gi = _mm512_loadu_si512(g + i);
    if (detect) bad |= _mm512_cmpgt_epi32_mask(_mm512_and_si512(gi, M), INF);
    if (xorsign) gi = _mm512_xor_si512(gi, SG);
    __m512 gg = _mm512_castsi512_ps(gi);
    __m512 vv = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), A), _mm512_mul_ps(_mm512_mul_ps(C, gg), gg));
    _mm512_storeu_ps(v + i, vv);
    __m512 d = _mm512_add_ps(_mm512_sqrt_ps(vv), E);
    __m512 u = scalefirst ? _mm512_div_ps(_mm512_mul_ps(S, gg), d) : _mm512_mul_ps(S, _mm512_div_ps(gg, d));
    _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), u));
  }
  return bad != 0;
}
static inline uint64_t rd(void) { unsigned a; return __rdtscp(&a); }
int cmpu(const void *a, const void *b) { uint64_t x = *(uint64_t*)a, y = *(uint64_t*)b; return x < y ? -1 : x > y; }
int main(void) {
  float *x = aligned_alloc(64, N*4), *g = aligned_alloc(64, N*4), *v = aligned_alloc(64, N*4);
  for (int i = 0; i < N; i++) { x[i] = 1; g[i] = 1e-3f * (i % 7 + 1); v[i] = 1e-6f; }
  enum { R = 41, V = 5 };
  uint64_t t[V][R];
  int sink = 0;
  for (int r = 0; r < R; r++) for (int k = 0; k < V; k++) {
    for (int w = 0; w < 20; w++) { if (k == 0) plain(x, g, v, N); else sink += ours(x, g, v, N, k >= 2, k >= 3, k >= 4, 1); }
    uint64_t t0 = rd();
    for (int w = 0; w < 200; w++) { if (k == 0) plain(x, g, v, N); else sink += ours(x, g, v, N, k >= 2, k >= 3, k >= 4, 1); }
    t[k][r] = (rd() - t0) / 200;
  }
  const char *nm[V] = {"plain C", "ours bare", "+detect", "+xor", "+scalefirst"};
  for (int k = 0; k < V; k++) { qsort(t[k], R, 8, cmpu); printf("%-12s median %lu min %lu ticks\n", nm[k], t[k][R/2], t[k][0]); }
  return sink == 12345;
}
