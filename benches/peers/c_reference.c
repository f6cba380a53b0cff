/* Native C reference loops of the per-element optimizers, timed against precond's steps in the
 * same process (issue 17: "at n = 1e4 at least a native C reference loop of the same
 * arithmetic").
 *
 * Each loop is torch.optim's single-tensor update written out in C, one pass per step, in the
 * order torch applies its operations (torch/optim/{sgd,adagrad,rmsprop,adam}.py, torch 2.x,
 * defaults as below), the scalars (bias corrections, step sizes) computed in double as Python
 * does, then used in the buffer's precision:
 *
 *   sgd           x -= lr g                                           lr 0.01
 *   sgd_momentum  b = g (first step), b = mu b + g; x -= lr b         lr 0.01, mu 0.9
 *   sgd_nesterov  the same b; x -= lr (g + mu b)                      lr 0.01, mu 0.9
 *   adagrad       s += g g; x -= lr g / (sqrt(s) + eps)               lr 0.01, eps 1e-10
 *   rmsprop       v = a v + (1 - a) g g; x -= lr g / (sqrt(v) + eps)  lr 0.01, a 0.99, eps 1e-8
 *   adam          m += (1 - b1)(g - m); v = b2 v + (1 - b2) g g;
 *                 x -= (lr / c1) m / (sqrt(v) / sqrt(c2) + eps)       lr 1e-3, b 0.9/0.999,
 *                                                                     eps 1e-8, c_i = 1 - b_i^t
 *   adamw         x *= 1 - lr wd, then adam                           wd 0.01
 *
 * precond's default ("error") policy also scans g for NaN/inf before writing anything; the
 * "propagate" policy does not (torch's and this loop's semantics). Both are timed.
 *
 * Build (the bench; -fno-math-errno lets gcc vectorize sqrt, so the reference is the best
 * loop the compiler makes of this arithmetic):
 *   cargo build --release -p precond-ffi
 *   gcc -O3 -march=native -fno-math-errno -std=c99 -Iinclude benches/peers/c_reference.c           \
 *       -Ltarget/release -lprecond_ffi -Wl,-rpath,$PWD/target/release -lm -o /tmp/c_reference
 *   /tmp/c_reference bench [n ...]          default n = 10000; prints one line per case
 *                                           (C_REFERENCE_ONLY=adam: that optimizer only;
 *                                           C_REFERENCE_POLICY=error or propagate: that one)
 *   /tmp/c_reference check                  both sides agree (exit 1 if not)
 *
 * `check` runs five steps of every optimizer, both precisions, from the same start on both sides
 * with a different gradient each step, and requires every parameter to agree within the
 * rounding the two may differ by where they order an operation differently (ISO C mode,
 * -std=c99, turns off gcc's contraction of a*b+c into an FMA, so each operation rounds once as
 * in torch); crates/precond-ffi/tests/c_reference.rs runs it, and runs it again with
 * C_REFERENCE_PERTURB=1 (every reference learning rate 1 % off), which must fail. `bench`
 * checks the same way before it times anything.
 *
 * Timing: at each size, for each case, ROUNDS rounds; in each round a block of steps of each
 * side (their order alternating between rounds), each block as many steps as make about 2 ms;
 * the ratio of a round is (C time per step) / (precond time per step), i.e. precond's
 * throughput over the reference's; printed: the median over the rounds, and the range. */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "precond.h"

#define ROUNDS 15

enum kind { SGD, SGD_MOMENTUM, SGD_NESTEROV, ADAGRAD, RMSPROP, ADAM, ADAMW, N_KINDS };
static const char *const NAMES[N_KINDS] = {"sgd",     "sgd_momentum", "sgd_nesterov", "adagrad",
                                           "rmsprop", "adam",         "adamw"};
static const char *const CONFIGS[N_KINDS] = {
    "\"optimizer\": \"sgd\", \"lr\": 0.01",
    "\"optimizer\": \"sgd\", \"lr\": 0.01, \"momentum\": 0.9",
    "\"optimizer\": \"sgd\", \"lr\": 0.01, \"momentum\": 0.9, \"nesterov\": true",
    "\"optimizer\": \"adagrad\", \"lr\": 0.01, \"eps\": 1e-10",
    "\"optimizer\": \"rmsprop\", \"lr\": 0.01, \"alpha\": 0.99, \"eps\": 1e-8",
    "\"optimizer\": \"adam\", \"lr\": 0.001, \"betas\": [0.9, 0.999], \"eps\": 1e-8",
    "\"optimizer\": \"adamw\", \"lr\": 0.001, \"betas\": [0.9, 0.999], \"eps\": 1e-8, "
    "\"weight_decay\": 0.01",
};

