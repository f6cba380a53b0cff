"""
    Precond

Julia bindings of the precond C library (`precond.h`) through `ccall`: optimizers whose diagonal
preconditioner is observable, and conditioning diagnostics (THEORY.md sections 1-6).

The library is `ENV["PRECOND_LIB"]` when set (the path of `libprecond.so` or
`libprecond_ffi.so`), else the in-tree link `ffi-examples/build/lib/shared/libprecond.so` that
`make -C ffi-examples` creates (`DEFAULT_LIB`, next to this package) when it exists, else
`libprecond` on the library search path (an installed prefix). It is looked up at the first call
(`libprecond()`), not when the package is precompiled.

- Handles are mutable structs with finalizers (`Optimizer`); `close(opt)` frees early.
- Every failing call throws a `PrecondError` carrying the status code and the library's message
  (taken from the handle for optimizer calls: Julia tasks migrate between threads, so the
  per-handle message is the reliable one).
- Matrices are Julia (column-major) arrays and are passed with `PRECOND_COL_MAJOR`.
"""
module Precond

export PrecondError, Optimizer, OptimizerConfig, default_config, step!, lr, set_lr!,
       current_lr, preconditioner, step_count, last_nonfinite, save_state, load_state!, reset!,
       matrix_blocks, matrix_block_range, matrix_preconditioner, bnp_observe!, bnp_stats,
       shard_range, state_assemble, state_split,
       cond2, sym_eigenvalues, preconditioned_cond_diag, row_equilibrate, col_equilibrate,
       cond_estimate, dataset_kappa, version, grad_norm_regularize!, SymRoot, RootInfo,
       inverse_root, inverse_root!

using Libdl: dlext

"""The in-tree library link of `make -C ffi-examples` (`ffi-examples/build/lib/shared`)."""
const DEFAULT_LIB =
    normpath(joinpath(@__DIR__, "..", "..", "..", "build", "lib", "shared", "libprecond.$dlext"))

const LIB = Ref{String}("")

"""
    libprecond()

The C library every `ccall` of this module uses: `ENV["PRECOND_LIB"]`, else `DEFAULT_LIB` when it
exists, else `"libprecond"` (found on the library search path). Chosen once, at the first call.
"""
function libprecond()
    if isempty(LIB[])
        LIB[] = get(ENV, "PRECOND_LIB") do
            isfile(DEFAULT_LIB) ? DEFAULT_LIB : "libprecond"
        end
    end
    return LIB[]
end

# status codes (precond_status_t)
const PRECOND_OK = Cint(0)
const PRECOND_NULL_POINTER = Cint(1)
const PRECOND_INVALID_ARGUMENT = Cint(2)
const PRECOND_DIMENSION_MISMATCH = Cint(3)
const PRECOND_NON_FINITE = Cint(4)
const PRECOND_NUMERICAL_FAILURE = Cint(5)
const PRECOND_PARSE_ERROR = Cint(6)
const PRECOND_INTERNAL_PANIC = Cint(7)
const PRECOND_INVALID_STATE = Cint(8)
const PRECOND_OUT_OF_MEMORY = Cint(9)

# precond_layout_t, precond_estimate_method_t, precond_optimizer_kind_t
const PRECOND_ROW_MAJOR = Cint(0)
const PRECOND_COL_MAJOR = Cint(1)
const PRECOND_ESTIMATE_LU = Cint(0)
const PRECOND_ESTIMATE_SPD = Cint(1)
const PRECOND_SGD = Cint(0)
const PRECOND_GD = Cint(1)
const PRECOND_ADAGRAD = Cint(2)
const PRECOND_RMSPROP = Cint(3)
const PRECOND_ADAM = Cint(4)
const PRECOND_ADAMW = Cint(5)
const PRECOND_PRECOND_GD = Cint(6)
const PRECOND_MATRIX_LEFT = Cint(0)
const PRECOND_MATRIX_RIGHT = Cint(1)
const PRECOND_MATRIX_LEFT_FACTOR = Cint(2)
const PRECOND_MATRIX_RIGHT_FACTOR = Cint(3)
const PRECOND_MATRIX_LEFT_BASIS = Cint(4)
const PRECOND_MATRIX_RIGHT_BASIS = Cint(5)
const PRECOND_MATRIX_DIAGONAL = Cint(6)
const PRECOND_GRAD_NORM_INTRINSIC = Cint(0)
const PRECOND_GRAD_NORM_COUPLED = Cint(1)

