// Logistic regression on the breast_cancer data set (569 samples, 30 features) through the
// C++ wrapper precond.hpp: raw against standardized inputs (THEORY.md section 6, Theorem 6),
// Adam against AdamW (section 5), and what each preconditioner did to the Hessian
// H = (1/N) Xbar D Xbar^T, D = diag(p_n (1 - p_n)) (Theorem 5), parameters ordered [b; w].
//
// Usage: logistic <path to crates/precond-nn/data/breast_cancer.csv> [steps]
// Output: "key value" lines (17 significant digits), checked by
// crates/precond-ffi/tests/examples.rs against the same computation in Rust.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "precond.hpp"

namespace {

struct Data {
    std::size_t n = 0, d = 0;
    std::vector<double> x; // n x d, row-major: one row per sample
    std::vector<double> y; // 0 or 1
};

Data read_csv(const std::string &path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("cannot open " + path);
    }
    std::string line;
    std::getline(in, line);
    Data data;
    std::size_t cols = 1;
    for (char c : line) {
        cols += c == ',' ? 1 : 0;
    }
    data.d = cols - 1; // the last column is the target
    while (std::getline(in, line)) {
        if (line.empty()) {
            continue;
        }
        std::stringstream ss(line);
        std::string field;
        std::size_t j = 0;
        while (std::getline(ss, field, ',')) {
            double v = std::strtod(field.c_str(), nullptr);
            if (j < data.d) {
                data.x.push_back(v);
            } else {
                data.y.push_back(v);
            }
            j++;
        }
        if (j != cols) {
            throw std::runtime_error("ragged CSV line " + std::to_string(data.n + 2));
        }
        data.n++;
    }
    return data;
}

Data standardize(const Data &raw) {
    Data s = raw;
    for (std::size_t j = 0; j < raw.d; j++) {
        double mean = 0.0;
        for (std::size_t i = 0; i < raw.n; i++) {
            mean += raw.x[i * raw.d + j];
        }
        mean /= static_cast<double>(raw.n);
        double var = 0.0;
        for (std::size_t i = 0; i < raw.n; i++) {
            double c = raw.x[i * raw.d + j] - mean;
            var += c * c;
        }
        var /= static_cast<double>(raw.n);
        double sd = std::sqrt(var);
        for (std::size_t i = 0; i < raw.n; i++) {
            s.x[i * raw.d + j] = (raw.x[i * raw.d + j] - mean) / sd;
        }
    }
    return s;
}

double sigmoid(double z) { return z >= 0.0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }

// mean cross-entropy and its gradient with respect to theta = [b; w]; also p_n
double loss_grad(const Data &data, const std::vector<double> &theta, std::vector<double> &g,
                 std::vector<double> &p) {
    const std::size_t n = data.n, d = data.d;
    for (double &v : g) {
        v = 0.0;
    }
    double loss = 0.0;
    for (std::size_t i = 0; i < n; i++) {
        double z = theta[0];
        for (std::size_t j = 0; j < d; j++) {
            z += theta[j + 1] * data.x[i * d + j];
        }
        double softplus = z > 0.0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
        loss += softplus - data.y[i] * z;
        p[i] = sigmoid(z);
        double r = p[i] - data.y[i];
        g[0] += r;
        for (std::size_t j = 0; j < d; j++) {
            g[j + 1] += r * data.x[i * d + j];
        }
    }
    const double inv = 1.0 / static_cast<double>(n);
    for (double &v : g) {
        v *= inv;
    }
    return loss * inv;
}

// H = (1/N) sum_n p_n (1 - p_n) xbar_n xbar_n^T, xbar_n = [1; x_n], row-major (d+1) x (d+1)
std::vector<double> hessian(const Data &data, const std::vector<double> &p) {
    const std::size_t d1 = data.d + 1;
    std::vector<double> h(d1 * d1, 0.0), xb(d1);
    for (std::size_t i = 0; i < data.n; i++) {
        xb[0] = 1.0;
        for (std::size_t j = 0; j < data.d; j++) {
            xb[j + 1] = data.x[i * data.d + j];
        }
        const double w = p[i] * (1.0 - p[i]);
        for (std::size_t a = 0; a < d1; a++) {
            for (std::size_t b = 0; b < d1; b++) {
                h[a * d1 + b] += w * xb[a] * xb[b];
            }
        }
    }
    for (double &v : h) {
        v /= static_cast<double>(data.n);
    }
    return h;
}

