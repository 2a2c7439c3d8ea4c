#pragma once
// hashee baselines: sentence-level early exits with internal classifiers against HashEE, on one
// backbone (all-MiniLM-L6-v2, frozen) with one head-training budget, in one table.
//  - SST-2 dev (accuracy x100): dense (head L), static-k, DeeBERT (entropy), FastBERT (its own
//    heads, self-distilled), PABEE (patience), BERxiT (learned exit), HashEE (frequency hash at
//    ~2x, logistic-regression probe on its mean-pooled embeddings, as `hashee eval` does) and
//    HashEE + entropy (hash exits inside, DeeBERT exits on top, heads trained on the hashed
//    backbone's features).
//  - STS-B dev (Spearman x100 of a regression head on the pair's [CLS]): dense, static-k, PABEE
//    regression (patience with tau), HashEE (regression head trained on the hashed features).
//    Entropy, FastBERT and BERxiT need class distributions and have no regression variant.
// Every head set is trained on the same N training examples (drawn with the seed), for the same epochs, batch
// size and learning rate (AdamW). FLOPs speed-ups count every layer and head that ran over the
// whole dev set; wall-clock speed-ups time each method against the dense model, interleaved in
// this process, at batch 1 and 32 on the first `timing_samples` dev examples.

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <numeric>
#include <random>

#include <hashee/train/head_training.hpp>
#include <hashee/exit/fastbert_heads.hpp>
#include <hashee/eval/metrics.hpp>
#include <hashee/eval/probe.hpp>
#include <hashee/exit/sentence_exit.hpp>

#include "cli_common.hpp"
#include "svg_plot.hpp"

namespace hashee::cli {

struct baselines_options {
    std::filesystem::path model_dir, elue_dir, out_dir;
    std::vector<std::string> tasks{"sst2", "stsb"};
    std::size_t train_samples = 0;     ///< the head-training budget: examples (0: the whole train split) ...
    int epochs = 3;                    ///< ... epochs, minibatch and learning rate, the same for every method
    int batch_size = 32;
    double learning_rate = 1e-3;
    head_input heads_read = head_input::mean; ///< what the pooler + linear heads and BERxiT read
    std::size_t timing_samples = 128;  ///< dev examples timed at batch 1 and 32
    int timing_rounds = 2;
    double hash_target = 2.0;
    std::size_t limit = 0;             ///< use only this many dev examples (0: all; quick checks)
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::uint64_t seed = 0;
    std::string backend = "eigen";     ///< what the encoder runs on (--backend); the heads run on the host
};

struct baseline_row {
    std::string task, method, setting;
    double quality = 0, flops_speedup = 1, wall_b1 = 1, wall_b32 = 1, layers_per_token = 0;
    std::vector<double> histogram; ///< fraction of dev examples answered by each layer
    std::string note;
};

/// The sweep on backend B (--backend).
template <backend B>
class baselines {
public:
    baselines(const baselines_options& o, const B& backend)
        : o_(o), backend_(backend), m_(model<B>::load(o.model_dir, backend_)), L_(m_.config().num_hidden_layers),
          pooler_(dense_params::copy_of(backend_, require_pooler())) {}

    std::vector<baseline_row> run() {
        for (const auto& t : o_.tasks) {
            if (t == "sst2") sst2();
            else if (t == "stsb") stsb();
            else throw input_error("C11", "unknown task '" + t + "' (sst2, stsb)");
        }
        return rows_;
    }

private:
    /// A task's examples: inputs tokenised into batches, and targets.
    struct split {
        std::vector<encoding> examples;
        std::vector<float> targets;
        packed_batch all(std::size_t first, std::size_t count) const {
            const std::size_t end = std::min(examples.size(), first + count);
            return pack(std::span(examples).subspan(std::min(first, end), end - std::min(first, end)));
        }
        std::vector<packed_batch> batches(std::size_t size, std::size_t limit = 0) const {
            const std::size_t n = limit ? std::min(limit, examples.size()) : examples.size();
            return packed_batches(make_batches(std::span(examples).first(n), {.max_sequences = size}));
        }
    };