"""A failed call: status code, its name and the library's message naming the problem."""
struct PrecondError <: Exception
    status::Cint
    name::String
    message::String
end

Base.showerror(io::IO, e::PrecondError) = print(io, "PrecondError(", e.name, "): ", e.message)

status_name(st::Cint) =
    unsafe_string(ccall((:precond_status_name, libprecond()), Cstring, (Cint,), st))

function check(st::Cint)
    st == PRECOND_OK && return nothing
    msg = unsafe_string(ccall((:precond_last_error, libprecond()), Cstring, ()))
    throw(PrecondError(st, status_name(st), msg))
end

"""The library version string."""
version() = unsafe_string(ccall((:precond_version, libprecond()), Cstring, ()))

"""The library version as MAJOR * 10000 + MINOR * 100 + PATCH."""
version_number() = ccall((:precond_version_number, libprecond()), UInt32, ())

"""Clears this thread's last error message."""
clear_last_error() = ccall((:precond_clear_last_error, libprecond()), Cvoid, ())

# ---------------------------------------------------------------- C structs (same field order)

struct Cond2
    sigma_max::Cdouble
    sigma_min::Cdouble
    kappa::Cdouble
    rank_deficient::Int32
end

struct Spectrum
    lambda_min::Cdouble
    lambda_max::Cdouble
    kappa::Cdouble
    smallest_positive::Cdouble
    kappa_positive::Cdouble
    rel_tol::Cdouble
    positive_definite::Int32
    has_positive::Int32
end

struct RootInfo
    min_eigenvalue::Cdouble
    max_eigenvalue::Cdouble
end

struct PreconditionedCond
    spectral_kappa::Cdouble
    lambda_min::Cdouble
    lambda_max::Cdouble
    row_scaled_kappa2::Cdouble
    positive_definite::Int32
end

struct CondEstimate
    kappa1_estimate::Cdouble
    norm1::Cdouble
    inv_norm1_estimate::Cdouble
    solves::Csize_t
end

struct DatasetKappa
    kappa_raw::Cdouble
    kappa_centred::Cdouble
    kappa_standardized::Cdouble
    kappa_min_max::Cdouble
    kappa_van_der_sluis::Cdouble
    sqrt_d_plus_1::Cdouble
end

"""Where a matrix-preconditioner block sits (`precond_matrix_block_t`, 0-based, half-open)."""
struct MatrixBlock
    rows::Csize_t
    cols::Csize_t
    row0::Csize_t
    row1::Csize_t
    col0::Csize_t
    col1::Csize_t
end

"""Typed optimizer configuration (`precond_optimizer_config_t`); start from `default_config`."""
struct OptimizerConfig
    kind::Int32
    lr::Cdouble
    beta1::Cdouble
    beta2::Cdouble
    eps::Cdouble
    weight_decay::Cdouble
    momentum::Cdouble
    dampening::Cdouble
    alpha::Cdouble
    lr_decay::Cdouble
    initial_accumulator_value::Cdouble
    amsgrad::Int32
    nesterov::Int32
    centered::Int32
    maximize::Int32
    skip_nonfinite::Int32
    diag_preconditioner::Ptr{Cdouble}
    diag_preconditioner_len::Csize_t
end

# ---------------------------------------------------------------- diagnostics

"""2-norm condition number κ(A) = σ_max/σ_min of a matrix."""
function cond2(A::AbstractMatrix{<:Real})
    a = Matrix{Float64}(A)
    out = Ref{Cond2}()
    check(ccall((:precond_cond2, libprecond()), Cint,
                (Ptr{Cdouble}, Csize_t, Csize_t, Cint, Ref{Cond2}),
                a, size(a, 1), size(a, 2), PRECOND_COL_MAJOR, out))
    return out[]
end

"""Ascending eigenvalues of a symmetric matrix and its `Spectrum` summary."""
function sym_eigenvalues(H::AbstractMatrix{<:Real})
    h = Matrix{Float64}(H)
    n = size(h, 1)
    ev = Vector{Float64}(undef, n)
    summary = Ref{Spectrum}()
    check(ccall((:precond_sym_eigenvalues, libprecond()), Cint,
                (Ptr{Cdouble}, Csize_t, Cint, Ptr{Cdouble}, Csize_t, Ref{Spectrum}),
                h, n, PRECOND_COL_MAJOR, ev, length(ev), summary))
    return ev, summary[]
end

