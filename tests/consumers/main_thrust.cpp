// Consumer tests: a downstream program of hashee::thrust, the Thrust backend's CPU systems.
#include <hashee/backend/thrust.hpp>

#include <cstdio>
#include <span>
#include <vector>

#if !defined(HASHEE_HAS_THRUST) || !defined(_OPENMP) || !defined(EIGEN_DONT_PARALLELIZE)
#error "hashee::thrust must hand its consumer HASHEE_HAS_THRUST, OpenMP and EIGEN_DONT_PARALLELIZE"
#endif

int main() {
    // y = x W^T + bias on thrust_backend<thrust_omp>: x [1, 2], W [2, 2].
    const hashee::thrust_backend<hashee::thrust_omp> omp;
    const std::vector<float> x{1, 2}, w{3, 4, 5, 6}, bias{0.5f, -0.5f};
    auto xd = omp.allocate<float>(2), wd = omp.allocate<float>(4), bd = omp.allocate<float>(2), yd = omp.allocate<float>(2);
    omp.upload(std::span<const float>(x), xd.data());
    omp.upload(std::span<const float>(w), wd.data());
    omp.upload(std::span<const float>(bias), bd.data());
    omp.linear({xd.data(), 1, 2}, {wd.data(), 2, 2}, {bd.data(), 2}, {yd.data(), 1, 2}, hashee::epilogue::none);
    std::vector<float> y(2);
    omp.download(static_cast<const float*>(yd.data()), std::span<float>(y));
    if (y[0] != 11.5f || y[1] != 16.5f) {
        std::printf("thrust-omp: y = [%g, %g], expected [11.5, 16.5]\n", y[0], y[1]);
        return 1;
    }
    std::printf("hashee consumer: ok (%s, hashee::thrust)\n", HASHEE_CONSUMER_KIND);
    return 0;
}
