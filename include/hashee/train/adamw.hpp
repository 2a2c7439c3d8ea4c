#pragma once
// AdamW, the one implementation: the probe (eval/probe.hpp) and head training
// (train/head_training.hpp) both update their parameters through it. Per element, with gradient
// g at step t:
//   m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,   m^ = m / (1 - b1^t),   v^ = v / (1 - b2^t)
//   theta -= lr wd theta  (decoupled decay, where the caller decays),   theta -= lr m^ / (sqrt(v^) + eps)
// in double, in this order, so that results are bit-identical wherever it is used.

#include <cmath>

namespace hashee::detail {

/// The step count of an AdamW run and the update of one parameter at the current step.
class adamw_step {
public:
    static constexpr double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;

    explicit adamw_step(double learning_rate) : lr_(learning_rate) {}

    /// Starts the next step (t += 1): call once per step, before its updates.
    void next() {
        beta1_t_ *= beta1;
        beta2_t_ *= beta2;
        c1_ = 1.0 / (1.0 - beta1_t_);
        c2_ = 1.0 / (1.0 - beta2_t_);
    }

    /// Updates one parameter `theta` with gradient `g` and its moments `m`, `v`, with decoupled
    /// weight decay `decay`.
    void update(double& theta, double g, double& m, double& v, double decay) const {
        moments(g, m, v);
        theta -= lr_ * decay * theta;
        theta -= lr_ * (m * c1_) / (std::sqrt(v * c2_) + eps);
    }
    /// The same without weight decay (not even a decay of 0: theta is left as it is).
    void update(double& theta, double g, double& m, double& v) const {
        moments(g, m, v);
        theta -= lr_ * (m * c1_) / (std::sqrt(v * c2_) + eps);
    }

    double learning_rate() const { return lr_; }

private:
    static void moments(double g, double& m, double& v) {
        m = beta1 * m + (1.0 - beta1) * g;
        v = beta2 * v + (1.0 - beta2) * g * g;
    }

    double lr_;
    double beta1_t_ = 1.0, beta2_t_ = 1.0, c1_ = 0.0, c2_ = 0.0;
};

} // namespace hashee::detail
