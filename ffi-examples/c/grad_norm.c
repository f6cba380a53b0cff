/*
 * Logistic regression on badly scaled synthetic features, trained with Adam three ways through
 * the precond C API: plain, with the intrinsic (preconditioned) gradient-norm regularizer
 * R = rho grad f^T P grad f, and with the coupled one R = rho ||grad f||^2 (THEORY.md section 5,
 * last bullet). The library adds grad R = 2 rho H P grad f, the Hessian-vector product taken by
 * central differences of two gradients that it asks this program for through a callback
 * (precond_grad_norm_regularize). At the end: the loss, the squared gradient norms in x and in
 * the intrinsic variables, the largest Hessian eigenvalue (sharpness) and the largest
 * eigenvalue of P^{1/2} H P^{1/2} (what the preconditioned iteration sees).
 *
 * Output: one "key value" pair per line (17 significant digits), read by
 * crates/precond-ffi/tests/examples.rs, which redoes the three trainings in Rust.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "precond.h"

#define NS 200     /* samples */
#define D 4        /* features */
#define NP (D + 1) /* parameters: bias, then one weight per feature */
#define STEPS 400
#define RHO 0.05

static void check(precond_status_t st, const char *what) {
    if (st != PRECOND_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, precond_status_name((int32_t)st),
                precond_last_error());
        exit(1);
    }
}

typedef struct {
    double x[NS * D]; /* row-major, feature j scaled by 3^j */
    double y[NS];
    long calls; /* callback calls */
    int fail;   /* when non-zero, the callback returns it (error demonstration) */
} data_t;

static void make_data(data_t *d) {
    double scale = 1.0;
    for (int j = 0; j < D; j++) {
        for (int i = 0; i < NS; i++) {
            d->x[i * D + j] = scale * sin(0.37 * (double)i * (double)(j + 1) + 0.5 * (double)j);
        }
        scale *= 3.0;
    }
    for (int i = 0; i < NS; i++) {
        /* a linear teacher on the unscaled features, plus deterministic label noise */
        double z = 0.3 + 0.7 * sin(5.1 * (double)i + 0.3);
        double s = 1.0;
        for (int j = 0; j < D; j++) {
            z += (j % 2 == 0 ? 1.0 : -1.5) * d->x[i * D + j] / s;
            s *= 3.0;
        }
        d->y[i] = z > 0.0 ? 1.0 : 0.0;
    }
    d->calls = 0;
    d->fail = 0;
}

static double sigmoid(double z) {
    return z >= 0.0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* mean logistic loss and its gradient g; p[i] = sigmoid(z_i) when p is not NULL */
static double loss_grad(const data_t *d, const double *theta, double *g, double *p) {
    double loss = 0.0;
    for (int k = 0; k < NP; k++) {
        g[k] = 0.0;
    }
    for (int i = 0; i < NS; i++) {
        double z = theta[0];
        for (int j = 0; j < D; j++) {
            z += theta[j + 1] * d->x[i * D + j];
        }
        double softplus = z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z));
        loss += softplus - d->y[i] * z;
        double s = sigmoid(z);
        if (p != NULL) {
            p[i] = s;
        }
        double r = s - d->y[i];
        g[0] += r;
        for (int j = 0; j < D; j++) {
            g[j + 1] += r * d->x[i * D + j];
        }
    }
    for (int k = 0; k < NP; k++) {
        g[k] /= (double)NS;
    }
    return loss / (double)NS;
}

/* the precond_gradient_fn: never longjmps, reports failure by its return value */
static int32_t gradient(void *user_data, const double *theta, double *g, size_t n) {
    data_t *d = (data_t *)user_data;
    d->calls++;
    if (d->fail != 0) {
        return d->fail;
    }
    if (n != NP) {
        return -1;
    }
    (void)loss_grad(d, theta, g, NULL);
    return 0;
}