"""
    SymRoot(n)

A workspace for inverse roots of `n × n` symmetric positive semidefinite matrices (Shampoo's
`(A + εI)^(-1/root)`, THEORY.md section 7), freed by its finalizer or `close`; every call on it
reuses its buffers. Not to be used by two tasks at the same time.
"""
mutable struct SymRoot
    ptr::Ptr{Cvoid}
    n::Int

    function SymRoot(n::Integer)
        out = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:precond_sym_root_new, libprecond()), Cint, (Csize_t, Ref{Ptr{Cvoid}}),
                    n, out))
        return finalizer(close, new(out[], n))
    end
end

"""Frees the workspace now (idempotent; the finalizer calls it too)."""
function Base.close(w::SymRoot)
    if w.ptr != C_NULL
        ccall((:precond_sym_root_free, libprecond()), Cvoid, (Ptr{Cvoid},), w.ptr)
        w.ptr = C_NULL
    end
    return nothing
end

"""
    inverse_root!(out, ws::SymRoot, A; eps=0.0, root=4.0) -> (out, RootInfo)

`out = (A + eps I)^(-1/root)` for a symmetric positive semidefinite `A` (eps added to the
eigenvalues), exactly symmetric; `RootInfo` holds `λ_min(A)` and `λ_max(A)`.
"""
function inverse_root!(out::Matrix{Float64}, w::SymRoot, A::AbstractMatrix{<:Real};
                       eps::Real=0.0, root::Real=4.0)
    a = Matrix{Float64}(A)
    info = Ref{RootInfo}()
    check(ccall((:precond_sym_inverse_root, libprecond()), Cint,
                (Ptr{Cvoid}, Ptr{Cdouble}, Csize_t, Cint, Cdouble, Cdouble, Ptr{Cdouble}, Csize_t,
                 Ref{RootInfo}),
                w.ptr, a, size(a, 1), PRECOND_COL_MAJOR, eps, root, out, length(out), info))
    return out, info[]
end

"""`inverse_root!` into a new matrix."""
inverse_root(w::SymRoot, A::AbstractMatrix{<:Real}; kw...) =
    inverse_root!(Matrix{Float64}(undef, size(A)...), w, A; kw...)

"""κ(P^{1/2} H P^{1/2}) and κ(P H) for the diagonal preconditioner P = diag(p)."""
function preconditioned_cond_diag(H::AbstractMatrix{<:Real}, p::AbstractVector{<:Real})
    h = Matrix{Float64}(H)
    pv = Vector{Float64}(p)
    out = Ref{PreconditionedCond}()
    check(ccall((:precond_preconditioned_cond_diag, libprecond()), Cint,
                (Ptr{Cdouble}, Csize_t, Cint, Ptr{Cdouble}, Csize_t, Ref{PreconditionedCond}),
                h, size(h, 1), PRECOND_COL_MAJOR, pv, length(pv), out))
    return out[]
end

"""Row equilibration: `(d, diag(d) * A)` with d_i = 1/‖a_i‖ (Theorem 2)."""
function row_equilibrate(A::AbstractMatrix{<:Real})
    a = Matrix{Float64}(A)
    d = Vector{Float64}(undef, size(a, 1))
    scaled = similar(a)
    check(ccall((:precond_row_equilibrate, libprecond()), Cint,
                (Ptr{Cdouble}, Csize_t, Csize_t, Cint, Ptr{Cdouble}, Csize_t, Ptr{Cdouble},
                 Csize_t),
                a, size(a, 1), size(a, 2), PRECOND_COL_MAJOR, d, length(d), scaled,
                length(scaled)))
    return d, scaled
end

"""Column equilibration: `(d, A * diag(d))` with d_j = 1/‖a^j‖."""
function col_equilibrate(A::AbstractMatrix{<:Real})
    a = Matrix{Float64}(A)
    d = Vector{Float64}(undef, size(a, 2))
    scaled = similar(a)
    check(ccall((:precond_col_equilibrate, libprecond()), Cint,
                (Ptr{Cdouble}, Csize_t, Csize_t, Cint, Ptr{Cdouble}, Csize_t, Ptr{Cdouble},
                 Csize_t),
                a, size(a, 1), size(a, 2), PRECOND_COL_MAJOR, d, length(d), scaled,
                length(scaled)))
    return d, scaled
end

