// The C++ side of the CMake consumer: the header-only wrapper precond.hpp over the installed
// shared library. Checks a condition number and that a failing call throws precond::Error.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "precond.hpp"

int main() {
    if (precond::version() != PRECOND_VERSION) {
        std::fprintf(stderr, "FAIL version %s vs header %s\n", precond::version().c_str(),
                     PRECOND_VERSION);
        return 1;
    }
    const std::vector<double> a = {4, 0, 0, 1};
    const precond_cond2_t c = precond::cond2(a, 2, 2, precond::Layout::RowMajor);
    if (std::fabs(c.kappa - 4.0) > 1e-12) {
        std::fprintf(stderr, "FAIL kappa(diag(4, 1)) = %.17g\n", c.kappa);
        return 1;
    }
    try {
        const precond::Optimizer opt("{\"optimizer\": \"adam\", \"lr\": -1}", 2);
        (void)opt;
        std::fprintf(stderr, "FAIL a negative lr was accepted\n");
        return 1;
    } catch (const precond::Error &e) {
        if (std::string(e.what()).find("lr") == std::string::npos) {
            std::fprintf(stderr, "FAIL message without `lr`: %s\n", e.what());
            return 1;
        }
    }
    std::printf("consumer_cpp ok %s\n", precond::version().c_str());
    return 0;
}