/* the Hessian (1/N) sum_i p_i (1 - p_i) xbar_i xbar_i^T, row-major */
static void hessian(const data_t *d, const double *p, double *h) {
    for (int k = 0; k < NP * NP; k++) {
        h[k] = 0.0;
    }
    double xb[NP];
    for (int i = 0; i < NS; i++) {
        xb[0] = 1.0;
        for (int j = 0; j < D; j++) {
            xb[j + 1] = d->x[i * D + j];
        }
        double w = p[i] * (1.0 - p[i]);
        for (int a = 0; a < NP; a++) {
            for (int b = 0; b < NP; b++) {
                h[a * NP + b] += w * xb[a] * xb[b];
            }
        }
    }
    for (int k = 0; k < NP * NP; k++) {
        h[k] /= (double)NS;
    }
}

/* mode < 0: no regularizer */
static void train(const char *name, data_t *d, int mode) {
    precond_optimizer_t *opt = NULL;
    check(precond_optimizer_new_json("{\"optimizer\": \"adam\", \"lr\": 0.05}", NP, &opt),
          "precond_optimizer_new_json");
    double theta[NP] = {0}, g[NP], r = 0.0;
    d->calls = 0;
    for (int k = 0; k < STEPS; k++) {
        (void)loss_grad(d, theta, g, NULL);
        if (mode >= 0) {
            check(precond_grad_norm_regularize(opt, RHO, mode, theta, g, NP, gradient, d, &r),
                  "precond_grad_norm_regularize");
        }
        check(precond_optimizer_step_f64(opt, theta, g, NP), "precond_optimizer_step_f64");
    }
    double p[NS], h[NP * NP], pk[NP], eig[NP];
    double loss = loss_grad(d, theta, g, p);
    check(precond_optimizer_preconditioner(opt, pk, NP), "precond_optimizer_preconditioner");
    double gg = 0.0, gpg = 0.0;
    for (int k = 0; k < NP; k++) {
        gg += g[k] * g[k];
        gpg += g[k] * pk[k] * g[k];
    }
    hessian(d, p, h);
    precond_spectrum_t spec;
    check(precond_sym_eigenvalues(h, NP, PRECOND_ROW_MAJOR, eig, NP, &spec),
          "precond_sym_eigenvalues");
    precond_preconditioned_cond_t pc;
    check(precond_preconditioned_cond_diag(h, NP, PRECOND_ROW_MAJOR, pk, NP, &pc),
          "precond_preconditioned_cond_diag");
    printf("%s_loss %.17g\n", name, loss);
    printf("%s_grad_norm2 %.17g\n", name, gg);
    printf("%s_grad_pgp %.17g\n", name, gpg);
    printf("%s_sharpness %.17g\n", name, spec.lambda_max);
    printf("%s_precond_sharpness %.17g\n", name, pc.lambda_max);
    if (mode >= 0) {
        printf("%s_last_R %.17g\n", name, r);
    }
    printf("%s_callback_calls %ld\n", name, d->calls);
    precond_optimizer_free(opt);
}

int main(void) {
    static data_t d;
    make_data(&d);
    int positives = 0;
    for (int i = 0; i < NS; i++) {
        positives += d.y[i] > 0.5;
    }
    printf("positives %d\n", positives);
    train("none", &d, -1);
    train("intrinsic", &d, PRECOND_GRAD_NORM_INTRINSIC);
    train("coupled", &d, PRECOND_GRAD_NORM_COUPLED);

    /* a failing callback: the library stops, reports it, and leaves g and R untouched */
    double theta[NP] = {0}, g[NP], r = -1.0;
    (void)loss_grad(&d, theta, g, NULL);
    double g0 = g[0];
    d.fail = 3;
    d.calls = 0;
    precond_status_t st = precond_grad_norm_regularize(NULL, RHO, PRECOND_GRAD_NORM_COUPLED, theta,
                                                       g, NP, gradient, &d, &r);
    printf("failing_callback_status %s\n", precond_status_name((int32_t)st));
    printf("failing_callback_calls %ld\n", d.calls);
    printf("failing_callback_untouched %d\n", g[0] == g0 && r == -1.0);
    printf("failing_callback_message %s\n", precond_last_error());
    return 0;
}