"""The cheap 1-norm condition estimate (LU, or Cholesky with `spd = true`)."""
function cond_estimate(A::AbstractMatrix{<:Real}; spd::Bool = false)
    a = Matrix{Float64}(A)
    out = Ref{CondEstimate}()
    check(ccall((:precond_cond_estimate, libprecond()), Cint,
                (Ptr{Cdouble}, Csize_t, Cint, Cint, Ref{CondEstimate}),
                a, size(a, 1), PRECOND_COL_MAJOR,
                spd ? PRECOND_ESTIMATE_SPD : PRECOND_ESTIMATE_LU, out))
    return out[]
end

"""κ of the extended data matrix raw / centred / standardized / min-max / Van der Sluis
(Theorem 6); `X` has one row per sample."""
function dataset_kappa(X::AbstractMatrix{<:Real})
    x = Matrix{Float64}(X)
    out = Ref{DatasetKappa}()
    check(ccall((:precond_dataset_kappa, libprecond()), Cint,
                (Ptr{Cdouble}, Csize_t, Csize_t, Cint, Ref{DatasetKappa}),
                x, size(x, 1), size(x, 2), PRECOND_COL_MAJOR, out))
    return out[]
end

# ---------------------------------------------------------------- optimizers

"""torch's defaults for an optimizer kind (`PRECOND_ADAM`, ...)."""
function default_config(kind::Integer)
    out = Ref{OptimizerConfig}()
    check(ccall((:precond_optimizer_config_init, libprecond()), Cint,
                (Cint, Ref{OptimizerConfig}), kind, out))
    return out[]
end

"""
    Optimizer(config_json::AbstractString, n_params)
    Optimizer(config::OptimizerConfig, n_params)

An optimizer over a flat vector of `n_params` parameters (freed by its finalizer or `close`).
Not to be used by two tasks at the same time.
"""
mutable struct Optimizer
    ptr::Ptr{Cvoid}
    n_params::Int

    function Optimizer(config_json::AbstractString, n_params::Integer)
        out = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:precond_optimizer_new_json, libprecond()), Cint,
                    (Cstring, Csize_t, Ref{Ptr{Cvoid}}), config_json, n_params, out))
        return finalizer(close, new(out[], n_params))
    end

    function Optimizer(config::OptimizerConfig, n_params::Integer)
        out = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:precond_optimizer_new, libprecond()), Cint,
                    (Ref{OptimizerConfig}, Csize_t, Ref{Ptr{Cvoid}}), config, n_params, out))
        return finalizer(close, new(out[], n_params))
    end

    # ZeRO-1: rank `rank` (0-based, as MPI's) of `world` over the range `shard_range(...)`
    function Optimizer(config_json::AbstractString, n_params::Integer, world::Integer,
                       rank::Integer)
        r = shard_range(config_json, n_params, world, rank)
        out = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:precond_optimizer_new_shard, libprecond()), Cint,
                    (Cstring, Csize_t, Csize_t, Csize_t, Ref{Ptr{Cvoid}}),
                    config_json, n_params, world, rank, out))
        return finalizer(close, new(out[], length(r)))
    end
end

"""
    shard_range(config_json, n_params, world, rank) -> UnitRange

The 1-based range of the flat parameter vector that rank `rank` (0-based, as MPI's) of `world`
steps under ZeRO-1 (`precond_shard_range`): contiguous ranges in rank order covering
`1:n_params`, never splitting a matrix group; possibly empty. `Optimizer(config_json, n_params,
world, rank)` is that rank's optimizer over `params[shard_range(...)]`: its steps are bitwise the
unsharded optimizer's on those coordinates and its saved state loads only into the same shard.
"""
function shard_range(config_json::AbstractString, n_params::Integer, world::Integer,
                     rank::Integer)
    a = Ref{Csize_t}(0)
    b = Ref{Csize_t}(0)
    check(ccall((:precond_shard_range, libprecond()), Cint,
                (Cstring, Csize_t, Csize_t, Csize_t, Ref{Csize_t}, Ref{Csize_t}),
                config_json, n_params, world, rank, a, b))
    return Int(a[])+1:Int(b[])
end

