/*
 * The C++ wrapper's precond::grad_norm_regularize with a lambda as the gradient: on the
 * quadratic f(x) = 1/2 x^T A x - b^T x (H = A) the regularized gradient must equal the closed
 * form g + 2 rho A P g, with P the Adam preconditioner after a few steps (intrinsic) or the
 * identity (coupled, and no optimizer). A lambda that throws: the wrapper reports it as a
 * precond::Error with the lambda's exception nested, g unchanged.
 *
 * Output: "key value" lines read by crates/precond-ffi/tests/examples.rs.
 */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "precond.hpp"

namespace {

constexpr std::size_t N = 5;

struct Quadratic {
    std::vector<double> a, b;
    Quadratic() : a(N * N), b(N) {
        for (std::size_t i = 0; i < N; i++) {
            for (std::size_t j = 0; j < N; j++) {
                const double off = 0.3 / (1.0 + static_cast<double>(i + j));
                a[i * N + j] = i == j ? 1.0 + 2.0 * static_cast<double>(i * i) : off;
            }
            b[i] = std::cos(1.3 * static_cast<double>(i));
        }
    }
    std::vector<double> matvec(const std::vector<double> &v) const {
        std::vector<double> out(N, 0.0);
        for (std::size_t i = 0; i < N; i++) {
            for (std::size_t j = 0; j < N; j++) {
                out[i] += a[i * N + j] * v[j];
            }
        }
        return out;
    }
    void grad(precond::span<const double> x, precond::span<double> g) const {
        for (std::size_t i = 0; i < N; i++) {
            double s = -b[i];
            for (std::size_t j = 0; j < N; j++) {
                s += a[i * N + j] * x[j];
            }
            g[i] = s;
        }
    }
};

/* max_i |got_i - (g0_i + 2 rho (A P g0)_i)| relative to max |A P g0| */
double deviation(const Quadratic &q, double rho, const std::vector<double> &p,
                 const std::vector<double> &g0, const std::vector<double> &got) {
    std::vector<double> v(N);
    for (std::size_t i = 0; i < N; i++) v[i] = p[i] * g0[i];
    std::vector<double> av = q.matvec(v);
    double dev = 0.0, scale = 0.0;
    for (std::size_t i = 0; i < N; i++) {
        dev = std::max(dev, std::fabs(got[i] - (g0[i] + 2.0 * rho * av[i])));
        scale = std::max(scale, std::fabs(2.0 * rho * av[i]));
    }
    return dev / scale;
}

} // namespace

int main() {
    const Quadratic q;
    auto grad = [&q](precond::span<const double> x, precond::span<double> g) { q.grad(x, g); };
    precond::Optimizer adam(R"({"optimizer": "adam", "lr": 0.05})", N);
    std::vector<double> x(N, 0.0), g(N);
    for (int k = 0; k < 5; k++) {
        q.grad(x, g);
        adam.step(x, g);
    }
    const std::vector<double> p = adam.preconditioner();
    const std::vector<double> ones(N, 1.0);
    q.grad(x, g);
    const std::vector<double> g0 = g;
    const double rho = 0.1;

    double r =
        precond::grad_norm_regularize(adam, rho, precond::GradNormMode::Intrinsic, x, g, grad);
    double pgp = 0.0, gg = 0.0;
    for (std::size_t i = 0; i < N; i++) {
        pgp += g0[i] * p[i] * g0[i];
        gg += g0[i] * g0[i];
    }
    std::printf("intrinsic_R %.17g\n", r);
    std::printf("intrinsic_rho_gPg %.17g\n", rho * pgp);
    std::printf("intrinsic_deviation %.17g\n", deviation(q, rho, p, g0, g));

    g = g0;
    r = precond::grad_norm_regularize(adam, rho, precond::GradNormMode::Coupled, x, g, grad);
    std::printf("coupled_R %.17g\n", r);
    std::printf("coupled_rho_gg %.17g\n", rho * gg);
    std::printf("coupled_deviation %.17g\n", deviation(q, rho, ones, g0, g));

    g = g0;
    r = precond::grad_norm_regularize(nullptr, rho, precond::GradNormMode::Intrinsic, x, g,
                                      grad);
    std::printf("no_optimizer_R %.17g\n", r);
    std::printf("no_optimizer_deviation %.17g\n", deviation(q, rho, ones, g0, g));

    // a throwing callback: no exception crosses the C library; it comes back nested
    g = g0;
    int calls = 0;
    auto throwing = [&calls](precond::span<const double>, precond::span<double>) {
        calls++;
        throw std::domain_error("objective undefined here");
    };
    try {
        precond::grad_norm_regularize(adam, rho, precond::GradNormMode::Intrinsic, x, g,
                                      throwing);
        std::printf("throwing_missing 1\n");
    } catch (const precond::Error &e) {
        std::printf("throwing_status %s\n", e.status_name());
        std::printf("throwing_message %s\n", e.what());
        try {
            std::rethrow_if_nested(e);
            std::printf("throwing_nested none\n");
        } catch (const std::domain_error &inner) {
            std::printf("throwing_nested %s\n", inner.what());
        }
    }
    std::printf("throwing_calls %d\n", calls);
    std::printf("throwing_g_unchanged %d\n", g == g0 ? 1 : 0);

    // a size mismatch is refused by the library
    try {
        precond::Optimizer wrong(R"({"optimizer": "adam"})", N + 1);
        precond::grad_norm_regularize(wrong, rho, precond::GradNormMode::Coupled, x, g, grad);
        std::printf("mismatch_missing 1\n");
    } catch (const precond::Error &e) {
        std::printf("mismatch_status %s\n", e.status_name());
    }
    return 0;
}