/* Multiplies every learning rate of the reference loops: 1, or 1.01 under
 * C_REFERENCE_PERTURB=1 (the test's proof that `check` can fail). */
static double lr_scale = 1.0;

/* The reference loop for one element type: the state is two buffers (s0, s1) and the step
 * number t (1 for the first step). */
#define DEFINE_STEP(T, SUF, SQRT)                                                                   \
    static void ref_step_##SUF(enum kind k, T *restrict x, const T *restrict g, T *restrict s0,     \
                               T *restrict s1, size_t n, long t) {                                  \
        switch (k) {                                                                                \
        case SGD: {                                                                                 \
            const T lr = (T)(0.01 * lr_scale);                                                      \
            for (size_t i = 0; i < n; i++) x[i] = x[i] + (-lr) * g[i];                              \
            break;                                                                                  \
        }                                                                                           \
        case SGD_MOMENTUM:                                                                          \
        case SGD_NESTEROV: {                                                                        \
            const T lr = (T)(0.01 * lr_scale), mu = (T)0.9;                                         \
            const int nesterov = k == SGD_NESTEROV;                                                 \
            for (size_t i = 0; i < n; i++) {                                                        \
                s0[i] = t == 1 ? g[i] : s0[i] * mu + g[i];                                          \
                const T u = nesterov ? g[i] + mu * s0[i] : s0[i];                                   \
                x[i] = x[i] + (-lr) * u;                                                            \
            }                                                                                       \
            break;                                                                                  \
        }                                                                                           \
        case ADAGRAD: {                                                                             \
            const T lr = (T)(0.01 * lr_scale), eps = (T)1e-10;                                      \
            for (size_t i = 0; i < n; i++) {                                                        \
                s0[i] = s0[i] + g[i] * g[i];                                                        \
                x[i] = x[i] + (-lr) * (g[i] / (SQRT(s0[i]) + eps));                                 \
            }                                                                                       \
            break;                                                                                  \
        }                                                                                           \
        case RMSPROP: {                                                                             \
            const T lr = (T)(0.01 * lr_scale), a = (T)0.99, c = (T)(1.0 - 0.99), eps = (T)1e-8;     \
            for (size_t i = 0; i < n; i++) {                                                        \
                s0[i] = s0[i] * a + c * (g[i] * g[i]);                                              \
                x[i] = x[i] + (-lr) * (g[i] / (SQRT(s0[i]) + eps));                                 \
            }                                                                                       \
            break;                                                                                  \
        }                                                                                           \
        case ADAM:                                                                                  \
        case ADAMW: {                                                                               \
            const double lr = 1e-3 * lr_scale, b1 = 0.9, b2 = 0.999;                                \
            const double c1 = 1.0 - pow(b1, (double)t), c2 = 1.0 - pow(b2, (double)t);              \
            const T step = (T)(lr / c1), c2s = (T)sqrt(c2), eps = (T)1e-8;                          \
            const T w1 = (T)(1.0 - b1), tb2 = (T)b2, w2 = (T)(1.0 - b2);                            \
            const T decay = (T)(1.0 - lr * 0.01);                                                   \
            const int decoupled = k == ADAMW;                                                       \
            for (size_t i = 0; i < n; i++) {                                                        \
                T xi = x[i];                                                                        \
                if (decoupled) xi = xi * decay;                                                     \
                const T m = s0[i] + w1 * (g[i] - s0[i]);                                            \
                const T v = s1[i] * tb2 + w2 * (g[i] * g[i]);                                       \
                s0[i] = m;                                                                          \
                s1[i] = v;                                                                          \
                x[i] = xi + (-step) * (m / (SQRT(v) / c2s + eps));                                  \
            }                                                                                       \
            break;                                                                                  \
        }                                                                                           \
        default:                                                                                    \
            break;                                                                                  \
        }                                                                                           \
    }

DEFINE_STEP(float, f32, sqrtf)
DEFINE_STEP(double, f64, sqrt)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Deterministic values in [-1, 1): a 64-bit LCG (Knuth's MMIX constants), top 53 bits. */
static uint64_t lcg_state;
static double uniform(void) {
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg_state >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

static struct precond_optimizer_t *make_optimizer(enum kind k, int propagate, size_t n) {
    char json[512];
    snprintf(json, sizeof json, "{%s%s}", CONFIGS[k],
             propagate ? ", \"nonfinite\": \"propagate\"" : "");
    struct precond_optimizer_t *opt = NULL;
    if (precond_optimizer_new_json(json, n, &opt) != PRECOND_OK) {
        fprintf(stderr, "precond_optimizer_new_json(%s): %s\n", json, precond_last_error());
        exit(2);
    }
    return opt;
}

/* Zeroed, 64-byte aligned (as torch allocates tensors): no vector access straddles two cache
 * lines on either side. */
static void *xalloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes == 0 ? 64 : bytes) != 0) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    memset(p, 0, bytes);
    return p;
}

