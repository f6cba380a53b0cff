/*
 * A minimal program built against an installed precond (see CMakeLists.txt; the test
 * crates/precond-ffi/tests/install.rs also compiles it with `pkg-config --cflags --libs precond`).
 * Checks that the header and the library agree on the version, that kappa(diag(1, 10, 100)) is
 * 100, that one Adam step moves every parameter by lr against the sign of its gradient, and that a
 * failing call reports its status. Prints "consumer ok VERSION" and exits 0 when all hold.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "precond.h"

static int failures = 0;

static void expect(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "FAIL %s (%s)\n", what, precond_last_error());
        failures++;
    }
}

int main(void) {
    expect(strcmp(precond_version(), PRECOND_VERSION) == 0, "library version == header version");
    expect(precond_version_number() == PRECOND_VERSION_NUMBER, "version number");

    const double a[9] = {1, 0, 0, 0, 10, 0, 0, 0, 100};
    precond_cond2_t c;
    expect(precond_cond2(a, 3, 3, PRECOND_ROW_MAJOR, &c) == PRECOND_OK, "precond_cond2");
    expect(fabs(c.kappa - 100.0) <= 1e-12 * 100.0, "kappa(diag(1, 10, 100)) == 100");

    precond_optimizer_t *opt = NULL;
    expect(precond_optimizer_new_json("{\"optimizer\": \"adam\", \"lr\": 0.01}", 3, &opt) ==
               PRECOND_OK,
           "precond_optimizer_new_json");
    if (opt != NULL) {
        double x[3] = {0, 0, 0};
        const double g[3] = {2.0, -3.0, 0.5};
        expect(precond_optimizer_step_f64(opt, x, g, 3) == PRECOND_OK, "step");
        /* Adam's first step: m_hat = g, v_hat = g^2, x -= lr * g / (|g| + eps) */
        for (int i = 0; i < 3; i++) {
            const double want = -0.01 * g[i] / (fabs(g[i]) + 1e-8);
            expect(fabs(x[i] - want) <= 1e-12, "first Adam step");
        }
        const double bad[3] = {0, NAN, 0};
        expect(precond_optimizer_step_f64(opt, x, bad, 3) == PRECOND_NON_FINITE,
               "a NaN gradient is PRECOND_NON_FINITE");
        precond_optimizer_free(opt);
    }

    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("consumer ok %s\n", precond_version());
    return 0;
}