    const linear_weights& require_pooler() const {
        if (!m_.encoder().weights().pooler()) throw input_error("C17", "baselines: the model has no pooler to start the heads from");
        return *m_.encoder().weights().pooler();
    }

    split load(const std::string& task, const std::string& name, const std::vector<std::string>& columns, bool regression,
               std::size_t limit, bool sample = false) const {
        const auto t = tsv_table::load(o_.elue_dir / task / (name + ".tsv"));
        const auto in = read_tsv_columns(t, columns);
        const std::size_t label = t.column("label"), n = limit ? std::min(limit, t.size()) : t.size();
        // The rows to read: the first n, or (`sample`) n drawn at random with the seed, in file
        // order (ELUE's SST-2 train split is ordered: 89% of its first 3,000 are positive).
        std::vector<std::size_t> rows(t.size());
        std::iota(rows.begin(), rows.end(), std::size_t{0});
        if (sample && n < t.size()) {
            detail::random_source rng(o_.seed);
            for (std::size_t i = 0; i < n; ++i) std::swap(rows[i], rows[i + rng.below(t.size() - i)]);
            std::sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(n));
        }
        rows.resize(n);
        split s;
        for (const std::size_t i : rows) {
            s.examples.push_back(in.second[i] ? m_.tokenizer().encode(in.first[i], *in.second[i]) : m_.tokenizer().encode(in.first[i]));
            const double y = parse_label(t, i, label, "label", !regression);
            s.targets.push_back(regression ? static_cast<float>(y) : static_cast<float>(std::lround(y)));
        }
        return s;
    }

    head_training_options training() const {
        return {.epochs = o_.epochs, .batch_size = o_.batch_size, .learning_rate = o_.learning_rate, .seed = o_.seed};
    }

    template <token_exit_policy P>
    layer_features features(const split& train, const P& token_policy, bool with_tokens) const {
        return collect_layer_features(backend_, m_.encoder(), train.batches(64), token_policy, o_.heads_read, with_tokens);
    }

    /// Seconds to run `f` on every batch.
    template <class F>
    static double seconds(const std::vector<packed_batch>& bs, F&& f) {
        const auto t0 = clock_type::now();
        for (const auto& b : bs) f(b);
        return seconds_since(t0);
    }

    /// dense time / method time at batch 1 and 32, the two interleaved round by round.
    template <class Dense, class Method>
    std::pair<double, double> wall_speedups(const split& dev, Dense&& dense, Method&& method) const {
        std::pair<double, double> r;
        for (const std::size_t size : {std::size_t{1}, std::size_t{32}}) {
            const auto bs = dev.batches(size, o_.timing_samples);
            double td = 0, tm = 0;
            for (int round = 0; round < o_.timing_rounds; ++round) {
                td += seconds(bs, dense);
                tm += seconds(bs, method);
            }
            (size == 1 ? r.first : r.second) = td / tm;
        }
        return r;
    }

    double quality(const split& dev, const std::vector<float>& outputs, index_t C) const {
        const std::size_t n = dev.targets.size();
        if (C == 1) {
            const std::vector<double> y(dev.targets.begin(), dev.targets.end()), p(outputs.begin(), outputs.end());
            return 100 * spearman(p, y);
        }
        std::vector<int> predicted(n), truth(n);
        for (std::size_t i = 0; i < n; ++i) {
            const auto z = std::span<const float>(outputs).subspan(i * static_cast<std::size_t>(C), static_cast<std::size_t>(C));
            predicted[i] = static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
            truth[i] = static_cast<int>(dev.targets[i]);
        }
        return 100 * accuracy(predicted, truth);
    }

