/*
 * Batch Normalization Preconditioning (BNP, docs/THEORY.md section 6) on the caller's own dense
 * layer: logistic regression on the RAW (unstandardized) breast-cancer features, trained with
 * mini-batches by SGD, once plainly and once with "bnp" on the layer's parameter group (BNP
 * preconditions SGD-like updates; Adam's per-coordinate normalization would undo its scaling).
 *
 * The layer is one unit over d = 30 inputs: the parameter vector holds the weights W (1 x 30,
 * row-major, torch's Linear.weight) then the bias b, which is the layout a "bnp" group needs
 * ("shape": [units, d] over units*d + units entries). Every step of the BNP run hands the
 * batch's per-feature mean and biased variance of the layer input to
 * precond_optimizer_bnp_observe (after the forward pass, before the step); the library keeps the
 * running estimates and preconditions the gradient with them before SGD's update.
 *
 * The raw features span five orders of magnitude with means far from zero (THEORY.md Theorem 6:
 * the Hessian of the layer is as ill-conditioned as the input's second-moment matrix); BNP
 * removes exactly that, so in the same number of steps it reaches a lower loss.
 *
 * Prints, for batch sizes 1 and 32, the final full-data loss of both runs and the BNP run's
 * running statistics of two features. Usage: bnp_layer <breast_cancer.csv> [steps]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precond.h"

#define D 30
#define NP (D + 1)
#define MAX_ROWS 1024

#define CHECK(call)                                                                            \
    do {                                                                                       \
        precond_status_t st_ = (call);                                                         \
        if (st_ != PRECOND_OK) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__,                             \
                    precond_status_name((int32_t)st_), precond_last_error());                  \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Plain SGD at the learning rate the raw data allow (1e-5: about the best of 1e-7 ... 1e-3 on
 * these features; 1e-4 already diverges at batch size 1), and the same SGD with "bnp" at 0.1 (the
 * standardized problem's scale). */
static const char *PLAIN = "{\"optimizer\": \"sgd\", \"lr\": 1e-5}";
/* the whole vector is the layer: weights 0..30 (1 x 30), bias 30 */
static const char *BNP = "{\"optimizer\": \"sgd\", \"lr\": 0.1, \"groups\": [{\"start\": 0,"
                         " \"end\": 31, \"shape\": [1, 30], \"bnp\": true}]}";

typedef struct {
    size_t n;
    double *x; /* n x D, row-major */
    double *y; /* n labels in {0, 1} */
} data_t;

static int read_csv(const char *path, data_t *data) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    char line[4096];
    if (fgets(line, sizeof line, f) == NULL) { /* header */
        fclose(f);
        return -1;
    }
    data->x = malloc(sizeof(double) * MAX_ROWS * D);
    data->y = malloc(sizeof(double) * MAX_ROWS);
    data->n = 0;
    if (data->x == NULL || data->y == NULL) {
        fclose(f);
        return -1;
    }
    while (data->n < MAX_ROWS && fgets(line, sizeof line, f) != NULL) {
        char *p = line;
        if (*p == '\n' || *p == '\0') continue;
        for (int j = 0; j <= D; j++) {
            char *end = NULL;
            double v = strtod(p, &end);
            if (end == p) {
                fclose(f);
                return -1;
            }
            if (j < D) {
                data->x[data->n * D + (size_t)j] = v;
            } else {
                data->y[data->n] = v;
            }
            p = (*end == ',') ? end + 1 : end;
        }
        data->n++;
    }
    fclose(f);
    return 0;
}

