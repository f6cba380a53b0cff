/*
 * Every error path of the precond C API: for each bad input, the expected status code, a message
 * naming the problem, the caller's buffers unchanged and the handle still usable afterwards.
 *
 * Prints "ok <case>" per passed check and "FAIL <case>: ..." otherwise; the last line is
 * "checks <passed>/<total>"; the exit status is 0 only if every check passed.
 * Run by crates/precond-ffi/tests/examples.rs (also under valgrind).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precond.h"

static int total = 0, passed = 0;

static void expect(const char *name, precond_status_t got, precond_status_t want,
                   const char *msg, const char *needle) {
    total++;
    if (got != want) {
        printf("FAIL %s: status %s, expected %s (message: %s)\n", name,
               precond_status_name((int32_t)got), precond_status_name((int32_t)want), msg);
        return;
    }
    if (needle != NULL && strstr(msg, needle) == NULL) {
        printf("FAIL %s: message \"%s\" does not mention \"%s\"\n", name, msg, needle);
        return;
    }
    passed++;
    printf("ok %s [%s] %s\n", name, precond_status_name((int32_t)got), msg);
}

/* the thread-local message after a handle-less call */
#define EXPECT(name, call, want, needle)                                 \
    do {                                                                 \
        precond_status_t st_ = (call);                                   \
        expect(name, st_, want, precond_last_error(), needle);          \
    } while (0)

/* a call on a handle: the per-handle message must say the same */
#define EXPECT_H(name, opt, call, want, needle)                            \
    do {                                                                   \
        precond_status_t st_ = (call);                                     \
        expect(name, st_, want, precond_optimizer_last_error(opt), needle); \
    } while (0)

static void truth(const char *name, int cond) {
    total++;
    if (cond) {
        passed++;
        printf("ok %s\n", name);
    } else {
        printf("FAIL %s\n", name);
    }
}

