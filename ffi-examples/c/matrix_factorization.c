/*
 * Low-rank matrix factorization with Muon on the factors and AdamW on a bias, through the
 * precond C API (THEORY.md section 7: matrix preconditioners):
 *
 *     min over U (32 x 4), V (24 x 4), c (32)  of  f = 1/2 || U V^T + c 1^T - M ||_F^2
 *
 * M = A B^T + r 1^T is a fixed rank-4 matrix plus a row offset, from a deterministic formula,
 * so the minimum is f = 0. One flat parameter buffer holds U (row-major, entries 0..127),
 * V (row-major, 128..223) and c (224..255); the JSON configuration runs Muon on the groups
 * U (shape [32, 4]) and V (shape [24, 4]) and AdamW on the rest (the bias, top level). The
 * gradients are computed by hand: with the residual R = U V^T + c 1^T - M,
 *     dU = R V,   dV = R^T U,   dc = R 1.
 * A cosine schedule takes every learning rate to 0 over the run, so Muon's fixed-size
 * orthogonalized steps shrink and the iterates settle.
 *
 * After training it reads Muon's preconditioner of group 0 (U) through
 * precond_optimizer_matrix_preconditioner: U is tall, so Muon's implied multiplier is the right
 * one, Rm = (B^T B)^{-1/2} (4 x 4, B the momentum buffer, up to Newton-Schulz's approximation),
 * and the left one is absent (length 0).
 *
 * Output: one "key value" pair per line, read by crates/precond-ffi/tests/examples.rs, which
 * reruns the training in Rust. Exit status 1 unless final_loss < 1e-6 * initial_loss: the
 * problem is exactly solvable (f = 0 at the minimum), and the run takes the loss from about 707
 * to about 2e-10 (a factor 3e-13); the bound, which a run stuck at a plateau (near 0.06 after
 * 300 steps, 1e-4 of the start) cannot meet, leaves six orders of magnitude for other compilers,
 * CPUs and library versions.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precond.h"

#define M_ROWS 32
#define N_COLS 24
#define RANK 4
#define U_OFF 0
#define V_OFF (M_ROWS * RANK)
#define C_OFF (V_OFF + N_COLS * RANK)
#define N_PARAMS (C_OFF + M_ROWS)
#define STEPS 1500

static const char *CONFIG =
    "{\"optimizer\": \"adamw\", \"lr\": 0.05, \"weight_decay\": 0.0,"
    " \"schedule\": {\"kind\": \"cosine\", \"T_max\": 1500},"
    " \"groups\": ["
    "  {\"start\": 0, \"end\": 128, \"shape\": [32, 4], \"optimizer\": \"muon\","
    "   \"lr\": 0.02, \"weight_decay\": 0.0},"
    "  {\"start\": 128, \"end\": 224, \"shape\": [24, 4], \"optimizer\": \"muon\","
    "   \"lr\": 0.02, \"weight_decay\": 0.0}]}";

static void check(precond_status_t st, const char *what, const precond_optimizer_t *opt) {
    if (st != PRECOND_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, precond_status_name((int32_t)st),
                opt ? precond_optimizer_last_error(opt) : precond_last_error());
        exit(1);
    }
}

/* the target M = A B^T + r 1^T (row-major 32 x 24) */
static void target(double *m) {
    for (int i = 0; i < M_ROWS; i++) {
        for (int j = 0; j < N_COLS; j++) {
            double s = 0.1 * (double)(i % 7) - 0.3;
            for (int k = 0; k < RANK; k++) {
                s += sin(0.7 * i + 1.3 * k + 0.5) * cos(0.4 * j - 0.9 * k);
            }
            m[i * N_COLS + j] = s;
        }
    }
}

/* f and its gradient g (same layout as x) */
static double loss_grad(const double *x, const double *m, double *g) {
    const double *u = x + U_OFF, *v = x + V_OFF, *c = x + C_OFF;
    double *gu = g + U_OFF, *gv = g + V_OFF, *gc = g + C_OFF;
    double r[M_ROWS * N_COLS];
    double f = 0.0;
    for (int i = 0; i < M_ROWS; i++) {
        for (int j = 0; j < N_COLS; j++) {
            double p = c[i];
            for (int k = 0; k < RANK; k++) {
                p += u[i * RANK + k] * v[j * RANK + k];
            }
            r[i * N_COLS + j] = p - m[i * N_COLS + j];
            f += 0.5 * r[i * N_COLS + j] * r[i * N_COLS + j];
        }
    }
    for (int i = 0; i < M_ROWS; i++) {
        gc[i] = 0.0;
        for (int j = 0; j < N_COLS; j++) {
            gc[i] += r[i * N_COLS + j];
        }
        for (int k = 0; k < RANK; k++) {
            double s = 0.0;
            for (int j = 0; j < N_COLS; j++) {
                s += r[i * N_COLS + j] * v[j * RANK + k];
            }
            gu[i * RANK + k] = s;
        }
    }
    for (int j = 0; j < N_COLS; j++) {
        for (int k = 0; k < RANK; k++) {
            double s = 0.0;
            for (int i = 0; i < M_ROWS; i++) {
                s += r[i * N_COLS + j] * u[i * RANK + k];
            }
            gv[j * RANK + k] = s;
        }
    }
    return f;
}

