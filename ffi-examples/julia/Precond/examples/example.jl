# Example of the Julia bindings: the ill-conditioned quadratic of ffi-examples/c/quadratic.c
# minimized with Adam, kappa(H) against kappa(P^{1/2} H P^{1/2}), an error raised as a Julia
# exception, and the conditioning of the breast_cancer data matrix (Theorem 6).
#
#   julia --project=ffi-examples/julia/Precond ffi-examples/julia/Precond/examples/example.jl \
#       crates/precond-nn/data/breast_cancer.csv
# (or `make -C ffi-examples julia`; set PRECOND_LIB=/path/to/libprecond.so to choose the library).
# Prints "key value" lines.

push!(LOAD_PATH, dirname(@__DIR__))  # the package Precond, one level up
using Precond

const N = 6
dvec = [3.0^i for i in 0:N-1]
H = [dvec[i] * dvec[j] * 0.5^abs(i - j) for i in 1:N, j in 1:N]
b = H * ones(N)

println("version ", Precond.version())
ev, spec = sym_eigenvalues(H)
println("kappa_H ", spec.kappa)
println("cond2_H ", cond2(H).kappa)

opt = Optimizer("{\"optimizer\": \"adam\", \"lr\": 0.05}", N)
x = zeros(N)
for k in 1:3000
    step!(opt, x, H * x - b)
end
pc = preconditioned_cond_diag(H, preconditioner(opt))
println("adam_steps ", step_count(opt))
println("adam_dist_to_xstar ", sqrt(sum(abs2, x .- 1.0)))
println("adam_kappa_precond ", pc.spectral_kappa)

# the typed configuration and a saved state
cfg = default_config(Precond.PRECOND_ADAMW)
opt2 = Optimizer(cfg, N)
step!(opt2, zeros(N), ones(N))
state = save_state(opt2)
load_state!(opt2, state)
println("adamw_state_bytes ", length(state))
close(opt2)

# failures are exceptions carrying the library's message
try
    step!(opt, x, fill(NaN, N))
catch e
    e isa PrecondError || rethrow()
    println("error ", e.name, " ", e.message)
end
try
    Optimizer("{\"optimizer\": \"adamx\"}", N)
catch e
    e isa PrecondError || rethrow()
    println("error ", e.name, " ", e.message)
end

if length(ARGS) >= 1
    lines = filter(!isempty, readlines(ARGS[1]))
    rows = [parse.(Float64, split(l, ',')) for l in lines[2:end]]
    X = reduce(vcat, (permutedims(r[1:end-1]) for r in rows))
    k = dataset_kappa(X)
    println("data_kappa_raw ", k.kappa_raw)
    println("data_kappa_standardized ", k.kappa_standardized)
end
close(opt)
