// C++ wrapper precond.hpp with ZeRO-1 sharded optimizer state, without MPI: four "ranks" in
// one process (a Muon matrix over most of the vector and AdamW elsewhere: rank 1's range is
// empty), each stepping its slice with precond::Optimizer::shard; the shard states are assembled
// (precond::state_assemble) and compared byte for byte with the unsharded optimizer's, then
// split for one rank (precond::state_split) and stepped on. A state of the wrong rank throws
// precond::Error with PRECOND_INVALID_STATE.
//
// Output: "shard: all checks passed" (exit status 0), else a message and exit status 1.
#include <cstdio>
#include <cstring>
#include <vector>

#include "precond.hpp"

namespace {
constexpr std::size_t N = 40, WORLD = 4;
const char *CONFIG = R"({"optimizer": "adamw", "lr": 0.01,
    "groups": [{"start": 2, "end": 38, "shape": [6, 6], "optimizer": "muon", "lr": 0.02}]})";

std::vector<double> gradient(int k, const std::vector<double> &x) {
    std::vector<double> g(x.size());
    for (std::size_t i = 0; i < x.size(); i++) {
        g[i] = x[i] - 0.1 * static_cast<double>(i % 5) +
               static_cast<double>((7 * static_cast<std::size_t>(k) + i) % 3) / 8.0;
    }
    return g;
}

bool same_bits(const std::vector<double> &a, const std::vector<double> &b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

void step_all(std::vector<precond::Optimizer> &shards,
              const std::vector<precond::ShardRange> &ranges, std::vector<double> &x,
              const std::vector<double> &g) {
    for (std::size_t r = 0; r < shards.size(); r++) {
        const auto [a, b] = ranges[r];
        std::vector<double> xl(x.begin() + a, x.begin() + b);
        std::vector<double> gl(g.begin() + a, g.begin() + b);
        shards[r].step(xl, gl);
        std::copy(xl.begin(), xl.end(), x.begin() + a);
    }
}
} // namespace

int main() {
    try {
        precond::Optimizer full(CONFIG, N);
        std::vector<precond::Optimizer> shards;
        std::vector<precond::ShardRange> ranges;
        for (std::size_t r = 0; r < WORLD; r++) {
            shards.push_back(precond::Optimizer::shard(CONFIG, N, WORLD, r));
            ranges.push_back(precond::shard_range(CONFIG, N, WORLD, r));
        }
        if (ranges[1].start != ranges[1].end) {
            std::fprintf(stderr, "rank 1 should hold nothing\n");
            return 1;
        }
        std::vector<double> xf(N, 0.5), xs(N, 0.5);
        for (int k = 1; k <= 5; k++) {
            const auto g = gradient(k, xf);
            full.step(xf, g);
            step_all(shards, ranges, xs, g);
        }
        if (!same_bits(xf, xs)) {
            std::fprintf(stderr, "sharded parameters differ\n");
            return 1;
        }
        std::vector<std::vector<std::uint8_t>> states;
        for (const auto &s : shards) states.push_back(s.save_state());
        const auto whole = precond::state_assemble(CONFIG, N, states);
        if (whole != full.save_state()) {
            std::fprintf(stderr, "assembled state differs\n");
            return 1;
        }
        try {
            shards[0].load_state(states[1]);
            std::fprintf(stderr, "rank 1's state loaded into rank 0\n");
            return 1;
        } catch (const precond::Error &e) {
            if (e.status() != PRECOND_INVALID_STATE) throw;
        }
        // one rank takes everything over
        auto solo = precond::Optimizer::shard(CONFIG, N, 1, 0);
        solo.load_state(precond::state_split(CONFIG, N, 1, 0, whole));
        for (int k = 6; k <= 8; k++) {
            const auto g = gradient(k, xf);
            full.step(xf, g);
            solo.step(xs, g);
        }
        if (!same_bits(xf, xs)) {
            std::fprintf(stderr, "resharded parameters differ\n");
            return 1;
        }
        std::printf("shard: all checks passed\n");
        return 0;
    } catch (const precond::Error &e) {
        std::fprintf(stderr, "%s: %s\n", e.status_name(), e.what());
        return 1;
    }
}