    /// One row: classify the dev set with `heads` under `policy` (batch 32), quality, FLOPs,
    /// exit histogram, and wall-clock against the dense classifier `dense_heads`.
    template <class Heads, class DenseHeads, class Policy>
    void classify_row(const std::string& task, const std::string& method, const std::string& setting, const split& dev,
                      const Heads& heads, const DenseHeads& dense_heads, const Policy& policy) {
        baseline_row row = named_row(task, method, setting);
        std::vector<float> outputs;
        forward_cost cost;
        row.histogram.assign(static_cast<std::size_t>(L_), 0.0);
        for (const auto& b : dev.batches(32)) {
            const classifier_output out = classify(m_.encoder(), backend_, b, heads, policy);
            outputs.insert(outputs.end(), out.logits.begin(), out.logits.end());
            cost += out.cost;
            for (const auto e : out.exit_layers) row.histogram[static_cast<std::size_t>(e - 1)] += 1.0;
        }
        for (double& h : row.histogram) h /= static_cast<double>(dev.targets.size());
        row.layers_per_token = cost.average_layers();
        row.quality = quality(dev, outputs, heads.outputs());
        row.flops_speedup = cost.flops_speedup();
        std::tie(row.wall_b1, row.wall_b32) = wall_speedups(
            dev, [&](const packed_batch& b) { (void)classify(m_.encoder(), backend_, b, dense_heads, no_exit{}); },
            [&](const packed_batch& b) { (void)classify(m_.encoder(), backend_, b, heads, policy); });
        add(std::move(row));
    }

    void add(baseline_row row) {
        char buf[300];
        std::snprintf(buf, sizeof buf, "hashee baselines: %-5s %-16s %-14s quality %6.2f  FLOPs %.2fx  wall %.2fx (b1) %.2fx (b32)\n",
                      row.task.c_str(), row.method.c_str(), row.setting.c_str(), row.quality, row.flops_speedup, row.wall_b1,
                      row.wall_b32);
        std::cerr << buf;
        rows_.push_back(std::move(row));
    }

    static baseline_row named_row(const std::string& task, const std::string& method, const std::string& setting) {
        baseline_row row;
        row.task = task;
        row.method = method;
        row.setting = setting;
        return row;
    }