/* One side's buffers for one element type. */
#define DEFINE_SIDE(T, SUF)                                                                         \
    struct side_##SUF {                                                                             \
        T *x, *g, *s0, *s1;                                                                         \
    };                                                                                              \
    static struct side_##SUF side_new_##SUF(size_t n, uint64_t seed) {                              \
        struct side_##SUF s;                                                                        \
        s.x = xalloc(n * sizeof(T));                                                                \
        s.g = xalloc(n * sizeof(T));                                                                \
        s.s0 = xalloc(n * sizeof(T));                                                               \
        s.s1 = xalloc(n * sizeof(T));                                                               \
        lcg_state = seed;                                                                           \
        for (size_t i = 0; i < n; i++) s.x[i] = (T)uniform();                                       \
        for (size_t i = 0; i < n; i++) s.g[i] = (T)(0.1 * uniform());                               \
        return s;                                                                                   \
    }                                                                                               \
    static void side_free_##SUF(struct side_##SUF *s) {                                             \
        free(s->x);                                                                                 \
        free(s->g);                                                                                 \
        free(s->s0);                                                                                \
        free(s->s1);                                                                                \
    }

DEFINE_SIDE(float, f32)
DEFINE_SIDE(double, f64)

/* Five steps of `k` on both sides from the same start, a new gradient each step; returns the
 * worst |x_precond - x_ref| / tol over the elements (≤ 1 passes), where tol allows 4 roundings
 * of the element's magnitude and of each step's update per step taken. */
#define DEFINE_CHECK(T, SUF, EPS)                                                                   \
    static double check_##SUF(enum kind k, int propagate, size_t n) {                               \
        const long steps = 5;                                                                       \
        struct side_##SUF a = side_new_##SUF(n, 7), b = side_new_##SUF(n, 7);                       \
        struct precond_optimizer_t *opt = make_optimizer(k, propagate, n);                          \
        double *moved = xalloc(n * sizeof(double));                                                 \
        T *prev = xalloc(n * sizeof(T));                                                            \
        lcg_state = 11;                                                                             \
        for (long t = 1; t <= steps; t++) {                                                         \
            for (size_t i = 0; i < n; i++) a.g[i] = b.g[i] = (T)(0.1 * uniform());                  \
            memcpy(prev, b.x, n * sizeof(T));                                                       \
            if (precond_optimizer_step_##SUF(opt, a.x, a.g, n) != PRECOND_OK) {                     \
                fprintf(stderr, "%s step %ld: %s\n", NAMES[k], t, precond_last_error());            \
                exit(2);                                                                            \
            }                                                                                       \
            ref_step_##SUF(k, b.x, b.g, b.s0, b.s1, n, t);                                          \
            for (size_t i = 0; i < n; i++) moved[i] += fabs((double)b.x[i] - (double)prev[i]);      \
        }                                                                                           \
        double worst = 0.0;                                                                         \
        for (size_t i = 0; i < n; i++) {                                                            \
            const double tol =                                                                      \
                4.0 * (double)steps * (EPS) * (fabs((double)b.x[i]) + moved[i] + 1e-3);             \
            const double e = fabs((double)a.x[i] - (double)b.x[i]) / tol;                           \
            if (!(e <= worst)) worst = e; /* NaN propagates as a failure */                         \
        }                                                                                           \
        free(moved);                                                                                \
        free(prev);                                                                                 \
        precond_optimizer_free(opt);                                                                \
        side_free_##SUF(&a);                                                                        \
        side_free_##SUF(&b);                                                                        \
        return worst;                                                                               \
    }

DEFINE_CHECK(float, f32, 0x1p-24)
DEFINE_CHECK(double, f64, 0x1p-53)