int main(void) {
    if (strcmp(precond_version(), PRECOND_VERSION) != 0) {
        fprintf(stderr, "header %s does not match library %s\n", PRECOND_VERSION,
                precond_version());
        return 1;
    }
    static double m[M_ROWS * N_COLS];
    double x[N_PARAMS], g[N_PARAMS];
    target(m);
    for (int i = 0; i < N_PARAMS; i++) {
        x[i] = i < C_OFF ? 0.3 * sin(1.1 * i + 0.2) : 0.0;
    }

    precond_optimizer_t *opt = NULL;
    check(precond_optimizer_new_json(CONFIG, N_PARAMS, &opt), "precond_optimizer_new_json", NULL);
    double f0 = loss_grad(x, m, g);
    printf("initial_loss %.17g\n", f0);
    double f = f0;
    for (int t = 0; t < STEPS; t++) {
        f = loss_grad(x, m, g);
        if (t % 300 == 0) {
            printf("loss_at_%d %.17g\n", t, f);
        }
        check(precond_optimizer_step_f64(opt, x, g, N_PARAMS), "precond_optimizer_step_f64", opt);
    }
    f = loss_grad(x, m, g);
    printf("final_loss %.17g\n", f);

    /* Muon's preconditioner of group 0 (U, 32 x 4): one block, the whole matrix */
    size_t n_blocks = 0;
    check(precond_optimizer_matrix_blocks(opt, 0, &n_blocks), "precond_optimizer_matrix_blocks",
          opt);
    precond_matrix_block_t b;
    check(precond_optimizer_matrix_block_range(opt, 0, 0, &b),
          "precond_optimizer_matrix_block_range", opt);
    printf("u_blocks %zu\n", n_blocks);
    printf("u_block %zu %zu %zu %zu %zu %zu\n", b.rows, b.cols, b.row0, b.row1, b.col0, b.col1);
    size_t need = 0, written = 0;
    /* size query, then the read; the left multiplier of a tall matrix is absent */
    check(precond_optimizer_matrix_preconditioner(opt, 0, PRECOND_MATRIX_LEFT, 0, NULL, 0, &need),
          "precond_optimizer_matrix_preconditioner (left, size)", opt);
    printf("u_left_len %zu\n", need);
    check(precond_optimizer_matrix_preconditioner(opt, 0, PRECOND_MATRIX_RIGHT, 0, NULL, 0, &need),
          "precond_optimizer_matrix_preconditioner (right, size)", opt);
    double *right = malloc(need * sizeof *right);
    if (right == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    check(precond_optimizer_matrix_preconditioner(opt, 0, PRECOND_MATRIX_RIGHT, 0, right, need,
                                                  &written),
          "precond_optimizer_matrix_preconditioner (right)", opt);
    printf("u_right_len %zu\n", written);
    /* Rm is a polynomial in B^T B: symmetric up to rounding (relative to its largest entry) */
    double asym = 0.0, big = 0.0;
    for (size_t i = 0; i < RANK; i++) {
        for (size_t j = 0; j < RANK; j++) {
            printf("u_right_%zu_%zu %.17g\n", i, j, right[i * RANK + j]);
            asym = fmax(asym, fabs(right[i * RANK + j] - right[j * RANK + i]));
            big = fmax(big, fabs(right[i * RANK + j]));
        }
    }
    printf("u_right_relative_asymmetry %.17g\n", asym / big);
    /* a buffer one entry short is refused, naming the length needed */
    precond_status_t st =
        precond_optimizer_matrix_preconditioner(opt, 0, PRECOND_MATRIX_RIGHT, 0, right, need - 1,
                                                &written);
    printf("short_buffer %s: %s\n", precond_status_name((int32_t)st),
           precond_optimizer_last_error(opt));
    free(right);
    precond_optimizer_free(opt);

    int ok = f < 1e-6 * f0 && n_blocks == 1 && need == RANK * RANK && asym < 1e-9 * big &&
             st == PRECOND_DIMENSION_MISMATCH;
    printf("converged %s\n", ok ? "yes" : "no");
    return ok ? 0 : 1;
}
