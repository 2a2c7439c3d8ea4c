#pragma once
// The encoder's optimizer: AdamW with decoupled weight decay (none on biases and LayerNorm, as
// trainable_tensor::decays says), Hugging Face's linear warm-up then linear decay, and clipping
// by the global gradient norm, over trainable tensors in a training backend's memory. One step
// is torch's `clip_grad_norm_(params, max_norm); optimizer.step(); scheduler.step()`; the update
// itself is the library's one AdamW (adamw_apply, backend/adamw_update.hpp), run by the backend
// on whole tensors. Gradient accumulation is the caller's: micro-batches add into the gradients
// (trainable_bert::forward_backward with their weights) before one step.

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <hashee/backend/training_backend.hpp>
#include <hashee/core/error.hpp>
#include <hashee/train/trainable_bert.hpp>

namespace hashee {

/// The learning rate of optimizer step k (0-based): linear warm-up from 0 over `warmup_steps`,
/// then linear decay to 0 at `total_steps` (transformers' get_linear_schedule_with_warmup).
struct linear_schedule {
    double base_rate = 5e-5;
    long warmup_steps = 0, total_steps = 1;

    double at(long k) const {
        if (k < warmup_steps) return base_rate * static_cast<double>(k) / static_cast<double>(warmup_steps);
        const long rest = total_steps - warmup_steps;
        const double left = static_cast<double>(total_steps - k) / static_cast<double>(rest > 1 ? rest : 1);
        return base_rate * (left > 0 ? left : 0.0);
    }
};

struct adamw_options {
    linear_schedule schedule;
    double weight_decay = 0.01;   ///< on the tensors that decay (not biases, not LayerNorm)
    double max_grad_norm = 1.0;   ///< clipping by the global norm; 0: no clipping
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;

    /// Bad options are a usage_error (U47), named by the option.
    void validate() const {
        auto fail = [](const std::string& what) { throw usage_error("U47", "adamw_options: " + what); };
        if (!(schedule.base_rate > 0) || !std::isfinite(schedule.base_rate))
            fail("the learning rate must be a finite number above 0, not " + std::to_string(schedule.base_rate));
        if (schedule.total_steps < 1) fail("total_steps must be >= 1, not " + std::to_string(schedule.total_steps));
        if (schedule.warmup_steps < 0 || schedule.warmup_steps > schedule.total_steps)
            fail("warmup_steps must be in [0, total_steps], not " + std::to_string(schedule.warmup_steps));
        if (!(weight_decay >= 0) || !std::isfinite(weight_decay)) fail("weight_decay must be >= 0, not " + std::to_string(weight_decay));
        if (!(max_grad_norm >= 0) || !std::isfinite(max_grad_norm)) fail("max_grad_norm must be >= 0, not " + std::to_string(max_grad_norm));
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) fail("betas must be in [0, 1)");
        if (!(eps > 0)) fail("eps must be above 0, not " + std::to_string(eps));
    }
};

/// What one step did: the learning rate it used and the global gradient norm before clipping.
struct step_report {
    long step = 0; ///< 1-based
    double learning_rate = 0, grad_norm = 0;
};

template <training_backend B, class T>
class adamw_optimizer {
public:
    using tensor = trainable_tensor<B, T>;

    /// The moments start at zero, one pair per tensor, in the backend's memory.
    adamw_optimizer(std::vector<tensor>& params, const adamw_options& options, const B& backend)
        : params_(&params), options_(options), backend_(&backend) {
        options.validate();
        for (const tensor& t : params) {
            moments mv{backend.template allocate<T>(t.size()), backend.template allocate<T>(t.size())};
            backend.fill(view(mv.m, t), T(0));
            backend.fill(view(mv.v, t), T(0));
            moments_.push_back(std::move(mv));
        }
    }

    /// The global norm of every gradient, sqrt(sum of squares), accumulated in double.
    double grad_norm() const {
        double squares = 0;
        for (const tensor& t : *params_) squares += backend_->squared_norm(const_matrix_view<T>(t.grad.data(), t.rows, t.cols));
        return std::sqrt(squares);
    }

    /// Clips the gradients to max_grad_norm (scaled by max_norm / (norm + 1e-6) where that is
    /// below 1, as torch does), then updates every parameter at the schedule's rate for this
    /// step. A gradient norm that is not finite is an input_error (E87) and changes nothing.
    step_report step() {
        step_report r;
        r.step = ++steps_;
        r.learning_rate = options_.schedule.at(steps_ - 1);
        r.grad_norm = grad_norm();
        if (!std::isfinite(r.grad_norm)) {
            --steps_;
            throw input_error("E87", "gradient norm is not finite at optimizer step " + std::to_string(r.step) +
                                         " (the loss diverged: lower the learning rate)");
        }
        double scale = 1;
        if (options_.max_grad_norm > 0) scale = std::min(options_.max_grad_norm / (r.grad_norm + 1e-6), 1.0);
        for (std::size_t i = 0; i < params_->size(); ++i) {
            tensor& t = (*params_)[i];
            const auto s = adamw_scalars::at(steps_, r.learning_rate, t.decays ? options_.weight_decay : 0.0,
                                                               scale, options_.beta1, options_.beta2, options_.eps);
            backend_->adamw_update(matrix_view<T>(t.value.data(), t.rows, t.cols), const_matrix_view<T>(t.grad.data(), t.rows, t.cols),
                                   view(moments_[i].m, t), view(moments_[i].v, t), s);
        }
        return r;
    }

    long steps_taken() const { return steps_; }

    /// The moments of tensor i (for checkpoints): m and v, each the tensor's shape.
    matrix_view<T> first_moment(std::size_t i) { return view(moments_.at(i).m, (*params_)[i]); }
    matrix_view<T> second_moment(std::size_t i) { return view(moments_.at(i).v, (*params_)[i]); }
    /// Restores the step count of a checkpointed run (its moments are written through the views).
    void set_steps_taken(long steps) { steps_ = steps; }

private:
    struct moments {
        typename B::template buffer<T> m, v;
    };
    static matrix_view<T> view(typename B::template buffer<T>& buf, const tensor& t) { return {buf.data(), t.rows, t.cols}; }

    std::vector<tensor>* params_;
    adamw_options options_;
    const B* backend_;
    std::vector<moments> moments_;
    long steps_ = 0;
};

} // namespace hashee
