# Tests of the Julia bindings against the library (what examples/example.jl shows, with checks):
#
#   julia --project=ffi-examples/julia/Precond -e 'using Pkg; Pkg.test()'
#
# The library is found as `Precond.libprecond()` documents (PRECOND_LIB, else the in-tree link of
# `make -C ffi-examples`, else `libprecond` on the search path). The expected numbers are those
# the Rust tests check for the C example ffi-examples/c/quadratic.c.

using Test
using LinearAlgebra: Symmetric, eigvals, opnorm, norm
using Precond

const N = 6
const DATA = normpath(joinpath(@__DIR__, "..", "..", "..", "..", "crates", "precond-nn", "data",
                               "breast_cancer.csv"))

"""`H = D K D`, `D = diag(3^i)`, `K_ij = 0.5^|i-j|`: the quadratic of ffi-examples/c/quadratic.c."""
function quadratic_h()
    d = [3.0^i for i in 0:N-1]
    return [d[i] * d[j] * 0.5^abs(i - j) for i in 1:N, j in 1:N]
end

"""The data matrix (one row per sample) of a CSV with a header line and the label last."""
function read_features(path)
    lines = filter(!isempty, readlines(path))
    rows = [parse.(Float64, split(l, ',')) for l in lines[2:end]]
    return reduce(vcat, (permutedims(r[1:end-1]) for r in rows))
end

