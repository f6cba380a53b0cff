// C++ wrapper precond.hpp with a matrix optimizer (THEORY.md section 7): Muon on one 3 x 5
// parameter matrix X (the top-level "shape"), minimizing f = 1/2 ||X - T||_F^2 (gradient X - T)
// with a cosine schedule, then Muon's preconditioner read through
// precond::Optimizer::matrix_preconditioner: X is wide, so Muon's implied multiplier is the left
// one, Lm = (B B^T)^{-1/2} (3 x 3, B the momentum buffer, up to Newton-Schulz's approximation),
// and the right one is empty. Errors arrive as precond::Error with the status.
//
// Output: one "key value" pair per line, read by crates/precond-ffi/tests/examples.rs, which
// reruns the training in Rust. Exit status 1 unless the loss falls below 1e-3 of its start
// (the run reaches about 2e-11 of it: the minimum is 0 and the schedule takes the step to 0).
#include <cmath>
#include <cstdio>
#include <vector>

#include "precond.hpp"

namespace {
constexpr std::size_t ROWS = 3, COLS = 5, N = ROWS * COLS, STEPS = 400;

double loss_grad(const std::vector<double> &x, const std::vector<double> &t,
                 std::vector<double> &g) {
    double f = 0.0;
    for (std::size_t i = 0; i < N; i++) {
        g[i] = x[i] - t[i];
        f += 0.5 * g[i] * g[i];
    }
    return f;
}
} // namespace

int main() {
    try {
        std::vector<double> t(N), x(N, 0.0), g(N);
        for (std::size_t i = 0; i < N; i++) {
            t[i] = std::sin(0.9 * static_cast<double>(i) + 0.3);
        }
        precond::Optimizer opt(R"({"optimizer": "muon", "lr": 0.05, "weight_decay": 0.0,
                                   "shape": [3, 5],
                                   "schedule": {"kind": "cosine", "T_max": 400}})",
                               N);
        const double f0 = loss_grad(x, t, g);
        std::printf("initial_loss %.17g\n", f0);
        double f = f0;
        for (std::size_t k = 0; k < STEPS; k++) {
            f = loss_grad(x, t, g);
            opt.step(x, g);
        }
        f = loss_grad(x, t, g);
        std::printf("final_loss %.17g\n", f);

        const precond_matrix_block_t b = opt.matrix_block_range(precond::top_level);
        std::printf("blocks %zu\n", opt.matrix_blocks(precond::top_level));
        std::printf("block %zu %zu %zu %zu %zu %zu\n", b.rows, b.cols, b.row0, b.row1, b.col0,
                    b.col1);
        const std::vector<double> left =
            opt.matrix_preconditioner(precond::top_level, precond::MatrixPart::Left);
        const std::vector<double> right =
            opt.matrix_preconditioner(precond::top_level, precond::MatrixPart::Right);
        std::printf("left_len %zu\nright_len %zu\n", left.size(), right.size());
        for (std::size_t i = 0; i < left.size(); i++) {
            std::printf("left_%zu %.17g\n", i, left[i]);
        }
        // a block that does not exist, and the diagonal P_k of a matrix optimizer: errors
        int errors = 0;
        try {
            opt.matrix_block_range(precond::top_level, 1);
        } catch (const precond::Error &e) {
            std::printf("bad_block %s\n", e.status_name());
            errors += e.status() == PRECOND_DIMENSION_MISMATCH;
        }
        try {
            opt.preconditioner();
        } catch (const precond::Error &e) {
            std::printf("diagonal_of_muon %s\n", e.status_name());
            errors += e.status() == PRECOND_INVALID_ARGUMENT;
        }
        const bool ok = f < 1e-3 * f0 && left.size() == ROWS * ROWS && right.empty() &&
                        errors == 2;
        std::printf("converged %s\n", ok ? "yes" : "no");
        return ok ? 0 : 1;
    } catch (const precond::Error &e) {
        std::fprintf(stderr, "%s: %s\n", e.status_name(), e.what());
        return 1;
    }
}
