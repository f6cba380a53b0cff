/*
 * precond.hpp: header-only C++17 wrapper of the precond C API (precond.h).
 *
 * - precond::Optimizer owns a precond_optimizer_t (RAII, move-only).
 * - Buffers are passed as precond::span<T> (a minimal std::span: pointer + size), constructible
 *   from std::vector, std::array, C arrays, or a pointer and a size.
 * - Every failing call throws precond::Error, which carries the status code and the library's
 *   message (from the handle for optimizer calls, else the thread-local last error).
 *
 * Thread-safety as in precond.h: free functions may run concurrently; one Optimizer must not be
 * used by two threads at the same time.
 */
#ifndef PRECOND_HPP
#define PRECOND_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "precond.h"

namespace precond {

/** A failed call: the status code and the library's message naming the problem. */
class Error : public std::runtime_error {
public:
    Error(precond_status_t status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    /** The status code returned by the C function. */
    precond_status_t status() const noexcept { return status_; }
    /** The name of the status code, e.g. "PRECOND_NON_FINITE". */
    const char *status_name() const noexcept {
        return precond_status_name(static_cast<int32_t>(status_));
    }

private:
    precond_status_t status_;
};

namespace detail {
inline void check(precond_status_t st) {
    if (st != PRECOND_OK) {
        throw Error(st, precond_last_error());
    }
}
/* span.size() must equal rows * cols (checked for overflow); the C functions take the size
 * from the dimensions, the wrapper makes sure the span really has that many elements. */
inline void require_len(std::size_t have, std::size_t rows, std::size_t cols, const char *what) {
    if (cols != 0 && rows > SIZE_MAX / cols) {
        throw Error(PRECOND_DIMENSION_MISMATCH, std::string(what) + ": size overflows size_t");
    }
    if (have != rows * cols) {
        throw Error(PRECOND_DIMENSION_MISMATCH,
                    std::string(what) + ": buffer has " + std::to_string(have) +
                        " elements, the dimensions need " + std::to_string(rows * cols));
    }
}
inline void check(precond_status_t st, const precond_optimizer_t *opt) {
    if (st != PRECOND_OK) {
        throw Error(st, precond_optimizer_last_error(opt));
    }
}
} // namespace detail

/** A non-owning view of `size` contiguous elements (a minimal C++20 std::span). */
template <class T> class span {
public:
    constexpr span() noexcept : data_(nullptr), size_(0) {}
    constexpr span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <std::size_t N> constexpr span(T (&array)[N]) noexcept : data_(array), size_(N) {}
    /** Any contiguous container with data() and size() (std::vector, std::array, span<U>). */
    template <class C,
              class = std::enable_if_t<
                  !std::is_array<std::remove_reference_t<C>>::value &&
                  std::is_convertible<decltype(std::declval<C &>().data()), T *>::value>>
    constexpr span(C &&c) noexcept : data_(c.data()), size_(c.size()) {}

    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }

private:
    T *data_;
    std::size_t size_;
};

/** Memory order of a matrix buffer. */
enum class Layout : int32_t { RowMajor = PRECOND_ROW_MAJOR, ColMajor = PRECOND_COL_MAJOR };

/** Factorization of the cheap condition estimate. */
enum class EstimateMethod : int32_t { LU = PRECOND_ESTIMATE_LU, SPD = PRECOND_ESTIMATE_SPD };

/** Which matrix of a matrix-preconditioner block (precond_matrix_part_t): for a block of r rows
 *  and c columns, Left/LeftFactor/LeftBasis are r x r, Right/RightFactor/RightBasis c x c,
 *  Diagonal r x c, all row-major. */
enum class MatrixPart : int32_t {
    Left = PRECOND_MATRIX_LEFT,
    Right = PRECOND_MATRIX_RIGHT,
    LeftFactor = PRECOND_MATRIX_LEFT_FACTOR,
    RightFactor = PRECOND_MATRIX_RIGHT_FACTOR,
    LeftBasis = PRECOND_MATRIX_LEFT_BASIS,
    RightBasis = PRECOND_MATRIX_RIGHT_BASIS,
    Diagonal = PRECOND_MATRIX_DIAGONAL,
};

/** The `group` argument naming the top level (the configuration's own "shape"). */
constexpr std::int64_t top_level = -1;

/** The library version (compare with PRECOND_VERSION of the header). */
inline std::string version() { return precond_version(); }

/** 2-norm condition number of an nrows x ncols matrix (precond_cond2). */
inline precond_cond2_t cond2(span<const double> a, std::size_t nrows, std::size_t ncols,
                             Layout layout) {
    precond_cond2_t out{};
    detail::require_len(a.size(), nrows, ncols, "precond::cond2");
    detail::check(precond_cond2(a.data(), nrows, ncols, static_cast<int32_t>(layout), &out));
    return out;
}

/** Ascending eigenvalues of a symmetric n x n matrix and, optionally, its spectral summary. */
inline std::vector<double> sym_eigenvalues(span<const double> h, std::size_t n, Layout layout,
                                           precond_spectrum_t *summary = nullptr) {
    detail::require_len(h.size(), n, n, "precond::sym_eigenvalues");
    std::vector<double> ev(n);
    detail::check(precond_sym_eigenvalues(h.data(), n, static_cast<int32_t>(layout), ev.data(),
                                          ev.size(), summary));
    return ev;
}

/** kappa(P^{1/2} H P^{1/2}) and kappa(P H) for a positive diagonal P = diag(p). */
inline precond_preconditioned_cond_t preconditioned_cond_diag(span<const double> h,
                                                              std::size_t n, Layout layout,
                                                              span<const double> p) {
    detail::require_len(h.size(), n, n, "precond::preconditioned_cond_diag");
    precond_preconditioned_cond_t out{};
    detail::check(precond_preconditioned_cond_diag(h.data(), n, static_cast<int32_t>(layout),
                                                   p.data(), p.size(), &out));
    return out;
}

/** A diagonal scaling and the scaled matrix (same layout as the input). */
struct Equilibration {
    std::vector<double> scale;
    std::vector<double> scaled;
};

/** Row equilibration diag(1/||a_i||) A (Theorem 2). */
inline Equilibration row_equilibrate(span<const double> a, std::size_t nrows, std::size_t ncols,
                                     Layout layout) {
    detail::require_len(a.size(), nrows, ncols, "precond::row_equilibrate");
    Equilibration e{std::vector<double>(nrows), std::vector<double>(a.size())};
    detail::check(precond_row_equilibrate(a.data(), nrows, ncols, static_cast<int32_t>(layout),
                                          e.scale.data(), e.scale.size(), e.scaled.data(),
                                          e.scaled.size()));
    return e;
}

/** Column equilibration A diag(1/||a^j||). */
inline Equilibration col_equilibrate(span<const double> a, std::size_t nrows, std::size_t ncols,
                                     Layout layout) {
    detail::require_len(a.size(), nrows, ncols, "precond::col_equilibrate");
    Equilibration e{std::vector<double>(ncols), std::vector<double>(a.size())};
    detail::check(precond_col_equilibrate(a.data(), nrows, ncols, static_cast<int32_t>(layout),
                                          e.scale.data(), e.scale.size(), e.scaled.data(),
                                          e.scaled.size()));
    return e;
}

/** The cheap 1-norm condition estimate of a square n x n matrix. */
inline precond_cond_estimate_t cond_estimate(span<const double> a, std::size_t n, Layout layout,
                                             EstimateMethod method = EstimateMethod::LU) {
    detail::require_len(a.size(), n, n, "precond::cond_estimate");
    precond_cond_estimate_t out{};
    detail::check(precond_cond_estimate(a.data(), n, static_cast<int32_t>(layout),
                                        static_cast<int32_t>(method), &out));
    return out;
}

/** kappa of the extended data matrix [1^T; X^T] raw, centred, standardized, ... (Theorem 6);
 *  x holds one row per sample. */
inline precond_dataset_kappa_t dataset_kappa(span<const double> x, std::size_t n_samples,
                                             std::size_t n_features, Layout layout) {
    detail::require_len(x.size(), n_samples, n_features, "precond::dataset_kappa");
    precond_dataset_kappa_t out{};
    detail::check(precond_dataset_kappa(x.data(), n_samples, n_features,
                                        static_cast<int32_t>(layout), &out));
    return out;
}

/** torch's defaults for an optimizer kind (precond_optimizer_config_init). */
inline precond_optimizer_config_t default_config(precond_optimizer_kind_t kind) {
    precond_optimizer_config_t cfg{};
    detail::check(precond_optimizer_config_init(static_cast<int32_t>(kind), &cfg));
    return cfg;
}

/** Running statistics of a BNP group (Optimizer::bnp_stats): per input feature, the running
 *  mean and population variance. */
struct BnpStatistics {
    std::vector<double> mean;
    std::vector<double> var;
};

/** A workspace for inverse roots of n x n symmetric positive semidefinite matrices (owns a
 *  precond_sym_root_t): Shampoo's (A + eps I)^(-1/root), its buffers reused by every call. */
class SymRoot {
public:
    explicit SymRoot(std::size_t n) : n_(n) { detail::check(precond_sym_root_new(n, &ws_)); }
    ~SymRoot() { precond_sym_root_free(ws_); }
    SymRoot(const SymRoot &) = delete;
    SymRoot &operator=(const SymRoot &) = delete;
    SymRoot(SymRoot &&other) noexcept : ws_(std::exchange(other.ws_, nullptr)), n_(other.n_) {}
    SymRoot &operator=(SymRoot &&other) noexcept {
        if (this != &other) {
            precond_sym_root_free(ws_);
            ws_ = std::exchange(other.ws_, nullptr);
            n_ = other.n_;
        }
        return *this;
    }
    /** The size n the workspace serves. */
    std::size_t dim() const { return n_; }
    /** out = (A + eps I)^(-1/root) (precond_sym_inverse_root), exactly symmetric, n x n in
     *  either layout; returns the eigenvalue range of A. `out` must hold n*n values. */
    precond_root_info_t inverse_root(span<const double> a, Layout layout, double eps, double root,
                                     span<double> out) {
        detail::require_len(a.size(), n_, n_, "precond::SymRoot::inverse_root (a)");
        detail::require_len(out.size(), n_, n_, "precond::SymRoot::inverse_root (out)");
        precond_root_info_t info{};
        detail::check(precond_sym_inverse_root(ws_, a.data(), n_, static_cast<int32_t>(layout),
                                               eps, root, out.data(), out.size(), &info));
        return info;
    }

private:
    precond_sym_root_t *ws_ = nullptr;
    std::size_t n_;
};

/** An optimizer over n_params parameters (owns a precond_optimizer_t). */
class Optimizer {
public:
    /** From the JSON configuration (torch names), e.g. {"optimizer": "adamw", "lr": 1e-3}. */
    Optimizer(const std::string &config_json, std::size_t n_params) {
        detail::check(precond_optimizer_new_json(config_json.c_str(), n_params, &opt_));
    }
    /** From a typed configuration (start from precond::default_config). */
    Optimizer(const precond_optimizer_config_t &config, std::size_t n_params) {
        detail::check(precond_optimizer_new(&config, n_params, &opt_));
    }
    /** Rank `rank`'s optimizer of `world` under ZeRO-1 (precond_optimizer_new_shard): an
     *  optimizer over the local slice x[shard_range(...)] whose steps are bitwise the unsharded
     *  optimizer's on those coordinates; its saved state names the shard. */
    static Optimizer shard(const std::string &config_json, std::size_t n_params,
                           std::size_t world, std::size_t rank) {
        precond_optimizer_t *h = nullptr;
        detail::check(precond_optimizer_new_shard(config_json.c_str(), n_params, world, rank, &h));
        return Optimizer(h);
    }
    ~Optimizer() { precond_optimizer_free(opt_); }
    Optimizer(const Optimizer &) = delete;
    Optimizer &operator=(const Optimizer &) = delete;
    Optimizer(Optimizer &&other) noexcept : opt_(std::exchange(other.opt_, nullptr)) {}
    Optimizer &operator=(Optimizer &&other) noexcept {
        if (this != &other) {
            precond_optimizer_free(opt_);
            opt_ = std::exchange(other.opt_, nullptr);
        }
        return *this;
    }