/* log(1 + e^z) without overflow */
static double softplus(double z) { return z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

static double sigmoid(double z) {
    return z >= 0.0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* Sample k of step t's batch: a fixed permutation of the rows (569 is prime). */
static size_t sample(size_t t, size_t batch, size_t k, size_t n) {
    return ((t * batch + k) * 7919u) % n;
}

/* Mean logistic loss over the rows `idx[0..m]` and, when g != NULL, its gradient
 * (weights g[0..D], bias g[D]). */
static double loss_grad(const data_t *data, const size_t *idx, size_t m, const double *theta,
                        double *g) {
    double loss = 0.0;
    if (g != NULL) memset(g, 0, sizeof(double) * NP);
    for (size_t s = 0; s < m; s++) {
        const double *xi = data->x + idx[s] * D;
        double z = theta[D];
        for (size_t j = 0; j < D; j++) z += theta[j] * xi[j];
        loss += softplus(z) - data->y[idx[s]] * z;
        if (g != NULL) {
            double r = sigmoid(z) - data->y[idx[s]];
            for (size_t j = 0; j < D; j++) g[j] += r * xi[j];
            g[D] += r;
        }
    }
    double inv = 1.0 / (double)m;
    if (g != NULL) {
        for (size_t j = 0; j < NP; j++) g[j] *= inv;
    }
    return loss * inv;
}

/* Per-feature mean and biased variance of the batch's layer input. */
static void batch_stats(const data_t *data, const size_t *idx, size_t m, double *mean,
                        double *var) {
    for (size_t j = 0; j < D; j++) {
        double s = 0.0;
        for (size_t k = 0; k < m; k++) s += data->x[idx[k] * D + j];
        mean[j] = s / (double)m;
        double v = 0.0;
        for (size_t k = 0; k < m; k++) {
            double c = data->x[idx[k] * D + j] - mean[j];
            v += c * c;
        }
        var[j] = v / (double)m;
    }
}

/* Trains from zero for `steps` mini-batches of `batch` rows; returns the full-data loss. */
static double train(const data_t *data, const size_t *all, int bnp, size_t batch, size_t steps,
                    const char *tag) {
    precond_optimizer_t *opt = NULL;
    CHECK(precond_optimizer_new_json(bnp ? BNP : PLAIN, NP, &opt));
    double theta[NP] = {0}, g[NP], mean[D], var[D];
    size_t idx[64];
    for (size_t t = 0; t < steps; t++) {
        for (size_t k = 0; k < batch; k++) idx[k] = sample(t, batch, k, data->n);
        if (bnp) {
            batch_stats(data, idx, batch, mean, var);
            CHECK(precond_optimizer_bnp_observe(opt, 0, mean, var, D));
        }
        loss_grad(data, idx, batch, theta, g);
        CHECK(precond_optimizer_step_f64(opt, theta, g, NP));
    }
    double loss = loss_grad(data, all, data->n, theta, NULL);
    if (bnp) {
        CHECK(precond_optimizer_bnp_stats(opt, 0, mean, var, D));
        printf("%s_running_mean_3 %.17g\n", tag, mean[3]);
        printf("%s_running_var_3 %.17g\n", tag, var[3]);
        printf("%s_running_mean_9 %.17g\n", tag, mean[9]);
        printf("%s_running_var_9 %.17g\n", tag, var[9]);
    }
    precond_optimizer_free(opt);
    return loss;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s crates/precond-nn/data/breast_cancer.csv [steps]\n", argv[0]);
        return 2;
    }
    size_t steps = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 600;
    data_t data;
    if (read_csv(argv[1], &data) != 0 || data.n == 0) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        free(data.x);
        free(data.y);
        return 1;
    }
    size_t *all = malloc(sizeof(size_t) * data.n);
    if (all == NULL) return 1;
    for (size_t i = 0; i < data.n; i++) all[i] = i;
    printf("rows %zu\n", data.n);
    printf("steps %zu\n", steps);
    double theta0[NP] = {0};
    printf("initial_loss %.17g\n", loss_grad(&data, all, data.n, theta0, NULL));
    const size_t batches[2] = {1, 32};
    int better = 1;
    for (int b = 0; b < 2; b++) {
        char tag[32];
        snprintf(tag, sizeof tag, "bnp_b%zu", batches[b]);
        double plain = train(&data, all, 0, batches[b], steps, "plain");
        double bnp = train(&data, all, 1, batches[b], steps, tag);
        printf("plain_b%zu_final_loss %.17g\n", batches[b], plain);
        printf("bnp_b%zu_final_loss %.17g\n", batches[b], bnp);
        better &= bnp < plain;
    }
    printf("bnp_lower %s\n", better ? "yes" : "no");
    free(all);
    free(data.x);
    free(data.y);
    return 0;
}
