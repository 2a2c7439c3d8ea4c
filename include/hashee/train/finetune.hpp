#pragma once
// The fine-tuning loop: epochs of shuffled minibatches (the order a pure function of the seed
// and the epoch), each an optimizer step over one or more micro-batches accumulated with their
// weights, AdamW with linear warm-up and decay and clipping (train/optimizer.hpp), Hugging
// Face's dropout, under a token exit policy (no_exit: dense). Its whole state (the weights, the
// moments, the step) saves to a folder and restores, so a killed run resumed from its last
// state continues bit for bit.
//  - classify: cross-entropy over the classifier's labels; regress: squared error over one
//    output; pairs are one sequence (a cross-encoder, [CLS] a [SEP] b [SEP]).
//  - cosine: the bi-encoder's cosine-similarity loss on mean-pooled pairs.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <hashee/backend/training_backend.hpp>
#include <hashee/core/detail/json.hpp>
#include <hashee/core/detail/random.hpp>
#include <hashee/core/detail/write_file.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/io/safetensors.hpp>
#include <hashee/model/token_exit.hpp>
#include <hashee/text/tokenizer.hpp>
#include <hashee/train/optimizer.hpp>
#include <hashee/train/trainable_bert.hpp>

namespace hashee {

enum class objective { classify, regress, cosine };

inline std::string_view to_string(objective o) {
    return o == objective::classify ? "classify" : o == objective::regress ? "regress" : "cosine";
}
/// An objective by name; input_error E88 for any other name.
inline objective parse_objective(std::string_view name) {
    if (name == "classify") return objective::classify;
    if (name == "regress") return objective::regress;
    if (name == "cosine") return objective::cosine;
    throw input_error("E88", "--objective must be classify, regress or cosine, not '" + std::string(name) + "'");
}

/// Tokenised training examples and their targets: one sequence each (classify, regress), or two
/// (cosine: `second` holds the other text of each pair).
struct training_set {
    std::vector<encoding> first, second;
    std::vector<double> targets;
    std::size_t size() const { return targets.size(); }
};

struct finetune_options {
    objective task = objective::classify;
    int epochs = 3;
    double learning_rate = 5e-5;
    int batch_size = 32;
    int micro_batch = 0;       ///< sequences (pairs) per forward_backward; 0: the whole batch
    std::uint64_t seed = 0;
    double warmup_ratio = 0.1; ///< of the total steps
    double weight_decay = 0.01, max_grad_norm = 1.0;
    double hidden_dropout = 0.1, attention_dropout = 0.1;

    /// Bad options are an input_error (E88) naming the option.
    void validate() const {
        auto fail = [](const std::string& what) { throw input_error("E88", what); };
        if (epochs < 1) fail("--epochs must be at least 1, not " + std::to_string(epochs));
        if (!(learning_rate > 0) || !std::isfinite(learning_rate))
            fail("--lr must be a finite number above 0, not " + std::to_string(learning_rate));
        if (batch_size < 1) fail("--batch-size must be at least 1, not " + std::to_string(batch_size));
        if (micro_batch < 0) fail("the micro-batch must be 0 (the whole batch) or more, not " + std::to_string(micro_batch));
        if (!(warmup_ratio >= 0 && warmup_ratio <= 1)) fail("the warm-up ratio must be in [0, 1], not " + std::to_string(warmup_ratio));
        for (const double p : {hidden_dropout, attention_dropout})
            if (!(p >= 0 && p < 1)) fail("dropout must be in [0, 1), not " + std::to_string(p));
    }
};

/// What one optimizer step did.
struct finetune_progress {
    int epoch = 0;             ///< 0-based
    long step = 0, total_steps = 0;
    double loss = 0;           ///< the step's mean loss
    double learning_rate = 0, grad_norm = 0;
    std::size_t examples = 0;  ///< in this step
    bool epoch_end = false;    ///< the last step of its epoch
};

template <training_backend B, token_exit_policy P = no_exit>
class finetuner {
public:
    /// `data` must outlive the finetuner. An empty training set, targets that do not fit the
    /// model (E28, checked for every example before any step) or bad options (E88) are errors.
    finetuner(trainable_bert<B, float>& model, const training_set& data, const finetune_options& options, const B& backend,
              P policy = {})
        : model_(&model), data_(&data), options_((options.validate(), options)), backend_(&backend), policy_(std::move(policy)),
          optimizer_(model.tensors(), adamw_for(options, data), backend) {
        if (data.size() == 0) throw input_error("E88", "the training set is empty");
        if (data.first.size() != data.size() || (options.task == objective::cosine && data.second.size() != data.size()))
            throw usage_error("U51", "training_set: texts and targets differ in number");
        const bool needs_head = options.task != objective::cosine;
        if (needs_head != (model.labels() > 0) || (options.task == objective::regress && model.labels() != 1) ||
            (options.task == objective::classify && model.labels() < 2))
            throw usage_error("U51", "finetuner: objective " + std::string(to_string(options.task)) + " on a model with " +
                                         std::to_string(model.labels()) + " outputs");
        for (std::size_t i = 0; i < data.size(); ++i) {
            const double t = data.targets[i];
            if (!std::isfinite(t)) throw input_error("E28", "target of example " + std::to_string(i) + " is not finite");
            if (options.task == objective::classify && (t != std::floor(t) || t < 0 || t >= model.labels()))
                throw input_error("E28", "label " + std::to_string(t) + " of example " + std::to_string(i) + " is outside the " +
                                             std::to_string(model.labels()) + " classes");
        }
        shuffle();
    }