    /** One step on double buffers (params updated in place). */
    void step(span<double> params, span<const double> grads) {
        require_same_size(params.size(), grads.size());
        detail::check(
            precond_optimizer_step_f64(opt_, params.data(), grads.data(), params.size()), opt_);
    }
    /** One step on float buffers. */
    void step(span<float> params, span<const float> grads) {
        require_same_size(params.size(), grads.size());
        detail::check(
            precond_optimizer_step_f32(opt_, params.data(), grads.data(), params.size()), opt_);
    }
    /** Base learning rate. */
    double lr() const {
        double v = 0.0;
        detail::check(precond_optimizer_get_lr(opt_, &v), opt_);
        return v;
    }
    /** Sets the base learning rate. */
    void set_lr(double lr) { detail::check(precond_optimizer_set_lr(opt_, lr), opt_); }
    /** The learning rate of the next step (through the schedule). */
    double current_lr() const {
        double v = 0.0;
        detail::check(precond_optimizer_current_lr(opt_, &v), opt_);
        return v;
    }
    std::size_t n_params() const {
        std::size_t n = 0;
        detail::check(precond_optimizer_n_params(opt_, &n), opt_);
        return n;
    }
    std::uint64_t step_count() const {
        std::uint64_t n = 0;
        detail::check(precond_optimizer_step_count(opt_, &n), opt_);
        return n;
    }
    /** Whether the gradient of the most recent successful step had a NaN/Inf entry (only the
     *  "skip" and "propagate" policies let such a step succeed); *index gets the first one. */
    bool last_nonfinite(std::size_t *index = nullptr) const {
        int32_t found = 0;
        std::size_t i = 0;
        detail::check(precond_optimizer_last_nonfinite(opt_, &found, &i), opt_);
        if (index != nullptr) *index = i;
        return found != 0;
    }
    /** Folds one batch's per-feature mean and biased (population) variance of the input of
     *  the BNP group `group` (a group with "bnp" and "shape": [units, d]) into its running
     *  statistics (precond_optimizer_bnp_observe); call after the forward pass, before step. */
    void bnp_observe(std::size_t group, span<const double> mean, span<const double> var) {
        if (mean.size() != var.size()) {
            throw Error(PRECOND_DIMENSION_MISMATCH,
                        "precond::Optimizer::bnp_observe: mean has " +
                            std::to_string(mean.size()) + " elements, var has " +
                            std::to_string(var.size()));
        }
        detail::check(
            precond_optimizer_bnp_observe(opt_, group, mean.data(), var.data(), mean.size()),
            opt_);
    }
    /** Running mean and population variance of the BNP group `group`, `d` features each
     *  (precond_optimizer_bnp_stats). */
    BnpStatistics bnp_stats(std::size_t group, std::size_t d) const {
        BnpStatistics s{std::vector<double>(d), std::vector<double>(d)};
        detail::check(
            precond_optimizer_bnp_stats(opt_, group, s.mean.data(), s.var.data(), d), opt_);
        return s;
    }
    /** The current diagonal preconditioner P_k. */
    std::vector<double> preconditioner() const {
        std::vector<double> p(n_params());
        detail::check(precond_optimizer_preconditioner(opt_, p.data(), p.size()), opt_);
        return p;
    }
    /** Number of blocks of the matrix preconditioner of `group` (an index into "groups", or
     *  precond::top_level) run by Muon, Shampoo or SOAP (precond_optimizer_matrix_blocks). */
    std::size_t matrix_blocks(std::int64_t group) const {
        std::size_t n = 0;
        detail::check(precond_optimizer_matrix_blocks(opt_, group, &n), opt_);
        return n;
    }
    /** Where block `block` sits in the parameter matrix (precond_optimizer_matrix_block_range). */
    precond_matrix_block_t matrix_block_range(std::int64_t group, std::size_t block = 0) const {
        precond_matrix_block_t b{};
        detail::check(precond_optimizer_matrix_block_range(opt_, group, block, &b), opt_);
        return b;
    }
    /** Matrix `which` of block `block` of the matrix preconditioner of `group`, row-major
     *  (precond_optimizer_matrix_preconditioner); empty when the block has no such matrix (Muon:
     *  Left for a wide or square matrix, Right for a tall one, nothing else). */
    std::vector<double> matrix_preconditioner(std::int64_t group, MatrixPart which,
                                              std::size_t block = 0) const {
        const auto w = static_cast<int32_t>(which);
        std::size_t need = 0, written = 0;
        detail::check(
            precond_optimizer_matrix_preconditioner(opt_, group, w, block, nullptr, 0, &need),
            opt_);
        std::vector<double> m(need);
        if (need != 0) {
            detail::check(precond_optimizer_matrix_preconditioner(opt_, group, w, block, m.data(),
                                                                  m.size(), &written),
                          opt_);
            m.resize(written);
        }
        return m;
    }
    /** The state as bytes (precond_optimizer_save_state). */
    std::vector<std::uint8_t> save_state() const {
        std::size_t size = 0, written = 0;
        detail::check(precond_optimizer_state_size(opt_, &size), opt_);
        std::vector<std::uint8_t> buf(size);
        detail::check(precond_optimizer_save_state(opt_, buf.data(), buf.size(), &written), opt_);
        buf.resize(written);
        return buf;
    }
    /** Loads a saved state; on error the optimizer is unchanged. */
    void load_state(span<const std::uint8_t> state) {
        detail::check(precond_optimizer_load_state(opt_, state.data(), state.size()), opt_);
    }
    /** Forgets moments, accumulators and the step count. */
    void reset() { detail::check(precond_optimizer_reset(opt_), opt_); }
    /** The underlying handle (still owned by this object). */
    precond_optimizer_t *get() const noexcept { return opt_; }

private:
    explicit Optimizer(precond_optimizer_t *owned) noexcept : opt_(owned) {}
    static void require_same_size(std::size_t a, std::size_t b) {
        if (a != b) {
            throw Error(PRECOND_DIMENSION_MISMATCH,
                        "precond::Optimizer::step: params has " + std::to_string(a) +
                            " elements, grads has " + std::to_string(b));
        }
    }
    precond_optimizer_t *opt_ = nullptr;
};

/** The range [start, end) of the flat parameter vector that one rank steps under ZeRO-1. */
struct ShardRange {
    std::size_t start;
    std::size_t end;
};

/** Rank `rank`'s range of `world` for this optimizer over n_params parameters
 *  (precond_shard_range): contiguous, in rank order, never splitting a matrix group. */
inline ShardRange shard_range(const std::string &config_json, std::size_t n_params,
                              std::size_t world, std::size_t rank) {
    ShardRange r{0, 0};
    detail::check(
        precond_shard_range(config_json.c_str(), n_params, world, rank, &r.start, &r.end));
    return r;
}

/** The unsharded state from the saved states of every shard, in rank order
 *  (precond_state_assemble): bitwise what the unsharded optimizer would have saved. */
inline std::vector<std::uint8_t>
state_assemble(const std::string &config_json, std::size_t n_params,
               const std::vector<std::vector<std::uint8_t>> &shard_states) {
    std::vector<const std::uint8_t *> ptrs;
    std::vector<std::size_t> lens;
    for (const auto &b : shard_states) {
        ptrs.push_back(b.data());
        lens.push_back(b.size());
    }
    std::size_t need = 0, written = 0;
    detail::check(precond_state_assemble(config_json.c_str(), n_params, shard_states.size(),
                                         ptrs.data(), lens.data(), nullptr, 0, &need));
    std::vector<std::uint8_t> out(need);
    detail::check(precond_state_assemble(config_json.c_str(), n_params, shard_states.size(),
                                         ptrs.data(), lens.data(), out.data(), out.size(),
                                         &written));
    out.resize(written);
    return out;
}

/** Rank `rank`'s state of `world` from an unsharded state (precond_state_split): loads into
 *  Optimizer::shard(config_json, n_params, world, rank); any world size (resharding). */
inline std::vector<std::uint8_t> state_split(const std::string &config_json,
                                             std::size_t n_params, std::size_t world,
                                             std::size_t rank, span<const std::uint8_t> state) {
    std::size_t need = 0, written = 0;
    detail::check(precond_state_split(config_json.c_str(), n_params, world, rank, state.data(),
                                      state.size(), nullptr, 0, &need));
    std::vector<std::uint8_t> out(need);
    detail::check(precond_state_split(config_json.c_str(), n_params, world, rank, state.data(),
                                      state.size(), out.data(), out.size(), &written));
    out.resize(written);
    return out;
}

/** Which gradient norm grad_norm_regularize penalizes (precond_grad_norm_mode_t). */
enum class GradNormMode : int32_t {
    /** R = rho grad f^T P grad f, P the optimizer's current diagonal preconditioner. */
    Intrinsic = PRECOND_GRAD_NORM_INTRINSIC,
    /** R = rho ||grad f||^2. */
    Coupled = PRECOND_GRAD_NORM_COUPLED,
};

/** The gradient of the caller's objective: writes grad f(x) into `grad` (same size as `x`). It
 *  may throw: grad_norm_regularize then stops and rethrows (see there). */
using GradientFn = std::function<void(span<const double> x, span<double> grad)>;

namespace detail {
struct GradientCall {
    const GradientFn *fn;
    std::exception_ptr error;
};
/* the precond_gradient_fn given to the C library: no exception crosses it */
inline int32_t gradient_trampoline(void *user_data, const double *x, double *grad,
                                    std::size_t n) noexcept {
    auto *call = static_cast<GradientCall *>(user_data);
    try {
        (*call->fn)(span<const double>(x, n), span<double>(grad, n));
        return 0;
    } catch (...) {
        call->error = std::current_exception();
        return 1;
    }
}
} // namespace detail

/** Gradient-norm regularization (precond_grad_norm_regularize, THEORY.md section 5): adds
 *  grad R = 2 rho H P g to the gradient `g` = grad f(x) in place and returns R (rho g^T P g,
 *  intrinsic, or rho ||g||^2, coupled). `opt` may be nullptr (P = I); P = I also before the
 *  optimizer has a preconditioner (Adam before its first step). `grad` is called at most twice,
 *  on this thread, during the call. If it throws, the library is told that the callback failed
 *  (no exception crosses the C library), `g` is left unchanged, and a precond::Error carrying
 *  the library's status and message is thrown with the callback's exception nested in it
 *  (std::rethrow_if_nested gets it back). */
inline double grad_norm_regularize(const Optimizer *opt, double rho, GradNormMode mode,
                                   span<const double> x, span<double> g, const GradientFn &grad) {
    if (x.size() != g.size()) {
        throw Error(PRECOND_DIMENSION_MISMATCH,
                    "precond::grad_norm_regularize: x has " + std::to_string(x.size()) +
                        " elements, g has " + std::to_string(g.size()));
    }
    detail::GradientCall call{&grad, nullptr};
    const precond_optimizer_t *h = opt != nullptr ? opt->get() : nullptr;
    double value = 0.0;
    precond_status_t st = precond_grad_norm_regularize(
        h, rho, static_cast<int32_t>(mode), x.data(), g.data(), x.size(),
        &detail::gradient_trampoline, &call, &value);
    if (st != PRECOND_OK) {
        std::string msg = h != nullptr ? precond_optimizer_last_error(h) : precond_last_error();
        if (call.error) {
            try {
                std::rethrow_exception(call.error);
            } catch (...) {
                std::throw_with_nested(Error(st, msg));
            }
        }
        throw Error(st, msg);
    }
    return value;
}

/** grad_norm_regularize with an optimizer's P_k. */
inline double grad_norm_regularize(const Optimizer &opt, double rho, GradNormMode mode,
                                   span<const double> x, span<double> g, const GradientFn &grad) {
    return grad_norm_regularize(&opt, rho, mode, x, g, grad);
}

} // namespace precond

#endif // PRECOND_HPP