    static std::string fixed(double v, int decimals) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        return buf;
    }

    /// A frequency hash meeting the target FLOPs speed-up on the task's train + dev text.
    exit_table frequency_table(const split& train, const split& dev) const {
        packed_batch text = train.all(0, train.examples.size());
        for (const auto& e : dev.examples) text.push_back(e.ids, e.type_ids);
        return frequency_hash(m_.hash_setup_for(), text, target_speedup{o_.hash_target, &text, &m_.config(), kv_semantics::keep});
    }

    void sst2() {
        const std::string task = "SST-2";
        const split train = load(task, "train", {"sentence"}, false, o_.train_samples, true);
        const split dev = load(task, "dev", {"sentence"}, false, o_.limit);
        const auto opt = training();
        std::cerr << "hashee baselines: SST-2: features of " << train.examples.size() << " training sentences\n";
        const layer_features dense_features = features(train, no_exit{}, true);

        classifier_heads deebert(L_, pooler_, 2, false, o_.seed, o_.heads_read);
        train_deebert(deebert, dense_features, train.targets, opt);
        classifier_heads pabee(L_, pooler_, 2, true, o_.seed, o_.heads_read);
        train_pabee(pabee, dense_features, train.targets, opt);
        fastbert_heads fastbert(L_, m_.config().hidden_size, 2, o_.seed);
        train_fastbert(fastbert, dense_features, train.targets, opt);
        const auto berxit = std::make_shared<const exit_predictor>(train_berxit(deebert, dense_features, train.targets, opt));

        classify_row(task, "dense", "head L", dev, deebert, deebert, no_exit{});
        for (int k = 1; k < L_; ++k) classify_row(task, "static", "k=" + std::to_string(k), dev, deebert, deebert, static_exit{k});
        for (double s : {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.68})
            classify_row(task, "DeeBERT", "S=" + fixed(s, 2), dev, deebert, deebert, entropy_exit{s});
        for (double s : {0.2, 0.4, 0.6, 0.8, 0.9, 0.95})
            classify_row(task, "FastBERT", "speed=" + fixed(s, 2), dev, fastbert, deebert, fastbert_exit{s});
        for (int t : {1, 2, 3, 4})
            classify_row(task, "PABEE", "patience=" + std::to_string(t), dev, pabee, deebert, patience_exit{t});
        for (double c : {0.7, 0.75, 0.8, 0.85, 0.9})
            classify_row(task, "BERxiT", "confidence=" + fixed(c, 2), dev, deebert, deebert, learned_exit<exit_predictor>{berxit, c});

        // HashEE with the probe head of `hashee eval`: logistic regression on the mean-pooled
        // embeddings of the exiting model, trained on the same training examples.
        const hash_exit<> hashee(frequency_table(train, dev));
        {
            baseline_row row = named_row(task, "HashEE", "frequency " + fixed(o_.hash_target, 1) + "x");
            auto embed = [&](const std::vector<packed_batch>& bs, forward_cost* cost) {
                std::vector<float> emb;
                for (const auto& b : bs) {
                    const encoder_output out = m_.encoder().forward(backend_, b, hashee);
                    if (cost) *cost += out.cost;
                    const auto e = m_.pooling().apply(out);
                    emb.insert(emb.end(), e.begin(), e.end());
                }
                return emb;
            };
            const index_t d = m_.config().hidden_size;
            const auto train_emb = embed(train.batches(32), nullptr);
            std::vector<int> y(train.targets.begin(), train.targets.end());
            const auto probe = logistic_probe::train({train_emb.data(), static_cast<index_t>(y.size()), d}, y, 2,
                                                     {.epochs = 30, .learning_rate = 1e-2, .weight_decay = 1e-2, .seed = o_.seed, .standardize = false});
            forward_cost cost;
            const auto dev_emb = embed(dev.batches(32), &cost);
            const auto predicted = probe.predict({dev_emb.data(), static_cast<index_t>(dev.targets.size()), d});
            std::vector<int> truth(dev.targets.begin(), dev.targets.end());
            row.quality = 100 * accuracy(predicted, truth);
            row.flops_speedup = cost.flops_speedup();
            row.layers_per_token = cost.average_layers();
            row.note = "token-level exits only";
            std::tie(row.wall_b1, row.wall_b32) = wall_speedups(
                dev, [&](const packed_batch& b) { (void)classify(m_.encoder(), backend_, b, deebert, no_exit{}); },
                [&](const packed_batch& b) {
                    const auto e = m_.pooling().apply(m_.encoder().forward(backend_, b, hashee));
                    (void)probe.predict({e.data(), b.sequences(), d});
                });
            add(std::move(row));
        }

        // HashEE + entropy: heads trained on the hashed backbone's features (consistency).
        const layer_features hashed_features = features(train, hashee, false);
        classifier_heads hashed(L_, pooler_, 2, false, o_.seed, o_.heads_read);
        train_deebert(hashed, hashed_features, train.targets, opt);
        for (double s : {0.3, 0.5, 0.6})
            classify_row(task, "HashEE+entropy", "S=" + fixed(s, 2), dev, hashed, deebert,
                         composed_exit<hash_exit<>, entropy_exit>{hashee, entropy_exit{s}});
    }

    void stsb() {
        const std::string task = "STS-B";
        const split train = load(task, "train", {"sentence1", "sentence2"}, true, o_.train_samples, true);
        const split dev = load(task, "dev", {"sentence1", "sentence2"}, true, o_.limit);
        const auto opt = training();
        std::cerr << "hashee baselines: STS-B: features of " << train.examples.size() << " training pairs\n";
        const layer_features dense_features = features(train, no_exit{}, false);
        classifier_heads deebert(L_, pooler_, 1, false, o_.seed, o_.heads_read);
        train_deebert(deebert, dense_features, train.targets, opt);
        classifier_heads pabee(L_, pooler_, 1, true, o_.seed, o_.heads_read);
        train_pabee(pabee, dense_features, train.targets, opt);

        classify_row(task, "dense", "head L", dev, deebert, deebert, no_exit{});
        for (int k = 1; k < L_; ++k) classify_row(task, "static", "k=" + std::to_string(k), dev, deebert, deebert, static_exit{k});
        for (int t : {1, 2, 3})
            for (double tau : {0.1, 0.3})
                classify_row(task, "PABEE", "patience=" + std::to_string(t) + " tau=" + fixed(tau, 1), dev, pabee, deebert,
                             patience_exit{t, tau});
        const hash_exit<> hashee(frequency_table(train, dev));
        const layer_features hashed_features = features(train, hashee, false);
        classifier_heads hashed(L_, pooler_, 1, false, o_.seed, o_.heads_read);
        train_deebert(hashed, hashed_features, train.targets, opt);
        classify_row(task, "HashEE", "frequency " + fixed(o_.hash_target, 1) + "x", dev, hashed, deebert,
                     composed_exit<hash_exit<>, no_exit>{hashee, no_exit{}});
        for (const char* m : {"DeeBERT", "FastBERT", "BERxiT"})
        {
            baseline_row row = named_row(task, m, "—");
            row.note = "no regression variant (needs class probabilities)";
            rows_.push_back(std::move(row));
        }
    }

    baselines_options o_;
    const B& backend_;
    model<B> m_;
    int L_;
    dense_params pooler_;
    std::vector<baseline_row> rows_;
};