    long steps_per_epoch() const { return steps_per_epoch(options_, *data_); }
    long total_steps() const { return steps_per_epoch() * options_.epochs; }
    long steps_done() const { return optimizer_.steps_taken(); }
    bool done() const { return steps_done() >= total_steps(); }
    int epoch() const { return static_cast<int>(steps_done() / steps_per_epoch()); }

    /// One optimizer step over the next minibatch of the epoch.
    finetune_progress step() {
        if (done()) throw usage_error("U51", "finetuner: every step has run");
        const long in_epoch = steps_done() % steps_per_epoch();
        const std::size_t b0 = static_cast<std::size_t>(in_epoch) * static_cast<std::size_t>(options_.batch_size);
        const std::size_t b1 = std::min(data_->size(), b0 + static_cast<std::size_t>(options_.batch_size));
        const std::size_t micro = options_.micro_batch > 0 ? static_cast<std::size_t>(options_.micro_batch) : b1 - b0;
        finetune_progress r;
        r.epoch = epoch();
        r.examples = b1 - b0;
        model_->zero_grad();
        for (std::size_t m0 = b0; m0 < b1; m0 += micro) {
            const std::size_t m1 = std::min(b1, m0 + micro);
            const double weight = static_cast<double>(m1 - m0) / static_cast<double>(b1 - b0);
            r.loss += weight * micro_step(m0, m1, weight);
        }
        const step_report s = optimizer_.step();
        r.step = s.step;
        r.total_steps = total_steps();
        r.learning_rate = s.learning_rate;
        r.grad_norm = s.grad_norm;
        r.epoch_end = in_epoch + 1 == steps_per_epoch();
        if (r.epoch_end && !done()) shuffle();
        return r;
    }

    /// Writes the whole training state to `dir` (created where missing): the weights
    /// (weights.safetensors), the moments (moments.safetensors) and state.json, last, which names
    /// the step both binaries hold; `extra` is kept in state.json for the caller (its best
    /// score, say). Each file is written atomically.
    void save_state(const std::filesystem::path& dir, const nlohmann::json& extra = nlohmann::json::object()) {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        const std::map<std::string, std::string> meta{{"hashee.step", std::to_string(steps_done())}};
        std::deque<std::vector<float>> host; // stable while the spans into it are written
        std::vector<safetensors_tensor> weights, moments;
        auto& ts = model_->tensors();
        for (std::size_t i = 0; i < ts.size(); ++i) {
            const std::vector<std::int64_t> shape{ts[i].rows, ts[i].cols};
            weights.push_back({ts[i].name, shape, keep(host, ts[i].v())});
            moments.push_back({"m." + ts[i].name, shape, keep(host, optimizer_.first_moment(i))});
            moments.push_back({"v." + ts[i].name, shape, keep(host, optimizer_.second_moment(i))});
        }
        write_safetensors(dir / "weights.safetensors", weights, meta);
        write_safetensors(dir / "moments.safetensors", moments, meta);
        nlohmann::json state{{"format", "hashee-finetune-state"}, {"version", 1}, {"step", steps_done()}, {"draws", draws_},
                             {"options", describe(options_)}, {"examples", data_->size()}, {"extra", extra}};
        detail::write_file_atomically(dir / "state.json", state.dump(2) + "\n");
    }