static int same(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

int main(void) {
    const double nan = NAN, inf = INFINITY;
    double spd[4] = {4.0, 1.0, 1.0, 3.0};
    double out_before[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
    double out[8];
    precond_cond2_t c2, c2_before;
    memset(&c2_before, 0x5a, sizeof c2_before);

    /* ---- null pointers ---- */
    c2 = c2_before;
    EXPECT("cond2 null a", precond_cond2(NULL, 2, 2, PRECOND_ROW_MAJOR, &c2),
           PRECOND_NULL_POINTER, "`a` is NULL");
    truth("cond2 null a leaves out", same(&c2, &c2_before, sizeof c2));
    EXPECT("cond2 null out", precond_cond2(spd, 2, 2, PRECOND_ROW_MAJOR, NULL),
           PRECOND_NULL_POINTER, "`out` is NULL");
    precond_optimizer_t *none = NULL;
    EXPECT("new_json null config", precond_optimizer_new_json(NULL, 3, &none),
           PRECOND_NULL_POINTER, "config_json");
    truth("new_json null config leaves out", none == NULL);
    EXPECT("new_json null out", precond_optimizer_new_json("{\"optimizer\":\"adam\"}", 3, NULL),
           PRECOND_NULL_POINTER, "`out` is NULL");
    EXPECT("new null config", precond_optimizer_new(NULL, 3, &none), PRECOND_NULL_POINTER,
           "`config` is NULL");
    EXPECT("step null handle", precond_optimizer_step_f64(NULL, out, spd, 2),
           PRECOND_NULL_POINTER, "`opt` is NULL");
    truth("last_error of NULL handle is a message",
          strstr(precond_optimizer_last_error(NULL), "NULL") != NULL);
    precond_optimizer_free(NULL); /* accepted */

    /* ---- bad enums, zero and mismatched lengths, overflow ---- */
    EXPECT("cond2 bad layout", precond_cond2(spd, 2, 2, 7, &c2), PRECOND_INVALID_ARGUMENT,
           "layout");
    EXPECT("cond2 zero rows", precond_cond2(spd, 0, 2, PRECOND_ROW_MAJOR, &c2),
           PRECOND_INVALID_ARGUMENT, "empty");
    EXPECT("cond2 size overflow", precond_cond2(spd, SIZE_MAX, 2, PRECOND_ROW_MAJOR, &c2),
           PRECOND_DIMENSION_MISMATCH, "overflow");
    memcpy(out, out_before, sizeof out);
    EXPECT("eigenvalues length mismatch",
           precond_sym_eigenvalues(spd, 2, PRECOND_ROW_MAJOR, out, 3, NULL),
           PRECOND_DIMENSION_MISMATCH, "`eigenvalues` has length 3, expected 2");
    truth("eigenvalues mismatch leaves buffer", same(out, out_before, sizeof out));

    /* ---- two outputs of one call overlapping each other ---- */
    {
        /* doubles, so that the summary struct inside is aligned */
        double both[16];
        double both_before[16];
        for (int i = 0; i < 16; i++) both_before[i] = -3.0;
        memcpy(both, both_before, sizeof both);
        EXPECT("eigenvalues and summary overlap",
               precond_sym_eigenvalues(spd, 2, PRECOND_ROW_MAJOR, both, 2,
                                       (precond_spectrum_t *)(void *)(both + 1)),
               PRECOND_INVALID_ARGUMENT, "outputs `eigenvalues` and `summary` overlap");
        truth("overlapping eigenvalue outputs untouched", same(both, both_before, sizeof both));
        EXPECT("scale and scaled overlap",
               precond_col_equilibrate(spd, 2, 2, PRECOND_ROW_MAJOR, both + 2, 2, both, 4),
               PRECOND_INVALID_ARGUMENT, "outputs `scale` and `scaled` overlap");
        truth("overlapping equilibration outputs untouched", same(both, both_before, sizeof both));
    }
    EXPECT("estimate bad method",
           precond_cond_estimate(spd, 2, PRECOND_ROW_MAJOR, 9, NULL), PRECOND_INVALID_ARGUMENT,
           "method");

    /* ---- non-finite matrices ---- */
    double bad[4] = {1.0, 0.0, inf, 1.0};
    EXPECT("cond2 inf", precond_cond2(bad, 2, 2, PRECOND_ROW_MAJOR, &c2), PRECOND_NON_FINITE,
           "row 1, column 0");
    bad[2] = nan;
    EXPECT("cond2 nan col-major", precond_cond2(bad, 2, 2, PRECOND_COL_MAJOR, &c2),
           PRECOND_NON_FINITE, "row 0, column 1");
    double p_nan[2] = {1.0, nan};
    precond_preconditioned_cond_t pc, pc_before;
    memset(&pc_before, 0x33, sizeof pc_before);
    pc = pc_before;
    EXPECT("precond nan p",
           precond_preconditioned_cond_diag(spd, 2, PRECOND_ROW_MAJOR, p_nan, 2, &pc),
           PRECOND_NON_FINITE, "non-finite");
    truth("precond nan p leaves out", same(&pc, &pc_before, sizeof pc));

    /* ---- numerical domain ---- */
    double nonsym[4] = {1.0, 2.0, 0.0, 1.0};
    EXPECT("eigenvalues not symmetric",
           precond_sym_eigenvalues(nonsym, 2, PRECOND_ROW_MAJOR, out, 2, NULL),
           PRECOND_INVALID_ARGUMENT, "not symmetric");
    double indef[4] = {1.0, 2.0, 2.0, 1.0};
    precond_cond_estimate_t est;
    EXPECT("estimate spd of indefinite",
           precond_cond_estimate(indef, 2, PRECOND_ROW_MAJOR, PRECOND_ESTIMATE_SPD, &est),
           PRECOND_NUMERICAL_FAILURE, "not positive definite");
    double p_neg[2] = {1.0, -2.0};
    EXPECT("precond negative p",
           precond_preconditioned_cond_diag(spd, 2, PRECOND_ROW_MAJOR, p_neg, 2, &pc),
           PRECOND_INVALID_ARGUMENT, "entry 1");
    EXPECT("precond p length",
           precond_preconditioned_cond_diag(spd, 2, PRECOND_ROW_MAJOR, p_neg, 1, &pc),
           PRECOND_DIMENSION_MISMATCH, "`p` has length 1, expected 2");
    double zero_row[4] = {1.0, 2.0, 0.0, 0.0};
    double scale[2] = {-7, -7};
    EXPECT("row equilibrate zero row",
           precond_row_equilibrate(zero_row, 2, 2, PRECOND_ROW_MAJOR, scale, 2, NULL, 0),
           PRECOND_NUMERICAL_FAILURE, "entry 1 has zero norm");
    truth("zero row leaves scale", scale[0] == -7.0 && scale[1] == -7.0);
    EXPECT("col equilibrate scale length",
           precond_col_equilibrate(spd, 2, 2, PRECOND_ROW_MAJOR, scale, 3, NULL, 0),
           PRECOND_DIMENSION_MISMATCH, "`scale`");

    /* ---- optimizer construction ---- */
    EXPECT("invalid json", precond_optimizer_new_json("{\"optimizer\": ", 3, &none),
           PRECOND_PARSE_ERROR, "JSON");
    EXPECT("unknown optimizer", precond_optimizer_new_json("{\"optimizer\": \"adamx\"}", 3, &none),
           PRECOND_INVALID_ARGUMENT, "unknown optimizer `adamx`");
    EXPECT("unknown key", precond_optimizer_new_json("{\"optimizer\": \"adam\", \"momentum\": 0.9}", 3, &none),
           PRECOND_INVALID_ARGUMENT, "momentum");
    EXPECT("negative lr", precond_optimizer_new_json("{\"optimizer\": \"adam\", \"lr\": -1}", 3, &none),
           PRECOND_INVALID_ARGUMENT, "lr");
    EXPECT("beta out of range",
           precond_optimizer_new_json("{\"optimizer\": \"adam\", \"betas\": [0.9, 1.5]}", 3, &none),
           PRECOND_INVALID_ARGUMENT, "betas");
    EXPECT("zero n_params", precond_optimizer_new_json("{\"optimizer\": \"adam\"}", 0, &none),
           PRECOND_INVALID_ARGUMENT, "n_params");
    EXPECT("group outside n_params",
           precond_optimizer_new_json(
               "{\"optimizer\": \"sgd\", \"groups\": [{\"start\": 0, \"end\": 10, \"lr\": 0.1}]}",
               4, &none),
           PRECOND_DIMENSION_MISMATCH, "outside 0..4");
    truth("failed constructors leave out NULL", none == NULL);

    precond_optimizer_config_t cfg;
    EXPECT("config_init bad kind", precond_optimizer_config_init(42, &cfg),
           PRECOND_INVALID_ARGUMENT, "kind");
    EXPECT("config_init", precond_optimizer_config_init(PRECOND_ADAM, &cfg), PRECOND_OK, NULL);
    cfg.beta2 = 1.5;
    EXPECT("typed beta2 out of range", precond_optimizer_new(&cfg, 3, &none),
           PRECOND_INVALID_ARGUMENT, "betas");
    precond_optimizer_config_init(PRECOND_ADAM, &cfg);
    cfg.momentum = 0.9;
    EXPECT("typed field not applicable", precond_optimizer_new(&cfg, 3, &none),
           PRECOND_INVALID_ARGUMENT, "`momentum`");
    precond_optimizer_config_init(PRECOND_ADAM, &cfg);
    cfg.amsgrad = 2;
    EXPECT("typed bool not 0/1", precond_optimizer_new(&cfg, 3, &none),
           PRECOND_INVALID_ARGUMENT, "amsgrad");
    precond_optimizer_config_init(PRECOND_ADAM, &cfg);
    cfg.kind = -1;
    EXPECT("typed bad kind", precond_optimizer_new(&cfg, 3, &none), PRECOND_INVALID_ARGUMENT,
           "kind");
    precond_optimizer_config_init(PRECOND_PRECOND_GD, &cfg);
    EXPECT("typed precond_gd without P", precond_optimizer_new(&cfg, 3, &none),
           PRECOND_NULL_POINTER, "diag_preconditioner");
    double diag3[3] = {1.0, 2.0, 0.5};
    cfg.diag_preconditioner = diag3;
    cfg.diag_preconditioner_len = 2;
    EXPECT("typed precond_gd P length", precond_optimizer_new(&cfg, 3, &none),
           PRECOND_DIMENSION_MISMATCH, "preconditioner");
    truth("failed typed constructors leave out NULL", none == NULL);

    /* ---- a live handle: errors leave it usable and buffers unchanged ---- */
    precond_optimizer_t *opt = NULL;
    precond_optimizer_config_init(PRECOND_ADAM, &cfg);
    cfg.lr = 0.1;
    EXPECT("typed adam", precond_optimizer_new(&cfg, 3, &opt), PRECOND_OK, NULL);
    double x[3] = {1.0, -2.0, 3.0}, x0[3];
    double g[3] = {0.5, nan, 1.0};
    double p3[3] = {-7, -7, -7};
    EXPECT_H("preconditioner before first step", opt, precond_optimizer_preconditioner(opt, p3, 3),
             PRECOND_NUMERICAL_FAILURE, "undefined before the first step");
    truth("preconditioner failure leaves buffer", p3[0] == -7.0 && p3[2] == -7.0);
    memcpy(x0, x, sizeof x);
    EXPECT_H("nan gradient", opt, precond_optimizer_step_f64(opt, x, g, 3), PRECOND_NON_FINITE,
             "index 1");
    truth("nan gradient leaves params", same(x, x0, sizeof x));
    g[1] = inf;
    EXPECT_H("inf gradient", opt, precond_optimizer_step_f64(opt, x, g, 3), PRECOND_NON_FINITE,
             "index 1");
    g[1] = -1.0;
    EXPECT_H("length mismatch", opt, precond_optimizer_step_f64(opt, x, g, 2),
             PRECOND_DIMENSION_MISMATCH, "n_params = 3");
    EXPECT_H("null grads", opt, precond_optimizer_step_f64(opt, x, NULL, 3), PRECOND_NULL_POINTER,
             "`grads` is NULL");
    EXPECT_H("overlapping buffers", opt, precond_optimizer_step_f64(opt, x, x + 1, 3),
             PRECOND_INVALID_ARGUMENT, "overlap");
    truth("failed steps leave params", same(x, x0, sizeof x));
    uint64_t steps = 99;
    precond_optimizer_step_count(opt, &steps);
    truth("failed steps do not count", steps == 0);
    EXPECT_H("step after errors", opt, precond_optimizer_step_f64(opt, x, g, 3), PRECOND_OK, NULL);
    truth("params moved by lr", fabs(x[0] - (x0[0] - 0.1)) < 1e-7 &&
                                    fabs(x[1] - (x0[1] + 0.1)) < 1e-7);
    float xf[3] = {1, 2, 3}, gf[3] = {1, 1, 1};
    EXPECT_H("dtype switch", opt, precond_optimizer_step_f32(opt, xf, gf, 3),
             PRECOND_INVALID_ARGUMENT, "dtype");
    truth("dtype switch leaves params", xf[0] == 1.0f && xf[2] == 3.0f);

    double lr = 0.0;
    EXPECT_H("negative lr", opt, precond_optimizer_set_lr(opt, -0.5), PRECOND_INVALID_ARGUMENT,
             "lr");
    EXPECT_H("nan lr", opt, precond_optimizer_set_lr(opt, nan), PRECOND_INVALID_ARGUMENT, "lr");
    precond_optimizer_get_lr(opt, &lr);
    truth("lr unchanged", lr == 0.1);
    EXPECT_H("get_lr null", opt, precond_optimizer_get_lr(opt, NULL), PRECOND_NULL_POINTER,
             "`lr` is NULL");

    /* ---- state: truncated, another optimizer, another version, small buffer ---- */
    size_t size = 0, written = 0;
    EXPECT_H("state_size", opt, precond_optimizer_state_size(opt, &size), PRECOND_OK, NULL);
    unsigned char state[512], small[16];
    memset(small, 0xab, sizeof small);
    truth("state fits", size <= sizeof state);
    EXPECT_H("save into small buffer", opt,
             precond_optimizer_save_state(opt, small, sizeof small, &written),
             PRECOND_DIMENSION_MISMATCH, "needs");
    truth("small buffer unchanged", small[0] == 0xab && small[15] == 0xab && written == 0);
    {
        size_t words[80];
        size_t words_before[80];
        memset(words_before, 0xcd, sizeof words_before);
        memcpy(words, words_before, sizeof words);
        EXPECT_H("written inside buf", opt,
                 precond_optimizer_save_state(opt, (unsigned char *)words, sizeof words,
                                              &words[3]),
                 PRECOND_INVALID_ARGUMENT, "outputs `buf` and `written` overlap");
        truth("overlapping save outputs untouched", same(words, words_before, sizeof words));
    }
    EXPECT_H("save", opt, precond_optimizer_save_state(opt, state, sizeof state, &written),
             PRECOND_OK, NULL);
    truth("written == state size", written == size);
    EXPECT_H("truncated state", opt, precond_optimizer_load_state(opt, state, written - 5),
             PRECOND_INVALID_STATE, "bytes");
    unsigned char versioned[512];
    memcpy(versioned, state, written);
    versioned[8] = 99; /* the u32 format version follows the 8-byte magic */
    EXPECT_H("other version", opt, precond_optimizer_load_state(opt, versioned, written),
             PRECOND_INVALID_STATE, "format version 99");
    precond_optimizer_t *sgd = NULL;
    EXPECT("sgd", precond_optimizer_new_json("{\"optimizer\": \"sgd\", \"lr\": 0.1, \"momentum\": 0.9}", 3, &sgd),
           PRECOND_OK, NULL);
    double xs[3] = {0, 0, 0}, gs[3] = {1, 1, 1};
    precond_optimizer_step_f64(sgd, xs, gs, 3);
    size_t sgd_size = 0;
    precond_optimizer_state_size(sgd, &sgd_size);
    unsigned char sgd_state[512];
    precond_optimizer_save_state(sgd, sgd_state, sizeof sgd_state, &written);
    EXPECT_H("state of another optimizer", opt, precond_optimizer_load_state(opt, sgd_state, written),
             PRECOND_INVALID_STATE, "layout");
    EXPECT_H("load null buffer", opt, precond_optimizer_load_state(opt, NULL, 4),
             PRECOND_NULL_POINTER, "`buf` is NULL");

    /* a state the allocator refuses: Shampoo on a 2^24 x 1 matrix in one block would need a
       2^48-element left factor. The first step reports it, nothing changes. */
    {
        const size_t big = (size_t)1 << 24;
        precond_optimizer_t *huge = NULL;
        EXPECT("shampoo on a tall matrix",
               precond_optimizer_new_json("{\"optimizer\": \"shampoo\", \"shape\": [16777216, 1], "
                                          "\"max_preconditioner_dim\": 16777216}",
                                          big, &huge),
               PRECOND_OK, NULL);
        float *hx = calloc(big, sizeof *hx), *hg = calloc(big, sizeof *hg);
        if (hx == NULL || hg == NULL) {
            printf("FAIL calloc of the tall matrix\n");
            total++;
        } else {
            hg[0] = 1.0f;
            EXPECT_H("state too large", huge, precond_optimizer_step_f32(huge, hx, hg, big),
                     PRECOND_OUT_OF_MEMORY, "left_factor");
            uint64_t steps = 1;
            precond_optimizer_step_count(huge, &steps);
            truth("refused first step leaves step 0 and x", steps == 0 && hx[0] == 0.0f);
        }
        free(hx);
        free(hg);
        precond_optimizer_free(huge);
    }

    /* per-handle messages are independent */
    EXPECT_H("sgd length mismatch", sgd, precond_optimizer_step_f64(sgd, xs, gs, 1),
             PRECOND_DIMENSION_MISMATCH, "`n` is 1");
    truth("handle messages are per handle",
          strstr(precond_optimizer_last_error(opt), "load_state") != NULL &&
              strstr(precond_optimizer_last_error(sgd), "step_f64") != NULL);
    precond_optimizer_free(sgd);

    /* after all that, the handle continues exactly from its saved state */
    uint64_t before = 0, after = 0;
    precond_optimizer_step_count(opt, &before);
    double y[3];
    memcpy(y, x, sizeof x);
    EXPECT_H("step 2", opt, precond_optimizer_step_f64(opt, x, g, 3), PRECOND_OK, NULL);
    EXPECT_H("reload", opt, precond_optimizer_load_state(opt, state, size), PRECOND_OK, NULL);
    EXPECT_H("step 2 again", opt, precond_optimizer_step_f64(opt, y, g, 3), PRECOND_OK, NULL);
    precond_optimizer_step_count(opt, &after);
    truth("reloaded state reproduces the step bit for bit", same(x, y, sizeof x) && after == before + 1);
    EXPECT_H("preconditioner", opt, precond_optimizer_preconditioner(opt, p3, 3), PRECOND_OK, NULL);
    truth("preconditioner positive", p3[0] > 0.0 && p3[1] > 0.0 && p3[2] > 0.0);
    EXPECT_H("reset", opt, precond_optimizer_reset(opt), PRECOND_OK, NULL);
    EXPECT_H("f32 after reset", opt, precond_optimizer_step_f32(opt, xf, gf, 3), PRECOND_OK, NULL);
    precond_optimizer_free(opt);

    /* BNP on a dense layer (group 1: 2 units x 3 inputs, weights then bias at 2..10) */
    {
        const char *bnp_cfg =
            "{\"optimizer\": \"sgd\", \"lr\": 0.1, \"groups\": [{\"start\": 0, \"end\": 2},"
            " {\"start\": 2, \"end\": 10, \"shape\": [2, 3], \"bnp\": true}]}";
        precond_optimizer_t *bnp = NULL;
        EXPECT("bnp: shape without room for the bias",
               precond_optimizer_new_json(
                   "{\"optimizer\": \"sgd\", \"groups\": [{\"start\": 0, \"end\": 6,"
                   " \"shape\": [2, 3], \"bnp\": true}]}",
                   10, &bnp),
               PRECOND_INVALID_ARGUMENT, "groups[0].shape");
        EXPECT("bnp: matrix optimizer",
               precond_optimizer_new_json(
                   "{\"optimizer\": \"sgd\", \"groups\": [{\"start\": 0, \"end\": 8,"
                   " \"shape\": [2, 3], \"bnp\": true, \"optimizer\": \"muon\"}]}",
                   10, &bnp),
               PRECOND_INVALID_ARGUMENT, "groups[0].bnp");
        EXPECT("bnp: config", precond_optimizer_new_json(bnp_cfg, 10, &bnp), PRECOND_OK, NULL);
        double mean[3] = {1.0, 2.0, 3.0}, var[3] = {1.0, 1.0, 1.0};
        double m_out[3] = {-7, -7, -7}, v_out[3] = {-7, -7, -7};
        EXPECT_H("bnp: wrong d", bnp, precond_optimizer_bnp_observe(bnp, 1, mean, var, 2),
                 PRECOND_DIMENSION_MISMATCH, "d = 3");
        EXPECT_H("bnp: group without bnp", bnp,
                 precond_optimizer_bnp_observe(bnp, 0, mean, var, 3), PRECOND_INVALID_ARGUMENT,
                 "groups[0].bnp");
        EXPECT_H("bnp: no such group", bnp, precond_optimizer_bnp_stats(bnp, 5, m_out, v_out, 3),
                 PRECOND_INVALID_ARGUMENT, "no such group");
        var[1] = -1.0;
        EXPECT_H("bnp: negative variance", bnp,
                 precond_optimizer_bnp_observe(bnp, 1, mean, var, 3), PRECOND_INVALID_ARGUMENT,
                 "batch_var[1]");
        var[1] = 1.0;
        mean[2] = nan;
        EXPECT_H("bnp: NaN mean", bnp, precond_optimizer_bnp_observe(bnp, 1, mean, var, 3),
                 PRECOND_INVALID_ARGUMENT, "batch_mean[2]");
        mean[2] = 3.0;
        EXPECT_H("bnp: NULL var", bnp, precond_optimizer_bnp_observe(bnp, 1, mean, NULL, 3),
                 PRECOND_NULL_POINTER, "var");
        EXPECT_H("bnp: overlapping outputs", bnp,
                 precond_optimizer_bnp_stats(bnp, 1, m_out, m_out + 1, 3),
                 PRECOND_INVALID_ARGUMENT, "overlap");
        truth("bnp: outputs untouched on error", m_out[0] == -7.0 && v_out[0] == -7.0);
        EXPECT_H("bnp: stats", bnp, precond_optimizer_bnp_stats(bnp, 1, m_out, v_out, 3),
                 PRECOND_OK, NULL);
        truth("bnp: failed observations changed nothing (mean 0, variance 1)",
              m_out[0] == 0.0 && m_out[2] == 0.0 && v_out[0] == 1.0 && v_out[1] == 1.0);
        EXPECT_H("bnp: observe", bnp, precond_optimizer_bnp_observe(bnp, 1, mean, var, 3),
                 PRECOND_OK, NULL);
        precond_optimizer_free(bnp);
    }

    truth("unknown status name", strcmp(precond_status_name(1234), "PRECOND_UNKNOWN_STATUS") == 0);
    precond_clear_last_error();
    truth("clear_last_error", strcmp(precond_last_error(), "") == 0);

    printf("checks %d/%d\n", passed, total);
    return passed == total ? 0 : 1;
}