"""
    state_assemble(config_json, n_params, states) -> Vector{UInt8}

The unsharded state from the saved states of every shard (`save_state` of rank 0, 1, ... in
order; `precond_state_assemble`): bitwise what the unsharded optimizer would have saved.
"""
function state_assemble(config_json::AbstractString, n_params::Integer,
                        states::Vector{Vector{UInt8}})
    lens = Csize_t[length(s) for s in states]
    need = Ref{Csize_t}(0)
    written = Ref{Csize_t}(0)
    GC.@preserve states begin
        ptrs = Ptr{UInt8}[pointer(s) for s in states]
        check(ccall((:precond_state_assemble, libprecond()), Cint,
                    (Cstring, Csize_t, Csize_t, Ptr{Ptr{UInt8}}, Ptr{Csize_t}, Ptr{UInt8},
                     Csize_t, Ref{Csize_t}),
                    config_json, n_params, length(states), ptrs, lens, C_NULL, 0, need))
        out = Vector{UInt8}(undef, need[])
        check(ccall((:precond_state_assemble, libprecond()), Cint,
                    (Cstring, Csize_t, Csize_t, Ptr{Ptr{UInt8}}, Ptr{Csize_t}, Ptr{UInt8},
                     Csize_t, Ref{Csize_t}),
                    config_json, n_params, length(states), ptrs, lens, out, length(out),
                    written))
    end
    return resize!(out, written[])
end

"""
    state_split(config_json, n_params, world, rank, state) -> Vector{UInt8}

Rank `rank`'s (0-based) state of `world` from an unsharded state (`precond_state_split`); it loads
into `Optimizer(config_json, n_params, world, rank)`. Any world size: this reshards a checkpoint.
"""
function state_split(config_json::AbstractString, n_params::Integer, world::Integer,
                     rank::Integer, state::Vector{UInt8})
    need = Ref{Csize_t}(0)
    written = Ref{Csize_t}(0)
    check(ccall((:precond_state_split, libprecond()), Cint,
                (Cstring, Csize_t, Csize_t, Csize_t, Ptr{UInt8}, Csize_t, Ptr{UInt8}, Csize_t,
                 Ref{Csize_t}),
                config_json, n_params, world, rank, state, length(state), C_NULL, 0, need))
    out = Vector{UInt8}(undef, need[])
    check(ccall((:precond_state_split, libprecond()), Cint,
                (Cstring, Csize_t, Csize_t, Csize_t, Ptr{UInt8}, Csize_t, Ptr{UInt8}, Csize_t,
                 Ref{Csize_t}),
                config_json, n_params, world, rank, state, length(state), out, length(out),
                written))
    return resize!(out, written[])
end

"""Frees the handle now (idempotent; the finalizer calls it too)."""
function Base.close(o::Optimizer)
    if o.ptr != C_NULL
        ccall((:precond_optimizer_free, libprecond()), Cvoid, (Ptr{Cvoid},), o.ptr)
        o.ptr = C_NULL
    end
    return nothing
end

function handle(o::Optimizer)
    o.ptr == C_NULL && throw(PrecondError(PRECOND_NULL_POINTER, "PRECOND_NULL_POINTER",
                                          "the optimizer was closed"))
    return o.ptr
end

function check(o::Optimizer, st::Cint)
    st == PRECOND_OK && return nothing
    msg = unsafe_string(ccall((:precond_optimizer_last_error, libprecond()), Cstring,
                              (Ptr{Cvoid},), o.ptr))
    throw(PrecondError(st, status_name(st), msg))
end

"""One optimizer step: `params` updated in place from `grads`."""
function step!(o::Optimizer, params::Vector{Float64}, grads::Vector{Float64})
    length(params) == length(grads) ||
        throw(DimensionMismatch("params has $(length(params)), grads $(length(grads))"))
    check(o, ccall((:precond_optimizer_step_f64, libprecond()), Cint,
                   (Ptr{Cvoid}, Ptr{Cdouble}, Ptr{Cdouble}, Csize_t),
                   handle(o), params, grads, length(params)))
    return params
end

function step!(o::Optimizer, params::Vector{Float32}, grads::Vector{Float32})
    length(params) == length(grads) ||
        throw(DimensionMismatch("params has $(length(params)), grads $(length(grads))"))
    check(o, ccall((:precond_optimizer_step_f32, libprecond()), Cint,
                   (Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Csize_t),
                   handle(o), params, grads, length(params)))
    return params
end

"""Base learning rate."""
function lr(o::Optimizer)
    v = Ref{Cdouble}(0.0)
    check(o, ccall((:precond_optimizer_get_lr, libprecond()), Cint,
                   (Ptr{Cvoid}, Ref{Cdouble}), handle(o), v))
    return v[]
end