    /// Restores a state save_state wrote, for a run with the same options and data (else
    /// input_error E89 naming what differs); returns its `extra`. A state whose files disagree on
    /// the step (a run killed between them) is E89 as well.
    nlohmann::json restore_state(const std::filesystem::path& dir) {
        const nlohmann::json state = detail::read_json_file(dir / "state.json");
        auto fail = [&](const std::string& what) { throw input_error("E89", detail::located((dir / "state.json").string(), what)); };
        if (state.value("format", "") != "hashee-finetune-state" || state.value("version", 0) != 1) fail("not a hashee fine-tuning state");
        if (state["options"] != describe(options_))
            fail("the run it continues had other options: " + state["options"].dump() + ", now " + describe(options_).dump());
        if (state["examples"] != data_->size()) fail("the run it continues had " + state["examples"].dump() + " training examples");
        const long step = state["step"].get<long>();
        if (step < 0 || step > total_steps()) fail("step " + std::to_string(step) + " is outside the run");
        const auto weights = safetensors_file::open(dir / "weights.safetensors");
        const auto moments = safetensors_file::open(dir / "moments.safetensors");
        for (const auto* f : {&weights, &moments}) {
            const auto it = f->metadata().find("hashee.step");
            if (it == f->metadata().end() || it->second != std::to_string(step))
                fail(f->source() + " holds another step than state.json's " + std::to_string(step));
        }
        auto& ts = model_->tensors();
        for (std::size_t i = 0; i < ts.size(); ++i) {
            put(weights, ts[i].name, ts[i], ts[i].value.data());
            put(moments, "m." + ts[i].name, ts[i], optimizer_.first_moment(i).data);
            put(moments, "v." + ts[i].name, ts[i], optimizer_.second_moment(i).data);
        }
        optimizer_.set_steps_taken(step);
        draws_ = state["draws"].get<std::uint64_t>();
        shuffle();
        return state["extra"];
    }

private:
    static long steps_per_epoch(const finetune_options& o, const training_set& data) {
        return std::max<long>(1, static_cast<long>((data.size() + static_cast<std::size_t>(o.batch_size) - 1) /
                                                   static_cast<std::size_t>(o.batch_size)));
    }
    static adamw_options adamw_for(const finetune_options& o, const training_set& data) {
        adamw_options a;
        const long total = steps_per_epoch(o, data) * o.epochs;
        a.schedule = {o.learning_rate, static_cast<long>(std::ceil(o.warmup_ratio * static_cast<double>(total))), total};
        a.schedule.warmup_steps = std::min(a.schedule.warmup_steps, total);
        a.weight_decay = o.weight_decay;
        a.max_grad_norm = o.max_grad_norm;
        return a;
    }
    static nlohmann::json describe(const finetune_options& o) {
        return {{"objective", to_string(o.task)}, {"epochs", o.epochs}, {"lr", o.learning_rate}, {"batch_size", o.batch_size},
                {"micro_batch", o.micro_batch}, {"seed", o.seed}, {"warmup_ratio", o.warmup_ratio}, {"weight_decay", o.weight_decay},
                {"max_grad_norm", o.max_grad_norm}, {"hidden_dropout", o.hidden_dropout}, {"attention_dropout", o.attention_dropout}};
    }

    /// The epoch's order: the examples shuffled by the stream (seed, epoch) of the portable
    /// random source, so a resumed run draws the same order without storing it.
    void shuffle() {
        order_.resize(data_->size());
        for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
        detail::random_source rng(detail::stream_seed(options_.seed, static_cast<std::uint64_t>(epoch())));
        rng.shuffle(order_);
    }

    /// forward_backward over the examples order_[m0, m1) with this weight; returns their loss.
    double micro_step(std::size_t m0, std::size_t m1, double weight) {
        packed_batch batch;
        std::vector<double> targets;
        for (std::size_t k = m0; k < m1; ++k) {
            const std::size_t i = order_[k];
            batch.push_back(data_->first[i].ids, data_->first[i].type_ids);
            if (options_.task == objective::cosine) batch.push_back(data_->second[i].ids, data_->second[i].type_ids);
            targets.push_back(data_->targets[i]);
        }
        const step_options s{weight, {options_.hidden_dropout, options_.attention_dropout, options_.seed, draws_++}, nullptr};
        if (options_.task == objective::cosine) return model_->forward_backward_cosine(batch, targets, policy_, s);
        return model_->forward_backward(batch, targets, policy_, s);
    }

    std::span<const float> keep(std::deque<std::vector<float>>& host, const_matrix_view<float> v) const {
        host.emplace_back(static_cast<std::size_t>(v.rows * v.cols));
        backend_->download(v.data, std::span<float>(host.back()));
        return host.back();
    }
    void put(const safetensors_file& f, const std::string& name, const trainable_tensor<B, float>& t, float* dst) const {
        std::vector<float> storage;
        const std::initializer_list<std::int64_t> shape{t.rows, t.cols}; // nvcc takes no braced list here
        const auto values = f.floats(f.expect(name, shape), storage);
        backend_->upload(values, dst);
    }

    trainable_bert<B, float>* model_;
    const training_set* data_;
    finetune_options options_;
    const B* backend_;
    P policy_;
    adamw_optimizer<B, float> optimizer_;
    std::vector<std::size_t> order_;
    std::uint64_t draws_ = 0;
};

} // namespace hashee