void run(const char *name, const std::string &config, const Data &data, int steps) {
    const std::size_t d1 = data.d + 1;
    precond::Optimizer opt(config, d1);
    std::vector<double> theta(d1, 0.0), g(d1), p(data.n);
    for (int k = 0; k < steps; k++) {
        loss_grad(data, theta, g, p);
        opt.step(theta, g);
    }
    const double loss = loss_grad(data, theta, g, p);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < data.n; i++) {
        correct += ((p[i] >= 0.5) == (data.y[i] >= 0.5)) ? 1 : 0;
    }
    double gnorm = 0.0;
    for (double v : g) {
        gnorm += v * v;
    }
    const std::vector<double> h = hessian(data, p);
    precond_spectrum_t spec{};
    precond::sym_eigenvalues(h, d1, precond::Layout::RowMajor, &spec);
    const std::vector<double> pk = opt.preconditioner();
    const precond_preconditioned_cond_t pc =
        precond::preconditioned_cond_diag(h, d1, precond::Layout::RowMajor, pk);
    std::printf("%s_loss %.17g\n", name, loss);
    std::printf("%s_accuracy %.17g\n", name,
                static_cast<double>(correct) / static_cast<double>(data.n));
    std::printf("%s_grad_norm %.17g\n", name, std::sqrt(gnorm));
    std::printf("%s_kappa_H %.17g\n", name, spec.kappa);
    std::printf("%s_kappa_precond %.17g\n", name, pc.spectral_kappa);
    std::printf("%s_steps %llu\n", name, static_cast<unsigned long long>(opt.step_count()));
}

} // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s crates/precond-nn/data/breast_cancer.csv [steps]\n",
                     argv[0]);
        return 2;
    }
    const int steps = argc > 2 ? std::atoi(argv[2]) : 300;
    try {
        const Data raw = read_csv(argv[1]);
        const Data std_data = standardize(raw);
        std::printf("version %s\n", precond::version().c_str());
        std::printf("n_samples %zu\nn_features %zu\n", raw.n, raw.d);

        // Theorem 6 on the data: kappa of the extended matrix [1^T; X^T]
        const precond_dataset_kappa_t k =
            precond::dataset_kappa(raw.x, raw.n, raw.d, precond::Layout::RowMajor);
        std::printf("data_kappa_raw %.17g\n", k.kappa_raw);
        std::printf("data_kappa_centred %.17g\n", k.kappa_centred);
        std::printf("data_kappa_standardized %.17g\n", k.kappa_standardized);
        std::printf("data_kappa_min_max %.17g\n", k.kappa_min_max);
        std::printf("data_kappa_van_der_sluis %.17g\n", k.kappa_van_der_sluis);
        std::printf("data_sqrt_d_plus_1 %.17g\n", k.sqrt_d_plus_1);

        const std::string adam = "{\"optimizer\": \"adam\", \"lr\": 0.01}";
        const std::string adamw = "{\"optimizer\": \"adamw\", \"lr\": 0.01, \"weight_decay\": 0.01}";
        run("raw_adam", adam, raw, steps);
        run("raw_adamw", adamw, raw, steps);
        run("std_adam", adam, std_data, steps);
        run("std_adamw", adamw, std_data, steps);

        // the wrapper reports errors as exceptions carrying the library's message
        try {
            precond::Optimizer bad("{\"optimizer\": \"adam\", \"lr\": -1}", 3);
            std::printf("exception_missing 1\n");
        } catch (const precond::Error &e) {
            std::printf("exception_status %s\n", e.status_name());
            std::printf("exception_message %s\n", e.what());
        }
        // a failing call on a handle throws its per-handle message and leaves it usable
        precond::Optimizer opt("{\"optimizer\": \"adam\", \"lr\": 0.1}", 2);
        std::vector<double> x{1.0, 2.0};
        const std::vector<double> bad{0.5, NAN}, good{0.5, -1.0};
        try {
            opt.step(x, bad);
            std::printf("exception_missing 1\n");
        } catch (const precond::Error &e) {
            std::printf("handle_exception_status %s\n", e.status_name());
            std::printf("handle_exception_message %s\n", e.what());
        }
        opt.step(x, good);
        std::printf("handle_after_error_steps %llu\n",
                    static_cast<unsigned long long>(opt.step_count()));
        precond::Optimizer moved = std::move(opt);
        std::printf("moved_n_params %zu\n", moved.n_params());
        // torch's semantics on request: the NaN enters, the step succeeds and is reported
        precond::Optimizer torchlike(
            "{\"optimizer\": \"adam\", \"lr\": 0.1, \"nonfinite\": \"propagate\"}", 2);
        std::vector<double> y{1.0, 2.0};
        torchlike.step(y, bad);
        std::size_t where = 99;
        const bool seen = torchlike.last_nonfinite(&where);
        std::printf("propagate_seen %d\n", seen ? 1 : 0);
        std::printf("propagate_index %zu\n", where);
        std::printf("propagate_param_is_nan %d\n", std::isnan(y[1]) ? 1 : 0);
        std::printf("propagate_steps %llu\n",
                    static_cast<unsigned long long>(torchlike.step_count()));
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