@testset "Precond" begin
    H = quadratic_h()
    b = H * ones(N)

    @testset "version" begin
        v = Precond.version()
        @test v == string(pkgversion(Precond))
        major, minor, patch = parse.(Int, split(v, '.'))
        @test Precond.version_number() == major * 10000 + minor * 100 + patch
        @test Precond.status_name(Precond.PRECOND_NON_FINITE) == "PRECOND_NON_FINITE"
    end

    @testset "diagnostics of the quadratic" begin
        ev, spec = sym_eigenvalues(H)
        @test issorted(ev)
        @test ev ≈ eigvals(Symmetric(H)) rtol = 1e-10
        @test spec.kappa ≈ 83_714.568_902_505_65 rtol = 1e-9
        @test spec.lambda_min ≈ ev[1] rtol = 1e-12
        @test spec.lambda_max ≈ ev[end] rtol = 1e-12
        @test spec.positive_definite == 1
        # for SPD H the 2-norm condition number is λ_max/λ_min
        c = cond2(H)
        @test c.kappa ≈ spec.kappa rtol = 1e-8
        @test c.rank_deficient == 0
        # the Hager–Higham estimate is a lower bound of κ₁ within a factor 3
        k1 = opnorm(H, 1) * opnorm(inv(H), 1)
        for spd in (false, true)
            est = cond_estimate(H; spd = spd).kappa1_estimate
            @test est <= k1 * (1 + 1e-12)
            @test est >= k1 / 3
        end
        # Jacobi: P = diag(H)⁻¹ undoes the row scaling D
        jac = preconditioned_cond_diag(H, 1 ./ [H[i, i] for i in 1:N])
        @test jac.spectral_kappa < spec.kappa / 1000
        @test jac.positive_definite == 1
        d, scaled = row_equilibrate(H)
        @test all(i -> norm(scaled[i, :]) ≈ 1, 1:N)
        @test scaled ≈ d .* H
        dc, scaledc = col_equilibrate(H)
        @test all(j -> norm(scaledc[:, j]) ≈ 1, 1:N)
        @test scaledc ≈ H .* permutedims(dc)
    end

    @testset "Adam on the quadratic" begin
        opt = Optimizer("{\"optimizer\": \"adam\", \"lr\": 0.05}", N)
        @test Precond.n_params(opt) == N
        @test lr(opt) == 0.05
        @test current_lr(opt) == 0.05
        x = zeros(N)
        for _ in 1:3000
            step!(opt, x, H * x - b)
        end
        @test step_count(opt) == 3000
        @test last_nonfinite(opt) === nothing
        @test sqrt(sum(abs2, x .- 1.0)) < 1e-6
        p = preconditioner(opt)
        @test length(p) == N && all(>(0), p)
        # THEORY.md §4: Adam's diagonal P undoes the row scaling D
        _, spec = sym_eigenvalues(H)
        @test preconditioned_cond_diag(H, p).spectral_kappa < spec.kappa / 1000

        # failures are exceptions carrying the library's message; nothing changes
        before = copy(x)
        err = try
            step!(opt, x, fill(NaN, N))
            nothing
        catch e
            e
        end
        @test err isa PrecondError
        @test err.name == "PRECOND_NON_FINITE"
        @test occursin("index 0", err.message)
        @test x == before
        @test step_count(opt) == 3000
        @test_throws DimensionMismatch step!(opt, x, ones(N + 1))

        set_lr!(opt, 0.01)
        @test lr(opt) == 0.01
        reset!(opt)
        @test step_count(opt) == 0
        close(opt)
        close(opt)  # idempotent
        @test_throws PrecondError step!(opt, x, ones(N))
    end

    @testset "typed configuration, Float32, saved state" begin
        cfg = default_config(Precond.PRECOND_ADAMW)
        @test cfg.kind == Precond.PRECOND_ADAMW
        @test cfg.lr == 1e-3 && cfg.beta1 == 0.9 && cfg.beta2 == 0.999
        @test cfg.weight_decay == 0.01
        @test_throws PrecondError default_config(Cint(99))
        opt = Optimizer(cfg, N)
        x32 = zeros(Float32, N)
        step!(opt, x32, ones(Float32, N))
        # Adam's first step moves every parameter by lr against the gradient's sign
        @test all(v -> isapprox(v, -1f-3; rtol = 1e-3), x32)
        # the state is Float32 now: a Float64 step is refused (reset! switches)
        err = try
            step!(opt, zeros(N), ones(N))
            nothing
        catch e
            e
        end
        @test err isa PrecondError && occursin("dtype", err.message)
        state = save_state(opt)
        @test !isempty(state)
        step!(opt, zeros(Float32, N), ones(Float32, N))
        @test step_count(opt) == 2
        load_state!(opt, state)
        @test step_count(opt) == 1
        @test_throws PrecondError load_state!(opt, state[1:end-5])
        @test step_count(opt) == 1
        close(opt)
    end

    @testset "non-finite policies" begin
        opt = Optimizer("{\"optimizer\": \"adam\", \"lr\": 0.1, \"nonfinite\": \"propagate\"}", 2)
        x = zeros(2)
        step!(opt, x, [1.0, NaN])
        @test last_nonfinite(opt) == 2
        @test isnan(x[2])
        @test step_count(opt) == 1
        close(opt)
        opt = Optimizer("{\"optimizer\": \"adam\", \"lr\": 0.1, \"nonfinite\": \"skip\"}", 2)
        x = zeros(2)
        step!(opt, x, [Inf, 1.0])
        @test x == zeros(2)
        @test step_count(opt) == 0
        @test last_nonfinite(opt) == 1
        close(opt)
    end

    @testset "invalid configurations" begin
        err = try
            Optimizer("{\"optimizer\": \"adamx\"}", N)
            nothing
        catch e
            e
        end
        @test err isa PrecondError
        @test err.name == "PRECOND_INVALID_ARGUMENT"
        @test occursin("adamx", err.message)
        @test_throws PrecondError Optimizer("{not json", N)
    end

    I3() = [1.0 0.0 0.0; 0.0 1.0 0.0; 0.0 0.0 1.0]

    @testset "matrix preconditioner (Muon)" begin
        # group 1: a tall 6 × 3 matrix stored row-major in x[1:18]; group 2: a wide 2 × 4 one
        # stored column-major in x[19:26]; AdamW on the rest. With the convergent Newton–Schulz
        # coefficients (1.5, -0.5, 0) Muon's implied multiplier is the exact inverse square root
        # of the momentum buffer's Gram matrix, B = (1 - μ) G after one step from zero.
        cfg = """{"optimizer": "adamw", "groups": [
            {"start": 0, "end": 18, "shape": [6, 3], "optimizer": "muon", "momentum": 0.9,
             "ns_coefficients": [1.5, -0.5, 0.0], "ns_steps": 11},
            {"start": 18, "end": 26, "shape": [2, 4], "order": "F", "optimizer": "muon",
             "momentum": 0.9, "ns_coefficients": [1.5, -0.5, 0.0], "ns_steps": 11}]}"""
        opt = Optimizer(cfg, 30)
        @test_throws PrecondError matrix_blocks(opt, 1)      # no step yet
        g = [sin(((i - 1) * 7 + 3) * 0.37) + 0.1 * ((i - 1) % 5) - 0.2 for i in 1:30]
        step!(opt, zeros(30), g)
        @test matrix_blocks(opt, 1) == 1
        @test matrix_block_range(opt, 1) == (rows = 1:6, cols = 1:3)
        @test matrix_preconditioner(opt, :left, 1) === nothing
        Rm = matrix_preconditioner(opt, :right, 1)
        B = 0.1 * permutedims(reshape(g[1:18], 3, 6))        # row-major 6 × 3
        @test size(Rm) == (3, 3)
        @test norm(Rm * (B' * B) * Rm - I3()) < 5e4 * eps()
        Lm = matrix_preconditioner(opt, :left, 2)
        W = 0.1 * reshape(g[19:26], 2, 4)                    # column-major 2 × 4
        @test norm(Lm * (W * W') * Lm - [1.0 0.0; 0.0 1.0]) < 5e4 * eps()
        @test matrix_preconditioner(opt, :right, 2) === nothing
        # the top level runs AdamW: no matrix preconditioner; a bad block or part is refused
        for (call, status) in ((() -> matrix_blocks(opt), "PRECOND_INVALID_ARGUMENT"),
                               (() -> matrix_block_range(opt, 1, 2), "PRECOND_DIMENSION_MISMATCH"))
            err = try
                call()
                nothing
            catch e
                e
            end
            @test err isa PrecondError && err.name == status
        end
        @test_throws ArgumentError matrix_preconditioner(opt, :middle, 1)
        @test_throws ArgumentError matrix_blocks(opt, 0)
        close(opt)
    end

    @testset "BNP on a dense layer" begin
        # SGD on a 2 × 3 layer (weights row-major then bias) in x[3:11]; statistics frozen
        # (momentum 1 takes each batch as is): the step is x - lr * P g with P from (μ, σ²)
        cfg = """{"optimizer": "sgd", "lr": 0.1, "groups": [{"start": 2, "end": 11,
                  "shape": [2, 3], "bnp": {"momentum": 1.0, "eps": 0.0}}]}"""
        opt = Optimizer(cfg, 12)
        s0 = bnp_stats(opt, 1, 3)
        @test s0.mean == zeros(3) && s0.var == ones(3)
        mu, s2 = [1.0, -2.0, 0.5], [4.0, 0.25, 1.0]
        bnp_observe!(opt, 1, mu, s2)
        s = bnp_stats(opt, 1, 3)
        @test s.mean == mu && s.var == s2
        g = [0.1 * i - 0.5 for i in 1:12]
        x = zeros(12)
        step!(opt, x, g)
        for i in 1:2
            gw, gb = g[2 + 3(i - 1) + 1:2 + 3i], g[8 + i]
            pw = (gw .- mu .* gb) ./ s2
            pb = gb - sum(mu .* pw)
            @test x[2 + 3(i - 1) + 1:2 + 3i] ≈ -0.1 .* pw rtol = 1e-14
            @test x[8 + i] ≈ -0.1 * pb rtol = 1e-14
        end
        @test x[1:2] ≈ -0.1 .* g[1:2] && x[12] ≈ -0.1 * g[12]
        for (call, status) in ((() -> bnp_observe!(opt, 1, [1.0], [1.0]), "PRECOND_DIMENSION_MISMATCH"),
                               (() -> bnp_observe!(opt, 1, mu, [-1.0, 1.0, 1.0]), "PRECOND_INVALID_ARGUMENT"),
                               (() -> bnp_stats(opt, 2, 3), "PRECOND_INVALID_ARGUMENT"))
            err = try
                call()
                nothing
            catch e
                e
            end
            @test err isa PrecondError && err.name == status
        end
        @test bnp_stats(opt, 1, 3).var == s2                  # unchanged by the failed calls
        close(opt)
    end

    @testset "ZeRO-1 shards" begin
        cfg = """{"optimizer": "adamw", "lr": 0.01,
                  "groups": [{"start": 2, "end": 38, "shape": [6, 6], "optimizer": "muon"}]}"""
        n, world = 40, 4
        ranges = [shard_range(cfg, n, world, r) for r in 0:world-1]
        @test vcat(collect.(ranges)...) == collect(1:n)       # contiguous, covering, in order
        @test isempty(ranges[2])                               # the matrix is never split
        full = Optimizer(cfg, n)
        shards = [Optimizer(cfg, n, world, r) for r in 0:world-1]
        xf = fill(0.5, n)
        xs = copy(xf)
        for k in 1:5
            g = [xf[i] - 0.1 * (i % 5) + ((7k + i) % 3) / 8 for i in 1:n]
            step!(full, xf, g)
            for (o, r) in zip(shards, ranges)
                xl = xs[r]
                step!(o, xl, g[r])
                xs[r] = xl
            end
        end
        @test reinterpret(UInt64, xf) == reinterpret(UInt64, xs)   # bitwise
        states = [save_state(o) for o in shards]
        whole = state_assemble(cfg, n, states)
        @test whole == save_state(full)
        solo = Optimizer(cfg, n, 1, 0)
        load_state!(solo, state_split(cfg, n, 1, 0, whole))
        @test step_count(solo) == 5
        err = try
            load_state!(shards[1], states[2])
            nothing
        catch e
            e
        end
        @test err isa PrecondError && err.name == "PRECOND_INVALID_STATE"
        foreach(close, shards)
        close(solo)
        close(full)
    end

    @testset "data conditioning (Theorem 6)" begin
        @test isfile(DATA)
        X = read_features(DATA)
        @test size(X) == (569, 30)
        k = dataset_kappa(X)
        @test k.sqrt_d_plus_1 ≈ sqrt(31)
        @test k.kappa_standardized * 1000 < k.kappa_raw
        @test k.kappa_standardized <= k.sqrt_d_plus_1 * k.kappa_van_der_sluis * (1 + 1e-12)
    end
    @testset "gradient-norm regularization (THEORY.md section 5)" begin
        # f = ½xᵀHx − bᵀx: ∇R = 2ρ H P ∇f exactly, up to the central difference's rounding
        grad!(out, y) = (out .= H * y .- b; nothing)
        opt = Optimizer("""{"optimizer": "adam", "lr": 0.01}""", N)
        x = zeros(N)
        for _ in 1:3
            step!(opt, x, H * x .- b)
        end
        p = preconditioner(opt)
        g0 = H * x .- b
        rho = 1e-3
        tol = 1e3 * eps()^(2 / 3)
        g = copy(g0)
        r = grad_norm_regularize!(g, opt, rho, x, grad!)
        want = 2rho * H * (p .* g0)
        @test norm(g .- g0 .- want) <= tol * norm(want)
        @test r ≈ rho * sum(g0 .* p .* g0) rtol = 1e-12
        g = copy(g0)
        r = grad_norm_regularize!(g, opt, rho, x, grad!; mode = :coupled)
        @test norm(g .- g0 .- 2rho * H * g0) <= tol * norm(2rho * H * g0)
        @test r ≈ rho * sum(abs2, g0) rtol = 1e-12
        g = copy(g0)
        @test grad_norm_regularize!(g, nothing, rho, x, grad!) ≈ r rtol = 1e-12
        # a throwing gradient: reported, g unchanged
        g = copy(g0)
        err = try
            grad_norm_regularize!(g, opt, rho, x, (out, y) -> error("no gradient here"))
            nothing
        catch e
            e
        end
        @test err isa PrecondError && err.name == "PRECOND_NUMERICAL_FAILURE"
        @test occursin("no gradient here", err.message)
        @test g == g0
        # n must be the optimizer's n_params
        small = Optimizer("""{"optimizer": "adam"}""", N - 1)
        err = try
            grad_norm_regularize!(g, small, rho, x, grad!)
            nothing
        catch e
            e
        end
        @test err isa PrecondError && err.name == "PRECOND_DIMENSION_MISMATCH"
        @test g == g0
        close(small)
        close(opt)
    end
end
