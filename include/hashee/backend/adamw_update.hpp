#pragma once
// The library's one AdamW, torch.optim.AdamW's arithmetic per element: the backends run it on
// whole tensors (training_backend's adamw_update, for the encoder's optimizer,
// train/optimizer.hpp) and the host trainers per parameter (train/adamw.hpp: the probe and the
// exit heads).

#include <cmath>

#include <hashee/backend/detail/thrust_functors.hpp> // HASHEE_HOST_DEVICE

namespace hashee {

namespace detail {
HASHEE_HOST_DEVICE inline float adamw_sqrt(float x) { return sqrtf(x); }
HASHEE_HOST_DEVICE inline double adamw_sqrt(double x) { return sqrt(x); }
} // namespace detail

/// The scalars of one AdamW step (torch.optim.AdamW's single-tensor path), computed on the host
/// once per step.
struct adamw_scalars {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double decay_factor = 1;        ///< 1 - lr wd (exactly 1 without decay: theta is left as it is)
    double step_size = 0;           ///< lr / (1 - beta1^t)
    double bias_correction2_sqrt = 1; ///< sqrt(1 - beta2^t)
    double grad_scale = 1;          ///< the clipping coefficient applied to g

    /// Step t (1-based) at learning rate lr with weight decay wd.
    static adamw_scalars at(long t, double lr, double wd, double grad_scale = 1, double beta1 = 0.9, double beta2 = 0.999,
                            double eps = 1e-8) {
        adamw_scalars s;
        s.beta1 = beta1, s.beta2 = beta2, s.eps = eps, s.grad_scale = grad_scale;
        s.decay_factor = 1.0 - lr * wd;
        s.step_size = lr / (1.0 - std::pow(beta1, static_cast<double>(t)));
        s.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t)));
        return s;
    }
};

/// One parameter's AdamW update in T, in PyTorch's order: theta *= 1 - lr wd; m += (1 - beta1)
/// (g - m); v = beta2 v + (1 - beta2) g^2; theta -= step_size m / (sqrt(v) / sqrt(bc2) + eps).
template <class T>
HASHEE_HOST_DEVICE inline void adamw_apply(T& theta, T g, T& m, T& v, const adamw_scalars& s) {
    g = s.grad_scale == 1 ? g : g * static_cast<T>(s.grad_scale);
    theta *= static_cast<T>(s.decay_factor);
    m += static_cast<T>(1 - s.beta1) * (g - m);
    v = v * static_cast<T>(s.beta2) + static_cast<T>(1 - s.beta2) * (g * g);
    const T denom = detail::adamw_sqrt(v) / static_cast<T>(s.bias_correction2_sqrt) + static_cast<T>(s.eps);
    theta -= static_cast<T>(s.step_size) * (m / denom);
}

} // namespace hashee
