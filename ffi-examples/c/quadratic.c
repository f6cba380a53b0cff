/*
 * Minimize the ill-conditioned quadratic f(x) = 1/2 x^T H x - b^T x with Adam and with AdamW
 * through the precond C API, and measure what the optimizers' diagonal preconditioner P did to
 * the conditioning: kappa(H) against kappa(P^{1/2} H P^{1/2}) (THEORY.md sections 2-4).
 *
 * H = D K D with K_ij = 0.5^|i-j| (well conditioned, SPD) and D = diag(3^i): the bad
 * conditioning comes from unequal row scales, which a diagonal preconditioner can undo
 * (Van der Sluis, Theorem 2). The minimizer is x* = (1, ..., 1).
 *
 * Output: one "key value" pair per line (values printed with 17 significant digits), read by
 * crates/precond-ffi/tests/examples.rs which recomputes every number in Rust.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precond.h"

#define N 6
#define STEPS 3000

static void check(precond_status_t st, const char *what) {
    if (st != PRECOND_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, precond_status_name((int32_t)st),
                precond_last_error());
        exit(1);
    }
}

/* g = H x - b, f = 1/2 x^T H x - b^T x (row-major H) */
static double grad(const double *h, const double *b, const double *x, double *g) {
    double f = 0.0;
    for (int i = 0; i < N; i++) {
        double hx = 0.0;
        for (int j = 0; j < N; j++) {
            hx += h[i * N + j] * x[j];
        }
        g[i] = hx - b[i];
        f += 0.5 * x[i] * hx - b[i] * x[i];
    }
    return f;
}

static void run(const char *name, const char *config, const double *h, const double *b,
                double f_star) {
    precond_optimizer_t *opt = NULL;
    check(precond_optimizer_new_json(config, N, &opt), "precond_optimizer_new_json");
    double x[N] = {0}, g[N];
    double f = 0.0;
    for (int k = 0; k < STEPS; k++) {
        f = grad(h, b, x, g);
        check(precond_optimizer_step_f64(opt, x, g, N), "precond_optimizer_step_f64");
    }
    f = grad(h, b, x, g);
    double dist = 0.0;
    for (int i = 0; i < N; i++) {
        dist += (x[i] - 1.0) * (x[i] - 1.0);
    }
    double p[N];
    check(precond_optimizer_preconditioner(opt, p, N), "precond_optimizer_preconditioner");
    precond_preconditioned_cond_t pc;
    check(precond_preconditioned_cond_diag(h, N, PRECOND_ROW_MAJOR, p, N, &pc),
          "precond_preconditioned_cond_diag");
    uint64_t steps = 0;
    check(precond_optimizer_step_count(opt, &steps), "precond_optimizer_step_count");
    printf("%s_steps %llu\n", name, (unsigned long long)steps);
    printf("%s_f_minus_fstar %.17g\n", name, f - f_star);
    printf("%s_dist_to_xstar %.17g\n", name, sqrt(dist));
    for (int i = 0; i < N; i++) {
        printf("%s_p%d %.17g\n", name, i, p[i]);
    }
    printf("%s_kappa_precond %.17g\n", name, pc.spectral_kappa);
    printf("%s_row_scaled_kappa2 %.17g\n", name, pc.row_scaled_kappa2);
    precond_optimizer_free(opt);
}

int main(void) {
    if (strcmp(precond_version(), PRECOND_VERSION) != 0 ||
        precond_version_number() != PRECOND_VERSION_NUMBER) {
        fprintf(stderr, "header %s does not match library %s\n", PRECOND_VERSION,
                precond_version());
        return 1;
    }
    printf("version %s\n", precond_version());

    /* every entry is exact in binary floating point: 3^(i+j) * 2^-|i-j| */
    double h[N * N], b[N], xs[N], d[N], k[N];
    d[0] = 1.0;
    k[0] = 1.0;
    for (int i = 1; i < N; i++) {
        d[i] = 3.0 * d[i - 1];
        k[i] = 0.5 * k[i - 1];
    }
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            h[i * N + j] = d[i] * d[j] * k[abs(i - j)];
        }
    }
    for (int i = 0; i < N; i++) {
        xs[i] = 1.0;
    }
    double g0[N], zero[N] = {0};
    grad(h, zero, xs, g0); /* g0 = H x* */
    for (int i = 0; i < N; i++) {
        b[i] = g0[i];
    }
    double f_star = grad(h, b, xs, g0);

    /* kappa(H): the spectrum, the 2-norm condition number and the cheap estimate */
    double ev[N];
    precond_spectrum_t spec;
    check(precond_sym_eigenvalues(h, N, PRECOND_ROW_MAJOR, ev, N, &spec),
          "precond_sym_eigenvalues");
    precond_cond2_t c2;
    check(precond_cond2(h, N, N, PRECOND_COL_MAJOR, &c2), "precond_cond2");
    precond_cond_estimate_t est;
    check(precond_cond_estimate(h, N, PRECOND_ROW_MAJOR, PRECOND_ESTIMATE_SPD, &est),
          "precond_cond_estimate");
    printf("kappa_H %.17g\n", spec.kappa);
    printf("lambda_min_H %.17g\n", spec.lambda_min);
    printf("lambda_max_H %.17g\n", spec.lambda_max);
    printf("cond2_H %.17g\n", c2.kappa);
    printf("kappa1_estimate_H %.17g\n", est.kappa1_estimate);

    /* the Jacobi preconditioner P = diag(1/h_ii) for comparison */
    double pj[N];
    for (int i = 0; i < N; i++) {
        pj[i] = 1.0 / h[i * N + i];
    }
    precond_preconditioned_cond_t pcj;
    check(precond_preconditioned_cond_diag(h, N, PRECOND_ROW_MAJOR, pj, N, &pcj),
          "precond_preconditioned_cond_diag");
    printf("jacobi_kappa_precond %.17g\n", pcj.spectral_kappa);

    /* row equilibration D_0 H (Theorem 2) */
    double scale[N], scaled[N * N];
    check(precond_row_equilibrate(h, N, N, PRECOND_ROW_MAJOR, scale, N, scaled, N * N),
          "precond_row_equilibrate");
    precond_cond2_t ce;
    check(precond_cond2(scaled, N, N, PRECOND_ROW_MAJOR, &ce), "precond_cond2");
    printf("row_equilibrated_cond2 %.17g\n", ce.kappa);

    run("adam", "{\"optimizer\": \"adam\", \"lr\": 0.05}", h, b, f_star);
    run("adamw", "{\"optimizer\": \"adamw\", \"lr\": 0.05, \"weight_decay\": 0.001}", h, b,
        f_star);
    return 0;
}
