// Consumer tests (add_subdirectory, FetchContent, find_package): a downstream program that includes hashee's umbrella header and
// uses it through hashee::hashee alone. Keep it this small -- it must keep compiling as the library grows, with no model.
#include <hashee/hashee.hpp>

#include <cstdio>
#include <string_view>
#include <vector>

// hashee::hashee is the CPU library: it hands its consumers no OpenMP and none of the Thrust
// backend's settings (those come with hashee::thrust).
#if defined(_OPENMP) || defined(EIGEN_DONT_PARALLELIZE) || defined(HASHEE_HAS_THRUST)
#error "hashee::hashee handed its consumer OpenMP, EIGEN_DONT_PARALLELIZE or HASHEE_HAS_THRUST"
#endif

int main() {
    // y = x W^T on eigen_cpu: x [1, 2], W [2, 2].
    const hashee::eigen_cpu cpu(2);
    std::vector<float> x{1, 2}, w{3, 4, 5, 6}, y(2);
    cpu.linear({x.data(), 1, 2}, {w.data(), 2, 2}, {}, {y.data(), 1, 2}, hashee::epilogue::none);
    if (y[0] != 11.0f || y[1] != 17.0f) {
        std::printf("eigen_cpu: y = [%g, %g], expected [11, 17]\n", y[0], y[1]);
        return 1;
    }
    try {
        throw hashee::format_error("E02", "consumer: bad input");
    } catch (const hashee::error& e) {  // the typed error is a hashee::error (and a std::runtime_error)
        if (std::string_view(e.what()) != "consumer: bad input" || e.id() != "E02") {
            std::printf("unexpected error: [%s] %s\n", std::string(e.id()).c_str(), e.what());
            return 1;
        }
        std::printf("hashee consumer: ok (%s, hashee::hashee)\n", HASHEE_CONSUMER_KIND);
        return 0;
    }
    return 1;
}
