/*
 * ZeRO-1 sharded optimizer state without MPI: WORLD "ranks" in one process, each with a shard
 * handle over its range of the flat parameter vector. Every step: the full gradient (in a real
 * run: reduce-scattered, each rank gets only its range), each rank steps its slice, the slices
 * form the new parameters (in a real run: all-gathered). Checks that the result is bitwise the
 * unsharded optimizer's, that the assembled shard states are byte for byte the unsharded
 * optimizer's saved state, and that splitting that state for 2 ranks continues bitwise.
 * Exits non-zero on any mismatch.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precond.h"

#define N 121
#define WORLD 3
#define WORLD2 2

static const char *CONFIG =
    "{\"optimizer\": \"adamw\", \"lr\": 2e-3, \"weight_decay\": 0.01,"
    " \"groups\": ["
    "  {\"start\": 0, \"end\": 32, \"shape\": [8, 4], \"optimizer\": \"muon\", \"lr\": 0.02},"
    "  {\"start\": 50, \"end\": 74, \"shape\": [6, 4], \"optimizer\": \"shampoo\", \"lr\": 0.01},"
    "  {\"start\": 80, \"end\": 100, \"shape\": [5, 4], \"optimizer\": \"soap\", \"lr\": 3e-3}]}";

#define CHECK(call)                                                                            \
    do {                                                                                       \
        precond_status_t st_ = (call);                                                         \
        if (st_ != PRECOND_OK) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__,                             \
                    precond_status_name((int32_t)st_), precond_last_error());                  \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static void gradient(int k, const double *x, double *g) {
    for (size_t i = 0; i < N; i++) {
        g[i] = (1.0 + (double)(i % 7) * 0.3) * x[i] +
               ((double)((31 * (size_t)k + 17 * i) % 23) - 11.0) / 16.0;
    }
}

static uint8_t *save(precond_optimizer_t *opt, size_t *len) {
    size_t size = 0;
    CHECK(precond_optimizer_state_size(opt, &size));
    uint8_t *buf = malloc(size);
    if (buf == NULL) exit(1);
    CHECK(precond_optimizer_save_state(opt, buf, size, len));
    return buf;
}

/* One step of every shard on its slice of x. */
static void step_shards(precond_optimizer_t **shards, const size_t *start, const size_t *end,
                        int world, double *x, const double *g) {
    for (int r = 0; r < world; r++) {
        CHECK(precond_optimizer_step_f64(shards[r], x + start[r], g + start[r],
                                         end[r] - start[r]));
    }
}

int main(void) {
    double x_full[N], x_shard[N], g[N];
    for (size_t i = 0; i < N; i++) {
        x_full[i] = x_shard[i] = ((double)(i * 37 % 11) - 5.0) / 4.0;
    }
    precond_optimizer_t *full = NULL;
    CHECK(precond_optimizer_new_json(CONFIG, N, &full));
    precond_optimizer_t *shards[WORLD];
    size_t start[WORLD], end[WORLD];
    for (int r = 0; r < WORLD; r++) {
        CHECK(precond_shard_range(CONFIG, N, WORLD, (size_t)r, &start[r], &end[r]));
        CHECK(precond_optimizer_new_shard(CONFIG, N, WORLD, (size_t)r, &shards[r]));
        printf("rank %d: [%zu, %zu)\n", r, start[r], end[r]);
    }
    for (int k = 1; k <= 5; k++) {
        gradient(k, x_full, g);
        CHECK(precond_optimizer_step_f64(full, x_full, g, N));
        step_shards(shards, start, end, WORLD, x_shard, g);
    }
    if (memcmp(x_full, x_shard, sizeof x_full) != 0) {
        fprintf(stderr, "sharded parameters differ from the unsharded ones\n");
        return 1;
    }

    /* assemble the shard states: byte for byte the unsharded state */
    const uint8_t *blobs[WORLD];
    size_t lens[WORLD];
    for (int r = 0; r < WORLD; r++) blobs[r] = save(shards[r], &lens[r]);
    size_t need = 0, whole_len = 0, full_len = 0;
    CHECK(precond_state_assemble(CONFIG, N, WORLD, blobs, lens, NULL, 0, &need));
    uint8_t *whole = malloc(need);
    if (whole == NULL) return 1;
    CHECK(precond_state_assemble(CONFIG, N, WORLD, blobs, lens, whole, need, &whole_len));
    uint8_t *full_state = save(full, &full_len);
    if (whole_len != full_len || memcmp(whole, full_state, full_len) != 0) {
        fprintf(stderr, "assembled state differs from the unsharded state\n");
        return 1;
    }

    /* a shard's state does not load into another shard */
    if (precond_optimizer_load_state(shards[0], blobs[1], lens[1]) != PRECOND_INVALID_STATE) {
        fprintf(stderr, "rank 1's state loaded into rank 0\n");
        return 1;
    }

    /* reshard to WORLD2 ranks and continue */
    precond_optimizer_t *re[WORLD2];
    size_t start2[WORLD2], end2[WORLD2];
    for (int r = 0; r < WORLD2; r++) {
        CHECK(precond_shard_range(CONFIG, N, WORLD2, (size_t)r, &start2[r], &end2[r]));
        CHECK(precond_optimizer_new_shard(CONFIG, N, WORLD2, (size_t)r, &re[r]));
        size_t part_need = 0, part_len = 0;
        CHECK(precond_state_split(CONFIG, N, WORLD2, (size_t)r, whole, whole_len, NULL, 0,
                                  &part_need));
        uint8_t *part = malloc(part_need);
        if (part == NULL) return 1;
        CHECK(precond_state_split(CONFIG, N, WORLD2, (size_t)r, whole, whole_len, part,
                                  part_need, &part_len));
        CHECK(precond_optimizer_load_state(re[r], part, part_len));
        free(part);
    }
    for (int k = 6; k <= 10; k++) {
        gradient(k, x_full, g);
        CHECK(precond_optimizer_step_f64(full, x_full, g, N));
        step_shards(re, start2, end2, WORLD2, x_shard, g);
    }
    if (memcmp(x_full, x_shard, sizeof x_full) != 0) {
        fprintf(stderr, "resharded parameters differ from the unsharded ones\n");
        return 1;
    }
    printf("x[0] = %.17g, x[%d] = %.17g\n", x_full[0], N - 1, x_full[N - 1]);

    for (int r = 0; r < WORLD; r++) {
        free((void *)blobs[r]);
        precond_optimizer_free(shards[r]);
    }
    for (int r = 0; r < WORLD2; r++) precond_optimizer_free(re[r]);
    free(whole);
    free(full_state);
    precond_optimizer_free(full);
    printf("shard: all checks passed\n");
    return 0;
}