"""Learning rate of the next step (through the schedule)."""
function current_lr(o::Optimizer)
    v = Ref{Cdouble}(0.0)
    check(o, ccall((:precond_optimizer_current_lr, libprecond()), Cint,
                   (Ptr{Cvoid}, Ref{Cdouble}), handle(o), v))
    return v[]
end

"""Sets the base learning rate."""
function set_lr!(o::Optimizer, value::Real)
    check(o, ccall((:precond_optimizer_set_lr, libprecond()), Cint,
                   (Ptr{Cvoid}, Cdouble), handle(o), value))
    return o
end

"""Number of parameters, as the library reports it."""
function n_params(o::Optimizer)
    v = Ref{Csize_t}(0)
    check(o, ccall((:precond_optimizer_n_params, libprecond()), Cint,
                   (Ptr{Cvoid}, Ref{Csize_t}), handle(o), v))
    return Int(v[])
end

"""Steps taken."""
function step_count(o::Optimizer)
    v = Ref{UInt64}(0)
    check(o, ccall((:precond_optimizer_step_count, libprecond()), Cint,
                   (Ptr{Cvoid}, Ref{UInt64}), handle(o), v))
    return Int(v[])
end

"""`nothing`, or the first index (1-based) of a NaN/Inf entry in the gradient of the most recent
successful step (only the "skip" and "propagate" policies let such a step succeed)."""
function last_nonfinite(o::Optimizer)
    found = Ref{Int32}(0)
    index = Ref{Csize_t}(0)
    check(o, ccall((:precond_optimizer_last_nonfinite, libprecond()), Cint,
                   (Ptr{Cvoid}, Ref{Int32}, Ref{Csize_t}), handle(o), found, index))
    return found[] == 0 ? nothing : Int(index[]) + 1
end

"""The current diagonal preconditioner P_k (learning rate kept outside)."""
function preconditioner(o::Optimizer)
    p = Vector{Float64}(undef, o.n_params)
    check(o, ccall((:precond_optimizer_preconditioner, libprecond()), Cint,
                   (Ptr{Cvoid}, Ptr{Cdouble}, Csize_t), handle(o), p, length(p)))
    return p
end

# ---------------------------------------------------------------- matrix preconditioners

"""The C `group` argument: `nothing` is the top level (-1), `g` the 1-based group `g`."""
function c_group(group::Union{Nothing,Integer})
    group === nothing && return Int64(-1)
    group >= 1 || throw(ArgumentError("group is $group; groups are numbered from 1"))
    return Int64(group - 1)
end

"""The `precond_matrix_part_t` of a part name, and the dimensions of that matrix."""
const MATRIX_PARTS = Dict(
    :left => PRECOND_MATRIX_LEFT, :right => PRECOND_MATRIX_RIGHT,
    :left_factor => PRECOND_MATRIX_LEFT_FACTOR, :right_factor => PRECOND_MATRIX_RIGHT_FACTOR,
    :left_basis => PRECOND_MATRIX_LEFT_BASIS, :right_basis => PRECOND_MATRIX_RIGHT_BASIS,
    :diagonal => PRECOND_MATRIX_DIAGONAL)

"""
    matrix_blocks(opt, group = nothing)

Number of blocks of the matrix preconditioner (Muon, Shampoo, SOAP; THEORY.md section 7) of
parameter group `group` (1-based index into the configuration's `"groups"`, `nothing` for the
top level with its own `"shape"`).
"""
function matrix_blocks(o::Optimizer, group::Union{Nothing,Integer} = nothing)
    n = Ref{Csize_t}(0)
    check(o, ccall((:precond_optimizer_matrix_blocks, libprecond()), Cint,
                   (Ptr{Cvoid}, Int64, Ref{Csize_t}), handle(o), c_group(group), n))
    return Int(n[])
end

"""
    matrix_block_range(opt, group = nothing, block = 1) -> (rows, cols)

The 1-based row and column ranges of block `block` in the parameter matrix of `group`.
"""
function matrix_block_range(o::Optimizer, group::Union{Nothing,Integer} = nothing,
                            block::Integer = 1)
    block >= 1 || throw(ArgumentError("block is $block; blocks are numbered from 1"))
    b = Ref{MatrixBlock}(MatrixBlock(0, 0, 0, 0, 0, 0))
    check(o, ccall((:precond_optimizer_matrix_block_range, libprecond()), Cint,
                   (Ptr{Cvoid}, Int64, Csize_t, Ref{MatrixBlock}),
                   handle(o), c_group(group), block - 1, b))
    r = b[]
    return (rows = Int(r.row0)+1:Int(r.row1), cols = Int(r.col0)+1:Int(r.col1))