static int check_all(void) {
    int failed = 0;
    for (int k = 0; k < N_KINDS; k++) {
        for (int propagate = 0; propagate <= 1; propagate++) {
            const double e32 = check_f32((enum kind)k, propagate, 1000);
            const double e64 = check_f64((enum kind)k, propagate, 1000);
            const int ok = e32 <= 1.0 && e64 <= 1.0;
            printf("check %s %s: f32 %.3g f64 %.3g (of the tolerance) %s\n", NAMES[k],
                   propagate ? "propagate" : "error", e32, e64, ok ? "ok" : "FAILED");
            failed |= !ok;
        }
    }
    return failed;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Timed blocks: `reps` steps of precond, then of the reference (or the other way round). */
#define DEFINE_BENCH(T, SUF, NAME)                                                                  \
    static void bench_##SUF(enum kind k, int propagate, size_t n) {                                 \
        struct side_##SUF a = side_new_##SUF(n, 3), b = side_new_##SUF(n, 3);                       \
        struct precond_optimizer_t *opt = make_optimizer(k, propagate, n);                          \
        long t_ref = 0;                                                                             \
        /* warm up both; size the blocks to about 2 ms of the reference */                          \
        double t0 = now();                                                                          \
        long reps = 0;                                                                              \
        while (now() - t0 < 0.02) {                                                                 \
            precond_optimizer_step_##SUF(opt, a.x, a.g, n);                                         \
            ref_step_##SUF(k, b.x, b.g, b.s0, b.s1, n, ++t_ref);                                    \
            reps++;                                                                                 \
        }                                                                                           \
        reps = reps / 10 > 3 ? reps / 10 : 3;                                                       \
        double ratios[ROUNDS], ours[ROUNDS], refs[ROUNDS];                                          \
        for (int r = 0; r < ROUNDS; r++) {                                                          \
            double tp = 0.0, tr = 0.0;                                                              \
            for (int side = 0; side < 2; side++) {                                                  \
                const int precond_side = (side + r) % 2 == 0;                                       \
                const double s = now();                                                             \
                if (precond_side) {                                                                 \
                    for (long i = 0; i < reps; i++)                                                 \
                        if (precond_optimizer_step_##SUF(opt, a.x, a.g, n) != PRECOND_OK) {         \
                            fprintf(stderr, "%s: %s\n", NAMES[k], precond_last_error());            \
                            exit(2);                                                                \
                        }                                                                           \
                    tp = (now() - s) / (double)reps;                                                \
                } else {                                                                            \
                    for (long i = 0; i < reps; i++)                                                 \
                        ref_step_##SUF(k, b.x, b.g, b.s0, b.s1, n, ++t_ref);                        \
                    tr = (now() - s) / (double)reps;                                                \
                }                                                                                   \
            }                                                                                       \
            ratios[r] = tr / tp;                                                                    \
            ours[r] = tp;                                                                           \
            refs[r] = tr;                                                                           \
        }                                                                                           \
        qsort(ratios, ROUNDS, sizeof(double), cmp_double);                                          \
        qsort(ours, ROUNDS, sizeof(double), cmp_double);                                            \
        qsort(refs, ROUNDS, sizeof(double), cmp_double);                                            \
        printf("%-13s %s n=%-9zu %-9s precond %9.2f us  C %9.2f us  ratio %.2f [%.2f, %.2f]\n",     \
               NAMES[k], NAME, n, propagate ? "propagate" : "error", 1e6 * ours[ROUNDS / 2],        \
               1e6 * refs[ROUNDS / 2], ratios[ROUNDS / 2], ratios[0], ratios[ROUNDS - 1]);          \
        fflush(stdout);                                                                             \
        precond_optimizer_free(opt);                                                                \
        side_free_##SUF(&a);                                                                        \
        side_free_##SUF(&b);                                                                        \
    }

DEFINE_BENCH(float, f32, "f32")
DEFINE_BENCH(double, f64, "f64")

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "check") != 0 && strcmp(argv[1], "bench") != 0)) {
        fprintf(stderr, "usage: %s check | bench [n ...]\n", argv[0]);
        return 2;
    }
    const char *perturb = getenv("C_REFERENCE_PERTURB");
    if (perturb != NULL && strcmp(perturb, "1") == 0) lr_scale = 1.01;
    if (check_all() != 0) {
        fprintf(stderr, "precond and the reference loops disagree\n");
        return 1;
    }
    if (strcmp(argv[1], "check") == 0) return 0;
    size_t sizes[16] = {10000};
    int n_sizes = 1;
    if (argc > 2) {
        n_sizes = 0;
        for (int i = 2; i < argc && n_sizes < 16; i++) {
            char *end = NULL;
            const unsigned long long v = strtoull(argv[i], &end, 10);
            if (end == argv[i] || *end != '\0' || v == 0) {
                fprintf(stderr, "not a size: %s\n", argv[i]);
                return 2;
            }
            sizes[n_sizes++] = (size_t)v;
        }
    }
    const char *only = getenv("C_REFERENCE_ONLY");
    const char *policy = getenv("C_REFERENCE_POLICY");
    for (int s = 0; s < n_sizes; s++)
        for (int k = 0; k < N_KINDS; k++)
            for (int propagate = 0; propagate <= 1; propagate++) {
                if (only != NULL && strcmp(only, NAMES[k]) != 0) continue;
                if (policy != NULL && strcmp(policy, propagate ? "propagate" : "error") != 0)
                    continue;
                bench_f32((enum kind)k, propagate, sizes[s]);
                bench_f64((enum kind)k, propagate, sizes[s]);
            }
    return 0;
}
