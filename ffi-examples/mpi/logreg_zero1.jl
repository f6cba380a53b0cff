# Data-parallel logistic regression with ZeRO stage 1 through libprecond and MPI.jl: the Julia
# twin of logreg_zero1.c (same data, configuration, order of operations and output lines).
#
# The breast_cancer data (569 samples, 30 features, standardized) is split over the P ranks by
# samples; the 31 parameters theta = [b; w] are split by the library's shard plan
# (`Precond.shard_range`), and each rank keeps only its shard's optimizer state
# (`Precond.Optimizer(config, n, world, rank)`). One full-batch step:
#   1. each rank sums the cross-entropy gradient over its samples;
#   2. Alltoallv sends shard r's coordinates of every partial sum to rank r, which adds the P
#      contributions in rank order and divides by N;
#   3. each rank steps its shard;
#   4. Allgatherv assembles theta on every rank.
# At the end the shard states are gathered on rank 0 and assembled (`Precond.state_assemble`).
#
# Setup (once): julia --project=ffi-examples/mpi -e 'using Pkg; Pkg.develop(path="ffi-examples/julia/Precond"); Pkg.instantiate()'
# Run:          mpiexec -n 4 julia --project=ffi-examples/mpi ffi-examples/mpi/logreg_zero1.jl \
#                   crates/precond-nn/data/breast_cancer.csv 200
# (MPI.jl uses its bundled MPICH unless MPIPreferences selects the system Open MPI; use the
# matching mpiexec, e.g. `mpiexecjl`.) Output on rank 0: "key value" lines as logreg_zero1.c.
using MPI
using Precond

const CONFIG = """{"optimizer": "adamw", "lr": 0.05, "weight_decay": 0.01}"""

function read_csv(path)
    lines = filter(!isempty, readlines(path))
    rows = [parse.(Float64, split(l, ',')) for l in lines[2:end]]
    X = reduce(vcat, (permutedims(r[1:end-1]) for r in rows))   # n x d, one row per sample
    y = [r[end] for r in rows]
    return X, y
end

function standardize!(X)
    n = size(X, 1)
    for j in axes(X, 2)
        mean = 0.0
        for i in 1:n
            mean += X[i, j]
        end
        mean /= n
        var = 0.0
        for i in 1:n
            var += (X[i, j] - mean)^2
        end
        sd = sqrt(var / n)
        for i in 1:n
            X[i, j] = (X[i, j] - mean) / sd
        end
    end
    return X
end

# sums over the samples `rows`: cross-entropy (returned) and its gradient (into g)
function partial_loss_grad!(g, X, y, rows, theta)
    fill!(g, 0.0)
    loss = 0.0
    d = size(X, 2)
    for i in rows
        z = theta[1]
        for j in 1:d
            z += theta[j+1] * X[i, j]
        end
        loss += (z > 0 ? z + log1p(exp(-z)) : log1p(exp(z))) - y[i] * z
        p = z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z))
        r = p - y[i]
        g[1] += r
        for j in 1:d
            g[j+1] += r * X[i, j]
        end
    end
    return loss
end

function main(args)
    MPI.Init()
    comm = MPI.COMM_WORLD
    rank, world = MPI.Comm_rank(comm), MPI.Comm_size(comm)
    path = args[1]
    steps = length(args) > 1 ? parse(Int, args[2]) : 200
    X, y = read_csv(path)
    standardize!(X)
    n, d = size(X)
    np = d + 1
    rows = (div(n * rank, world)+1):div(n * (rank + 1), world)
    ranges = [shard_range(CONFIG, np, world, r) for r in 0:world-1]   # 1-based ranges
    counts = Cint[length(r) for r in ranges]
    mine = ranges[rank+1]
    opt = Optimizer(CONFIG, np, world, rank)

    theta = zeros(np)
    g = zeros(np)
    recv = zeros(length(mine) * world)
    gshard = zeros(length(mine))
    loss = 0.0
    for k in 0:steps
        part = partial_loss_grad!(g, X, y, rows, theta)
        parts = MPI.Allgather(part, comm)
        loss = 0.0
        for r in 1:world
            loss += parts[r]
        end
        loss /= n
        k == steps && break
        # g is laid out by shards already: rank r's piece is g[ranges[r+1]]
        MPI.Alltoallv!(MPI.VBuffer(g, counts), MPI.VBuffer(recv, fill(Cint(length(mine)), world)), comm)
        for i in eachindex(gshard)
            s = 0.0
            for r in 0:world-1
                s += recv[r*length(mine)+i]
            end
            gshard[i] = s / n
        end
        local_theta = theta[mine]
        step!(opt, local_theta, gshard)
        MPI.Allgatherv!(local_theta, MPI.VBuffer(theta, counts), comm)
    end

    # every replica holds the same bytes
    ref = copy(theta)
    MPI.Bcast!(ref, comm; root = 0)
    any_diff = MPI.Allreduce(Int(ref != theta), MPI.MAX, comm)

    # the unsharded state from every shard's state, on rank 0
    blob = save_state(opt)
    lens = MPI.Gather(Cint(length(blob)), comm; root = 0)
    all = rank == 0 ? zeros(UInt8, sum(lens)) : UInt8[]
    MPI.Gatherv!(blob, rank == 0 ? MPI.VBuffer(all, lens) : nothing, comm; root = 0)
    if rank == 0
        offs = cumsum([0; lens[1:end-1]])
        states = [all[offs[r]+1:offs[r]+lens[r]] for r in 1:world]
        assembled = state_assemble(CONFIG, np, states)
        whole = Optimizer(CONFIG, np)
        step!(whole, zeros(np), zeros(np))
        unsharded_bytes = length(save_state(whole))
        load_state!(whole, assembled)
        correct = count(i -> ((theta[1] + sum(theta[j+1] * X[i, j] for j in 1:d)) >= 0) == (y[i] >= 0.5), 1:n)
        println("world ", world)
        println("steps ", steps)
        println("loss ", repr(loss))
        println("accuracy ", repr(correct / n))
        println("theta0 ", repr(theta[1]))
        println("theta_last ", repr(theta[end]))
        println("replicas_identical ", Int(any_diff == 0))
        println("assembled_state_bytes ", length(assembled))
        println("unsharded_state_bytes ", unsharded_bytes)
        println("assembled_state_steps ", step_count(whole))
    end
    MPI.Finalize()
end

main(ARGS)
