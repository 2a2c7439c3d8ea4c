#pragma once
// Softmax, the one implementation the heads, their training, the exit policies and the probe
// share: stable (the maximum subtracted), in double.

#include <algorithm>
#include <cmath>
#include <span>

namespace hashee::detail {

/// In-place softmax of `z`, stable (max subtracted).
inline void softmax_inplace(std::span<double> z) {
    double m = z[0];
    for (double v : z) m = std::max(m, v);
    double s = 0.0;
    for (double& v : z) {
        v = std::exp(v - m);
        s += v;
    }
    for (double& v : z) v /= s;
}

/// Shannon entropy (nats) of softmax(z).
inline double softmax_entropy(std::span<const float> z) {
    const float m = *std::max_element(z.begin(), z.end());
    double sum = 0, weighted = 0;
    for (float v : z) {
        const double e = std::exp(static_cast<double>(v - m));
        sum += e;
        weighted += e * (v - m);
    }
    return std::log(sum) - weighted / sum; // H = log sum e^(z-m) - E_p[z - m]
}

} // namespace hashee::detail
