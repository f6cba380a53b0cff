/* Data-parallel logistic regression with ZeRO stage 1 through libprecond and MPI.
 *
 * The breast_cancer data set (569 samples, 30 features, standardized) is split over the P ranks
 * by samples; the 31 parameters theta = [b; w] are split over the ranks by the library's shard
 * plan (precond_shard_range), and each rank keeps only its shard's optimizer state
 * (precond_optimizer_new_shard). One step, full batch:
 *   1. each rank sums the cross-entropy gradient over its samples (all 31 coordinates);
 *   2. MPI_Alltoallv sends shard r's coordinates of every partial sum to rank r, which adds the
 *      P contributions in rank order (a summation order that does not depend on the network)
 *      and divides by N: the mean gradient on its shard;
 *   3. each rank steps its shard (AdamW, torch semantics) on its slice of theta;
 *   4. MPI_Allgatherv assembles theta on every rank.
 * libprecond does no communication: the caller owns the communicator. At the end the shard
 * states are gathered on rank 0 and assembled into the unsharded state (precond_state_assemble),
 * whose size must equal that of a one-process optimizer's state.
 *
 * Usage: mpirun -np P logreg_zero1 <breast_cancer.csv> [steps]
 * Output (rank 0): "key value" lines, 17 significant digits, checked by
 * crates/precond-ffi/tests/mpi_example.rs against the same training done in Rust, for P = 1..4.
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precond.h"

static const char *CONFIG = "{\"optimizer\": \"adamw\", \"lr\": 0.05, \"weight_decay\": 0.01}";

#define CHECK(call)                                                                         \
    do {                                                                                    \
        precond_status_t st_ = (call);                                                      \
        if (st_ != PRECOND_OK) {                                                            \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,       \
                    precond_status_name((int32_t)st_), precond_last_error());               \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                   \
        }                                                                                   \
    } while (0)

static void die(const char *msg) {
    fprintf(stderr, "logreg_zero1: %s\n", msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* reads the CSV (header line, 30 feature columns, the 0/1 target last) */
static size_t read_csv(const char *path, size_t d, double **x, double **y) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        die("cannot open the data file");
    }
    char line[8192];
    if (fgets(line, sizeof line, f) == NULL) {
        die("empty data file");
    }
    size_t cap = 1024, n = 0;
    *x = malloc(cap * d * sizeof **x);
    *y = malloc(cap * sizeof **y);
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '\n' || line[0] == '\0') {
            continue;
        }
        if (n == cap) {
            die("more rows than expected");
        }
        char *p = line;
        for (size_t j = 0; j <= d; j++) {
            char *end = NULL;
            double v = strtod(p, &end);
            if (end == p) {
                die("a field is not a number");
            }
            if (j < d) {
                (*x)[n * d + j] = v;
            } else {
                (*y)[n] = v;
            }
            p = end + (*end == ',' ? 1 : 0);
        }
        n++;
    }
    fclose(f);
    return n;
}

static void standardize(double *x, size_t n, size_t d) {
    for (size_t j = 0; j < d; j++) {
        double mean = 0.0, var = 0.0;
        for (size_t i = 0; i < n; i++) {
            mean += x[i * d + j];
        }
        mean /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double c = x[i * d + j] - mean;
            var += c * c;
        }
        double sd = sqrt(var / (double)n);
        for (size_t i = 0; i < n; i++) {
            x[i * d + j] = (x[i * d + j] - mean) / sd;
        }
    }
}