inline std::string baselines_markdown(const std::vector<baseline_row>& rows, const std::string& task, const std::string& quality_name) {
    std::string md = "| method | setting | " + quality_name +
                     " | FLOPs speed-up | wall speed-up, batch 1 | wall speed-up, batch 32 | layers per token | sentences answered at layer 1..L (%) |\n"
                     "|---|---|---|---|---|---|---|---|\n";
    char buf[600];
    for (const auto& r : rows) {
        if (r.task != task) continue;
        if (r.histogram.empty() && !r.note.empty() && r.quality == 0) {
            md += "| " + r.method + " | — | — | — | — | — | — | " + r.note + " |\n";
            continue;
        }
        std::string hist;
        for (double h : r.histogram) hist += (hist.empty() ? "" : " / ") + std::to_string(static_cast<int>(std::lround(100 * h)));
        std::snprintf(buf, sizeof buf, "| %s | %s | %.2f | %.2fx | %.2fx | %.2fx | %.2f | %s |\n", r.method.c_str(), r.setting.c_str(),
                      r.quality, r.flops_speedup, r.wall_b1, r.wall_b32, r.layers_per_token, hist.empty() ? r.note.c_str() : hist.c_str());
        md += buf;
    }
    return md;
}

inline plot::figure baselines_plot(const std::vector<baseline_row>& rows, const std::string& task, const std::string& y_label) {
    plot::figure fig{task + " dev: quality against FLOPs speed-up, frozen all-MiniLM-L6-v2", "FLOPs speed-up (dense / actual)", y_label, {}};
    std::map<std::string, plot::series> by_method;
    for (const auto& r : rows) {
        if (r.task != task || r.histogram.empty()) continue;
        auto& s = by_method[r.method];
        s.label = r.method;
        s.x.push_back(r.flops_speedup);
        s.y.push_back(r.quality);
        s.lines = r.method != "dense";
    }
    for (auto& [_, s] : by_method) fig.data.push_back(std::move(s));
    return fig;
}