end

"""
    matrix_preconditioner(opt, which, group = nothing, block = 1) -> Matrix or nothing

Matrix `which` of block `block` of the matrix preconditioner of `group`: `:left` (`Lm`, r × r),
`:right` (`Rm`, c × c), `:left_factor`, `:right_factor`, `:left_basis`, `:right_basis` (r × r or
c × c) or `:diagonal` (r × c), for a block of r rows and c columns; the preconditioned direction is
`Lm * G * Rm`. `nothing` when the block has no such matrix (Muon: `:left` for a wide or square
matrix, `:right` for a tall one, nothing else).
"""
function matrix_preconditioner(o::Optimizer, which::Symbol,
                               group::Union{Nothing,Integer} = nothing, block::Integer = 1)
    part = get(MATRIX_PARTS, which) do
        throw(ArgumentError("which is :$which; expected one of $(sort!(collect(keys(MATRIX_PARTS))))"))
    end
    rng = matrix_block_range(o, group, block)
    r, c = length(rng.rows), length(rng.cols)
    nr, nc = which in (:left, :left_factor, :left_basis) ? (r, r) :
             which == :diagonal ? (r, c) : (c, c)
    need = Ref{Csize_t}(0)
    check(o, ccall((:precond_optimizer_matrix_preconditioner, libprecond()), Cint,
                   (Ptr{Cvoid}, Int64, Cint, Csize_t, Ptr{Cdouble}, Csize_t, Ref{Csize_t}),
                   handle(o), c_group(group), part, block - 1, C_NULL, 0, need))
    need[] == 0 && return nothing
    need[] == nr * nc || error("$which: the library reports $(need[]) entries, expected $nr × $nc")
    v = Vector{Float64}(undef, need[])
    written = Ref{Csize_t}(0)
    check(o, ccall((:precond_optimizer_matrix_preconditioner, libprecond()), Cint,
                   (Ptr{Cvoid}, Int64, Cint, Csize_t, Ptr{Cdouble}, Csize_t, Ref{Csize_t}),
                   handle(o), c_group(group), part, block - 1, v, length(v), written))
    # row-major nr × nc from C: the column-major nc × nr matrix, transposed
    return permutedims(reshape(v, nc, nr))
end

# ---------------------------------------------------------------- BNP on a dense layer

"""
    bnp_observe!(opt, group, mean, var)

Folds one batch's per-feature mean and biased (population) variance of the input of the dense
layer held by parameter group `group` (1-based index into `"groups"`; the group has `"bnp"` and
`"shape": [units, d]`, its range the weights row-major then the bias) into the group's running
statistics (Batch Normalization Preconditioning, docs/THEORY.md section 6). Call it after the
forward pass, before `step!`.
"""
function bnp_observe!(o::Optimizer, group::Integer, mean::Vector{Float64},
                      var::Vector{Float64})
    group >= 1 || throw(ArgumentError("group is $group; groups are numbered from 1"))
    length(mean) == length(var) ||
        throw(DimensionMismatch("mean has $(length(mean)), var $(length(var))"))
    check(o, ccall((:precond_optimizer_bnp_observe, libprecond()), Cint,
                   (Ptr{Cvoid}, Csize_t, Ptr{Cdouble}, Ptr{Cdouble}, Csize_t),
                   handle(o), group - 1, mean, var, length(mean)))
    return o
end

"""
    bnp_stats(opt, group, d) -> (mean = ..., var = ...)

The running mean and population variance (`d` features each) of the BNP group `group`
(1-based).
"""
function bnp_stats(o::Optimizer, group::Integer, d::Integer)
    group >= 1 || throw(ArgumentError("group is $group; groups are numbered from 1"))
    mean = Vector{Float64}(undef, d)
    var = Vector{Float64}(undef, d)
    check(o, ccall((:precond_optimizer_bnp_stats, libprecond()), Cint,
                   (Ptr{Cvoid}, Csize_t, Ptr{Cdouble}, Ptr{Cdouble}, Csize_t),
                   handle(o), group - 1, mean, var, d))
    return (mean = mean, var = var)
end