/* sums over samples lo..hi: cross-entropy (returned) and its gradient (into g, 1 + d values) */
static double partial_loss_grad(const double *x, const double *y, size_t d, size_t lo, size_t hi,
                                const double *theta, double *g) {
    memset(g, 0, (d + 1) * sizeof *g);
    double loss = 0.0;
    for (size_t i = lo; i < hi; i++) {
        double z = theta[0];
        for (size_t j = 0; j < d; j++) {
            z += theta[j + 1] * x[i * d + j];
        }
        double softplus = z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z));
        loss += softplus - y[i] * z;
        double p = z >= 0.0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
        double r = p - y[i];
        g[0] += r;
        for (size_t j = 0; j < d; j++) {
            g[j + 1] += r * x[i * d + j];
        }
    }
    return loss;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc < 2) {
        die("usage: logreg_zero1 <breast_cancer.csv> [steps]");
    }
    const int steps = argc > 2 ? atoi(argv[2]) : 200;
    const size_t d = 30, n_params = d + 1;
    double *x = NULL, *y = NULL;
    const size_t n = read_csv(argv[1], d, &x, &y);
    standardize(x, n, d);

    /* the samples of this rank, and every rank's parameter shard */
    const size_t lo = n * (size_t)rank / (size_t)world, hi = n * (size_t)(rank + 1) / (size_t)world;
    int *counts = malloc((size_t)world * sizeof *counts);
    int *displs = malloc((size_t)world * sizeof *displs);
    for (int r = 0; r < world; r++) {
        size_t a = 0, b = 0;
        CHECK(precond_shard_range(CONFIG, n_params, (size_t)world, (size_t)r, &a, &b));
        counts[r] = (int)(b - a);
        displs[r] = (int)a;
    }
    const size_t start = (size_t)displs[rank], len = (size_t)counts[rank];
    precond_optimizer_t *opt = NULL;
    CHECK(precond_optimizer_new_shard(CONFIG, n_params, (size_t)world, (size_t)rank, &opt));
    size_t local_n = 0;
    CHECK(precond_optimizer_n_params(opt, &local_n));
    if (local_n != len) {
        die("the shard handle's length differs from precond_shard_range");
    }

    double *theta = calloc(n_params, sizeof *theta);
    double *g = malloc(n_params * sizeof *g);
    /* all-to-all: to rank r, this rank's partial sums on r's shard (the layout of g itself);
       from every rank, its partial sums on this rank's shard */
    double *recv = malloc((len * (size_t)world + 1) * sizeof *recv);
    int *rcounts = malloc((size_t)world * sizeof *rcounts);
    int *rdispls = malloc((size_t)world * sizeof *rdispls);
    for (int r = 0; r < world; r++) {
        rcounts[r] = (int)len;
        rdispls[r] = r * (int)len;
    }
    double *gshard = malloc((len + 1) * sizeof *gshard);
    double loss = 0.0;
    for (int k = 0; k <= steps; k++) {
        double part = partial_loss_grad(x, y, d, lo, hi, theta, g);
        /* the loss: partial sums gathered and added in rank order on every rank */
        double *parts = malloc((size_t)world * sizeof *parts);
        MPI_Allgather(&part, 1, MPI_DOUBLE, parts, 1, MPI_DOUBLE, MPI_COMM_WORLD);
        loss = 0.0;
        for (int r = 0; r < world; r++) {
            loss += parts[r];
        }
        loss /= (double)n;
        free(parts);
        if (k == steps) {
            break; /* the final loss, at the final parameters */
        }
        MPI_Alltoallv(g, counts, displs, MPI_DOUBLE, recv, rcounts, rdispls, MPI_DOUBLE,
                      MPI_COMM_WORLD);
        for (size_t i = 0; i < len; i++) {
            double s = 0.0;
            for (int r = 0; r < world; r++) {
                s += recv[(size_t)r * len + i];
            }
            gshard[i] = s / (double)n;
        }
        CHECK(precond_optimizer_step_f64(opt, theta + start, gshard, len));
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, theta, counts, displs, MPI_DOUBLE,
                       MPI_COMM_WORLD);
    }

    /* every replica holds the same bytes */
    double *mine = malloc(n_params * sizeof *mine);
    memcpy(mine, theta, n_params * sizeof *mine);
    MPI_Bcast(theta, (int)n_params, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    int differs = memcmp(mine, theta, n_params * sizeof *mine) != 0, any = 0;
    MPI_Allreduce(&differs, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

    /* the unsharded state from every shard's state, assembled on rank 0 */
    size_t size = 0, written = 0;
    CHECK(precond_optimizer_state_size(opt, &size));
    unsigned char *blob = malloc(size + 1);
    CHECK(precond_optimizer_save_state(opt, blob, size, &written));
    int my_len = (int)written;
    int *lens = malloc((size_t)world * sizeof *lens);
    MPI_Gather(&my_len, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
    int *offs = malloc((size_t)world * sizeof *offs);
    unsigned char *all = NULL;
    if (rank == 0) {
        int total = 0;
        for (int r = 0; r < world; r++) {
            offs[r] = total;
            total += lens[r];
        }
        all = malloc((size_t)total + 1);
    }
    MPI_Gatherv(blob, my_len, MPI_UNSIGNED_CHAR, all, lens, offs, MPI_UNSIGNED_CHAR, 0,
                MPI_COMM_WORLD);
    if (rank == 0) {
        const unsigned char **blobs = malloc((size_t)world * sizeof *blobs);
        size_t *blens = malloc((size_t)world * sizeof *blens);
        for (int r = 0; r < world; r++) {
            blobs[r] = all + offs[r];
            blens[r] = (size_t)lens[r];
        }
        /* the size of a one-process optimizer's state */
        precond_optimizer_t *whole = NULL;
        size_t whole_size = 0, assembled_len = 0;
        CHECK(precond_optimizer_new_json(CONFIG, n_params, &whole));
        double *t0 = calloc(n_params, sizeof *t0), *g0 = calloc(n_params, sizeof *g0);
        CHECK(precond_optimizer_step_f64(whole, t0, g0, n_params));
        CHECK(precond_optimizer_state_size(whole, &whole_size));
        unsigned char *assembled = malloc(whole_size + 64);
        CHECK(precond_state_assemble(CONFIG, n_params, (size_t)world, blobs, blens, assembled,
                                     whole_size + 64, &assembled_len));
        /* the assembled state loads into a one-process optimizer and has its step count */
        CHECK(precond_optimizer_load_state(whole, assembled, assembled_len));
        uint64_t whole_steps = 0;
        CHECK(precond_optimizer_step_count(whole, &whole_steps));
        size_t correct = 0;
        for (size_t i = 0; i < n; i++) {
            double z = theta[0];
            for (size_t j = 0; j < d; j++) {
                z += theta[j + 1] * x[i * d + j];
            }
            correct += (z >= 0.0) == (y[i] >= 0.5);
        }
        printf("world %d\n", world);
        printf("steps %d\n", steps);
        printf("loss %.17g\n", loss);
        printf("accuracy %.17g\n", (double)correct / (double)n);
        printf("theta0 %.17g\n", theta[0]);
        printf("theta_last %.17g\n", theta[n_params - 1]);
        printf("replicas_identical %d\n", any == 0);
        printf("assembled_state_bytes %zu\n", assembled_len);
        printf("unsharded_state_bytes %zu\n", whole_size);
        printf("assembled_state_steps %llu\n", (unsigned long long)whole_steps);
        free(assembled);
        free(t0);
        free(g0);
        precond_optimizer_free(whole);
        free(blobs);
        free(blens);
        free(all);
    }
    free(offs);
    free(lens);
    free(blob);
    free(mine);
    free(gshard);
    free(rdispls);
    free(rcounts);
    free(recv);
    free(g);
    free(theta);
    precond_optimizer_free(opt);
    free(displs);
    free(counts);
    free(x);
    free(y);
    MPI_Finalize();
    return 0;
}