/// Exit-layer histograms: one curve per method, at its setting closest to 2x FLOPs.
inline plot::figure exit_histogram_plot(const std::vector<baseline_row>& rows, const std::string& task) {
    plot::figure fig{task + " dev: exit layers (each method at its setting nearest 2x FLOPs)", "exit layer", "% of examples", {}};
    std::map<std::string, const baseline_row*> best;
    for (const auto& r : rows) {
        if (r.task != task || r.histogram.empty() || r.method == "dense") continue;
        auto& b = best[r.method];
        if (!b || std::abs(std::log(r.flops_speedup / 2.0)) < std::abs(std::log(b->flops_speedup / 2.0))) b = &r;
    }
    for (const auto& [method, r] : best) {
        plot::series s{method + " (" + r->setting + ")", {}, {}, true};
        for (std::size_t l = 0; l < r->histogram.size(); ++l) {
            s.x.push_back(static_cast<double>(l + 1));
            s.y.push_back(100 * r->histogram[l]);
        }
        fig.data.push_back(std::move(s));
    }
    return fig;
}

inline int run_baselines(const baselines_options& o, const std::string& command_line) {
    check_output_dir(o.out_dir);
    const auto rows = with_backend(o.backend, o.threads, [&](const auto& backend) {
        baselines<std::decay_t<decltype(backend)>> b(o, backend);
        return b.run();
    });
    const auto has = [&](const char* t) { return std::ranges::any_of(rows, [&](const baseline_row& r) { return r.task == t; }); };
    std::string md;
    if (has("SST-2")) md += "### SST-2 dev: accuracy x100\n\n" + baselines_markdown(rows, "SST-2", "accuracy") + "\n";
    if (has("STS-B")) md += "### STS-B dev: Spearman x100 (regression head)\n\n" + baselines_markdown(rows, "STS-B", "Spearman") + "\n";
    if (o.out_dir.empty()) {
        std::cout << md;
        return 0;
    }
    make_output_dir(o.out_dir);
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    output_file report(o.out_dir / "baselines.md");
    report.stream() << "# Early-exit baselines against HashEE (frozen all-MiniLM-L6-v2)\n\n"
                    << "Generated " << date << " by `" << command_line << "` (" << o.threads << " threads). "
                    << "Every method uses the same backbone, frozen, and the same head-training budget: "
                    << (o.train_samples ? std::to_string(o.train_samples) + " (drawn with the seed)" : std::string("all")) << " training examples, " << o.epochs << " epochs, minibatch " << o.batch_size
                    << ", AdamW at learning rate " << o.learning_rate << " (HashEE's probe: `hashee eval`'s logistic "
                    << "regression on the same examples). The pooler + linear heads and BERxiT's predictor read "
                    << (o.heads_read == head_input::mean ? "the mean of each layer's token states (the model was trained "
                                                           "for mean pooling; docs/early-exit.md says why not [CLS])"
                                                         : "each layer's [CLS] state")
                    << "; FastBERT's heads read every token. FLOPs speed-up counts every layer and internal classifier "
                    << "that ran over the whole dev set. Wall speed-up is the dense classifier's time over this "
                    << "method's, interleaved in one process over the first " << o.timing_samples
                    << " dev examples (" << o.timing_rounds << " rounds; a shared, noisy machine).\n\n"
                    << (has("SST-2") ? "![SST-2](baselines-sst2.svg)\n\n![SST-2 exit layers](baselines-sst2-exits.svg)\n\n" : "")
                    << (has("STS-B") ? "![STS-B](baselines-stsb.svg)\n\n" : "") << md;
    report.commit();
    if (has("SST-2")) {
        plot::write_svg(baselines_plot(rows, "SST-2", "accuracy x100"), o.out_dir / "baselines-sst2.svg");
        plot::write_svg(exit_histogram_plot(rows, "SST-2"), o.out_dir / "baselines-sst2-exits.svg");
    }
    if (has("STS-B")) plot::write_svg(baselines_plot(rows, "STS-B", "Spearman x100"), o.out_dir / "baselines-stsb.svg");
    std::cerr << "hashee baselines: wrote " << (o.out_dir / "baselines.md").string() << "\n";
    std::cout << md; // after the files: a failed write prints no table
    return 0;
}

} // namespace hashee::cli