"""The optimizer state as bytes."""
function save_state(o::Optimizer)
    size = Ref{Csize_t}(0)
    check(o, ccall((:precond_optimizer_state_size, libprecond()), Cint,
                   (Ptr{Cvoid}, Ref{Csize_t}), handle(o), size))
    buf = Vector{UInt8}(undef, size[])
    written = Ref{Csize_t}(0)
    check(o, ccall((:precond_optimizer_save_state, libprecond()), Cint,
                   (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Ref{Csize_t}),
                   handle(o), buf, length(buf), written))
    return resize!(buf, written[])
end

"""Loads a saved state; on error the optimizer is unchanged."""
function load_state!(o::Optimizer, state::Vector{UInt8})
    check(o, ccall((:precond_optimizer_load_state, libprecond()), Cint,
                   (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), handle(o), state, length(state)))
    return o
end

"""Forgets moments, accumulators and the step count."""
function reset!(o::Optimizer)
    check(o, ccall((:precond_optimizer_reset, libprecond()), Cint, (Ptr{Cvoid},), handle(o)))
    return o
end

# ---------------------------------------------------------------- gradient-norm regularization

"""The Julia gradient of one `grad_norm_regularize!` call and the exception it threw, if any."""
mutable struct GradientCall
    grad!::Any
    error::Any
end

# The `precond_gradient_fn` handed to the library: nothing unwinds through C; an exception is
# kept in the `GradientCall` and reported by a non-zero return value.
function gradient_trampoline(user_data::Ptr{Cvoid}, x::Ptr{Cdouble}, g::Ptr{Cdouble},
                             n::Csize_t)::Cint
    call = unsafe_pointer_to_objref(user_data)::GradientCall
    try
        call.grad!(unsafe_wrap(Array, g, Int(n)), unsafe_wrap(Array, x, Int(n)))
        return Cint(0)
    catch e
        call.error = e
        return Cint(1)
    end
end

"""
    grad_norm_regularize!(g, opt, rho, x, grad!; mode = :intrinsic) -> R

Gradient-norm regularization (THEORY.md section 5, `precond_grad_norm_regularize`): adds
`∇R = 2ρ H P g` to the gradient `g = ∇f(x)` in place and returns `R`: `ρ gᵀ P g` for
`mode = :intrinsic` (`P` the current diagonal preconditioner of `opt`, the identity when `opt`
is `nothing` or has none yet) or `ρ ‖g‖²` for `mode = :coupled`. `grad!(out, y)` must write
`∇f(y)` into `out`; the library calls it at most twice (a central difference gives `H v`), on
the calling task, during the call; `y` and `out` are views of library memory valid only then.
If `grad!` throws, `g` is unchanged and a `PrecondError` is thrown whose message names the
callback failure and includes the exception.
"""
function grad_norm_regularize!(g::Vector{Float64}, opt::Union{Optimizer,Nothing}, rho::Real,
                               x::Vector{Float64}, grad!; mode::Symbol = :intrinsic)
    length(g) == length(x) ||
        throw(DimensionMismatch("g has $(length(g)), x $(length(x))"))
    m = mode === :intrinsic ? PRECOND_GRAD_NORM_INTRINSIC :
        mode === :coupled ? PRECOND_GRAD_NORM_COUPLED :
        throw(ArgumentError("mode must be :intrinsic or :coupled, got :$mode"))
    cb = @cfunction(gradient_trampoline, Cint, (Ptr{Cvoid}, Ptr{Cdouble}, Ptr{Cdouble}, Csize_t))
    call = GradientCall(grad!, nothing)
    value = Ref{Cdouble}(0.0)
    h = opt === nothing ? C_NULL : handle(opt)
    st = GC.@preserve call ccall((:precond_grad_norm_regularize, libprecond()), Cint,
                                 (Ptr{Cvoid}, Cdouble, Cint, Ptr{Cdouble}, Ptr{Cdouble}, Csize_t,
                                  Ptr{Cvoid}, Ptr{Cvoid}, Ref{Cdouble}),
                                 h, rho, m, x, g, length(x), cb, pointer_from_objref(call), value)
    if st != PRECOND_OK && call.error !== nothing
        msg = opt === nothing ?
              unsafe_string(ccall((:precond_last_error, libprecond()), Cstring, ())) :
              unsafe_string(ccall((:precond_optimizer_last_error, libprecond()), Cstring,
                                  (Ptr{Cvoid},), h))
        throw(PrecondError(st, status_name(st),
                           msg * "; the Julia gradient threw: " * sprint(showerror, call.error)))
    end
    opt === nothing ? check(st) : check(opt, st)
    return value[]
end

end # module
