#pragma once
// AdamW on host doubles, one parameter at a time, for the probe (eval/probe.hpp) and head
// training (train/head_training.hpp). Its arithmetic is the library's one AdamW, adamw_apply
// (backend/adamw_update.hpp, torch.optim.AdamW's order), which the backend runs on whole tensors
// for the encoder (train/optimizer.hpp). Per element, with gradient g at step t:
//   theta *= 1 - lr wd,   m += (1 - b1)(g - m),   v = b2 v + (1 - b2) g^2,
//   theta -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps).

#include <hashee/backend/adamw_update.hpp>

namespace hashee::detail {

/// The step count of an AdamW run and the update of one parameter at the current step.
class adamw_step {
public:
    static constexpr double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;

    explicit adamw_step(double learning_rate) : lr_(learning_rate) {}

    /// Starts the next step (t += 1): call once per step, before its updates.
    void next() {
        ++t_;
        decayed_ = adamw_scalars::at(t_, lr_, 1.0);
        plain_ = adamw_scalars::at(t_, lr_, 0.0);
    }

    /// Updates one parameter `theta` with gradient `g` and its moments `m`, `v`, with decoupled
    /// weight decay `decay`.
    void update(double& theta, double g, double& m, double& v, double decay) const {
        adamw_scalars s = decayed_;
        s.decay_factor = 1.0 - lr_ * decay;
        adamw_apply(theta, g, m, v, s);
    }
    /// The same without weight decay (theta is not scaled at all).
    void update(double& theta, double g, double& m, double& v) const { adamw_apply(theta, g, m, v, plain_); }

    double learning_rate() const { return lr_; }

private:
    double lr_;
    long t_ = 0;
    adamw_scalars decayed_, plain_;
};

} // namespace hashee::detail
