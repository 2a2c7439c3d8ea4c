#pragma once
// hashee eval: what HashEE does to a real model.
// A model with no fine-tuning (an encoder):
//  - STS-B dev: Spearman (x100) of the cosine similarity of the two sentences' embeddings,
//    dense against every hash at target FLOPs speed-ups, with keep and drop key/values.
//  - SST-2 dev: accuracy (x100) of a logistic-regression probe trained (here, in C++) on the
//    train-set embeddings of the same exiting model, dense against every hash.
// Hashes are built from the task's train + dev text (labels of train only, for mutual
// information); target speed-ups are met on that text. Writes a markdown report and plots.
// The probe does not standardise features (the embeddings are unit-normalised already): on the
// dense embeddings it then matches scikit-learn's LogisticRegression (74.5 to 76.1 for C = 100
// down to 0.1; this probe: 75.9).
// A fine-tuned classifier (`hashee finetune`'s output, a classifier in model.safetensors): its own
// predictions on the dev split of sst2, mrpc or stsb (pairs as one sequence), scored with the
// ELUE metrics (accuracy; MRPC the mean of accuracy and F1; STS-B the mean of Pearson and
// Spearman), dense against every hash, the same sweep.

#include <cstdio>
#include <ctime>
#include <map>

#include <hashee/eval/metrics.hpp>
#include <hashee/eval/probe.hpp>

#include <algorithm>
#include <cmath>

#include "cli_common.hpp"
#include "cli_finetune.hpp"
#include "svg_plot.hpp"

namespace hashee::cli {

struct eval_options {
    std::filesystem::path model_dir, elue_dir, out_dir;
    std::vector<std::string> tasks{"stsb", "sst2"};
    std::vector<std::string> policies{"frequency", "mutual_information", "clustering", "random", "random_inconsistent"};
    std::vector<double> targets{1.5, 2.0, 3.0};
    std::vector<std::string> kvs{"keep", "drop"};
    double sst2_target = 2.0;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    int batch_size = 32;
    std::size_t limit = 0; ///< use only this many examples of each split (0: all)
    std::uint64_t seed = 0;
    std::string backend = "eigen";
    std::string precision = "fp32"; ///< the encoder's products (fp32, bf16, int8; fp16 on CUDA)
};

struct eval_row {
    std::string task, method, kv;
    double target = 0; ///< 0: dense
    double flops_speedup = 1, layers = 0, quality = 0, seconds = 0, wall_speedup = 1;
    std::string note;  ///< why a row has no numbers
};

/// Every task, policy, key/value semantics and target is checked before anything runs: a bad one
/// is an error (C15, C16), never a note in a report.
inline void validate(const eval_options& o) {
    for (const auto& t : o.tasks)
        if (t != "stsb" && t != "sst2" && t != "mrpc") throw input_error("C11", "unknown task '" + t + "' (stsb, sst2; mrpc for fine-tuned models)");
    static const std::vector<std::string> known{"frequency", "mutual_information", "clustering", "random", "random_inconsistent"};
    for (const auto& p : o.policies)
        if (std::ranges::find(known, p) == known.end())
            throw input_error("C15", "--policies: unknown policy '" + p +
                                         "' (frequency, mutual_information, clustering, random, random_inconsistent)");
    for (const auto& kv : o.kvs)
        if (kv != "keep" && kv != "drop") throw input_error("C15", "--kv: '" + kv + "' is neither keep nor drop");
    std::vector<double> targets = o.targets;
    targets.push_back(o.sst2_target);
    for (const double x : targets)
        if (!std::isfinite(x) || x < 1 || x > 100)
            throw input_error("C16", "target speed-up " + std::to_string(x) + " is not a number from 1 to 100");
}

/// The sweep on backend B (--backend); cpu_ serves what runs on the host (the k-means of the
/// clustering hash).
template <class B>
class evaluator {
public:
    evaluator(const eval_options& o, const B& backend)
        : o_(o), backend_(backend), cpu_(o.threads), m_(model<B>::load(o.model_dir, backend)), setup_(m_.hash_setup_for()) {
        if (safetensors_file::open(o.model_dir / "model.safetensors").find("classifier.bias"))
            head_ = classifier_head::load(o.model_dir, m_.config().hidden_size);
    }

    /// Whether the model is a fine-tuned classifier (evaluated by its own predictions).
    bool fine_tuned() const { return head_.has_value(); }

    std::vector<eval_row> run() {
        for (const auto& t : o_.tasks) {
            if (head_) {
                if (t == "sst2") fine_tuned_task("SST-2", {"sentence"}, "label", "accuracy");
                else if (t == "mrpc") fine_tuned_task("MRPC", {"#1 String", "#2 String"}, "Quality", "accuracy_f1");
                else fine_tuned_task("STS-B", {"sentence1", "sentence2"}, "label", "pearson_spearman");
            } else if (t == "stsb") stsb();
            else if (t == "sst2") sst2();
            else throw input_error("C11", "task '" + t + "' needs a fine-tuned classifier (hashee finetune --task " + t + ")");
        }
        return rows_;
    }

private:
    struct embedded {
        std::vector<float> emb;
        forward_cost cost;
        double seconds = 0;
    };

    std::vector<packed_batch> batches(const std::vector<std::string>& texts) const {
        std::vector<text_input> in;
        in.reserve(texts.size());
        for (const auto& t : texts) in.push_back({t, std::nullopt});
        return packed_batches(m_.batches(in, {.max_sequences = static_cast<std::size_t>(o_.batch_size)}));
    }

    template <class Policy>
    embedded embed_all(const std::vector<packed_batch>& bs, const Policy& policy) const {
        embedded r;
        const auto t0 = clock_type::now();
        for (const auto& b : bs) {
            const encoder_output out = m_.encoder().forward(backend_, b, policy);
            r.cost += out.cost;
            const auto e = m_.pooling().apply(out);
            r.emb.insert(r.emb.end(), e.begin(), e.end());
        }
        r.seconds = seconds_since(t0);
        return r;
    }

    tsv_table load(const std::string& task, const std::string& split) const {
        auto t = tsv_table::load(o_.elue_dir / task / (split + ".tsv"));
        return t;
    }
    std::size_t limited(std::size_t n) const { return o_.limit ? std::min(n, o_.limit) : n; }

    /// Runs `quality(policy)` for the dense model and every policy / kv / target asked for.
    template <class Quality>
    void sweep(const std::string& task, const hash_corpus& text, const hash_corpus& labelled, const std::vector<double>& targets,
               Quality&& quality) {
        eval_row dense;
        dense.task = task;
        dense.method = "dense";
        dense.kv = "-";
        {
            const auto [q, e] = quality(no_exit{});
            dense.quality = q;
            dense.seconds = e.seconds;
            dense.layers = e.cost.average_layers();
        }
        rows_.push_back(dense);
        report(rows_.back());
        std::optional<word_clusters> clusters;
        for (const auto& policy : o_.policies)
            for (const auto& kvs : o_.kvs)
                for (const double target : targets) {
                    const kv_semantics kv = parse_kv_semantics(kvs, "--kv");
                    eval_row row;
                    row.task = task;
                    row.method = policy;
                    row.kv = kvs;
                    row.target = target;
                    try {
                        const bucketing b = target_speedup{target, &text.tokens, &m_.config(), kv};
                        const hash_kind kind = parse_hash_kind(policy);
                        const bool inconsistent = !is_consistent(kind);
                        const hash_corpus& rank_corpus = kind == hash_kind::mutual_information ? labelled : text;
                        if (kind == hash_kind::mutual_information && rank_corpus.labels.empty())
                            throw input_error("C08", "the mutual_information hash needs labels (--label-column)");
                        exit_table table = build_exit_table(
                            inconsistent ? hash_kind::random : kind, setup_, b,
                            {.corpus = &rank_corpus.tokens, .labels = rank_corpus.labels,
                             .word_embeddings = m_.encoder().weights().embeddings().word, .cpu = &cpu_, .seed = o_.seed,
                             .clusters = &clusters});
                        const auto measure = [&](const auto& exit_policy) {
                            const auto [q, e] = quality(exit_policy);
                            row.quality = q;
                            row.seconds = e.seconds;
                            row.flops_speedup = e.cost.flops_speedup();
                            row.layers = e.cost.average_layers();
                            row.wall_speedup = dense.seconds / e.seconds;
                        };
                        if (inconsistent)
                            with_hash_exit(random_inconsistent_hash::like(table, setup_, text.tokens, o_.seed + 1), kv,
                                           measure);
                        else
                            with_hash_exit(std::move(table), kv, measure);
                    } catch (const input_error& e) {
                        // only a target out of the hash's reach (E24) is a note
                        if (e.id() != "E24" && std::string_view(e.what()).find("is out of reach") == std::string_view::npos) throw;
                        row.note = e.what();
                    }
                    rows_.push_back(row);
                    report(rows_.back());
                }
    }

    void stsb() {
        const auto train = load("STS-B", "train"), dev = load("STS-B", "dev");
        hash_corpus text, labelled;
        const auto train_in = read_tsv_columns(train, {"sentence1", "sentence2"}),
                   dev_in = read_tsv_columns(dev, {"sentence1", "sentence2"});
        const auto train_labels = read_labels(train, "label");
        text.add(m_.tokenizer(), train_in);
        text.add(m_.tokenizer(), dev_in);
        labelled.add(m_.tokenizer(), train_in, &train_labels);
        const std::size_t n = limited(dev.size());
        std::vector<std::string> sentences;
        std::vector<double> gold;
        const std::vector<double> dev_scores = read_scores(dev, "label");
        for (std::size_t i = 0; i < n; ++i) sentences.push_back(dev_in.first[i]);
        for (std::size_t i = 0; i < n; ++i) sentences.push_back(*dev_in.second[i]);
        for (std::size_t i = 0; i < n; ++i) gold.push_back(dev_scores[i]);
        const auto bs = batches(sentences);
        const auto d = static_cast<std::size_t>(m_.config().hidden_size);
        sweep("STS-B", text, labelled, o_.targets, [&](const auto& policy) {
            embedded e = embed_all(bs, policy);
            std::vector<double> sim(n);
            for (std::size_t i = 0; i < n; ++i)
                sim[i] = cosine(std::span<const float>(e.emb.data() + i * d, d), std::span<const float>(e.emb.data() + (n + i) * d, d));
            return std::pair{100 * spearman(sim, gold), std::move(e)};
        });
    }

    void sst2() {
        const auto train = load("SST-2", "train"), dev = load("SST-2", "dev");
        const auto train_in = read_tsv_columns(train, {"sentence"}), dev_in = read_tsv_columns(dev, {"sentence"});
        const auto train_labels = read_labels(train, "label"), dev_labels = read_labels(dev, "label");
        hash_corpus text, labelled;
        text.add(m_.tokenizer(), train_in);
        text.add(m_.tokenizer(), dev_in);
        labelled.add(m_.tokenizer(), train_in, &train_labels);
        const std::size_t nt = limited(train.size()), nd = limited(dev.size());
        std::vector<std::string> sentences(train_in.first.begin(), train_in.first.begin() + static_cast<std::ptrdiff_t>(nt));
        sentences.insert(sentences.end(), dev_in.first.begin(), dev_in.first.begin() + static_cast<std::ptrdiff_t>(nd));
        const std::vector<int> y_train(train_labels.begin(), train_labels.begin() + static_cast<std::ptrdiff_t>(nt)),
            y_dev(dev_labels.begin(), dev_labels.begin() + static_cast<std::ptrdiff_t>(nd));
        const auto bs = batches(sentences);
        const auto d = static_cast<index_t>(m_.config().hidden_size);
        sweep("SST-2", text, labelled, {o_.sst2_target}, [&](const auto& policy) {
            embedded e = embed_all(bs, policy);
            const auto probe = logistic_probe::train({e.emb.data(), static_cast<index_t>(nt), d}, y_train, 2,
                                                     {.epochs = 30, .learning_rate = 1e-2, .weight_decay = 1e-2, .seed = o_.seed, .standardize = false});
            const auto predicted = probe.predict({e.emb.data() + nt * static_cast<std::size_t>(d), static_cast<index_t>(nd), d});
            return std::pair{100 * accuracy(predicted, y_dev), std::move(e)};
        });
    }

    /// A fine-tuned classifier on a task's dev split: its logits (or score), the ELUE metric x100.
    void fine_tuned_task(const std::string& task, const std::vector<std::string>& columns, const std::string& label,
                         const std::string& metric) {
        if (head_->regression != (metric == "pearson_spearman"))
            throw input_error("C11", o_.model_dir.string() + ": a " + (head_->regression ? "regression" : "classification") +
                                         " model cannot be scored on " + task);
        const auto train = load(task, "train"), dev = load(task, "dev");
        const auto train_in = read_tsv_columns(train, columns), dev_in = read_tsv_columns(dev, columns);
        hash_corpus text, labelled;
        text.add(m_.tokenizer(), train_in);
        text.add(m_.tokenizer(), dev_in);
        if (!head_->regression) {
            const auto train_labels = read_labels(train, label);
            labelled.add(m_.tokenizer(), train_in, &train_labels);
        }
        const std::vector<double> gold_all = head_->regression ? read_scores(dev, label) : [&] {
            const auto ints = read_labels(dev, label);
            return std::vector<double>(ints.begin(), ints.end());
        }();
        const std::size_t n = limited(dev.size());
        const std::vector<double> gold(gold_all.begin(), gold_all.begin() + static_cast<std::ptrdiff_t>(n));
        std::vector<text_input> in;
        for (std::size_t i = 0; i < n; ++i) in.push_back(dev_in.at(i));
        const auto bs = packed_batches(m_.batches(in, {.max_sequences = static_cast<std::size_t>(o_.batch_size)}));
        const index_t d = m_.config().hidden_size;
        const int labels = head_->labels();
        sweep(task, text, labelled, task == "SST-2" ? std::vector<double>{o_.sst2_target} : o_.targets, [&](const auto& policy) {
            embedded e;
            std::vector<double> outputs;
            const auto t0 = clock_type::now();
            for (const auto& b : bs) {
                const encoder_output out = m_.encoder().forward(backend_, b, policy);
                e.cost += out.cost;
                for (index_t s = 0; s < b.sequences(); ++s)
                    for (int c = 0; c < labels; ++c) {
                        double z = head_->bias[static_cast<std::size_t>(c)];
                        for (index_t j = 0; j < d; ++j)
                            z += static_cast<double>(head_->weight[static_cast<std::size_t>(c * d + j)]) *
                                 out.pooled[static_cast<std::size_t>(s * d + j)];
                        outputs.push_back(z);
                    }
            }
            e.seconds = seconds_since(t0);
            return std::pair{100 * dev_metric(metric, outputs, labels, gold), std::move(e)};
        });
    }

    static void report(const eval_row& r) {
        char buf[400];
        if (!r.note.empty())
            std::snprintf(buf, sizeof buf, "hashee eval: %s %s %s %.1fx: %s\n", r.task.c_str(), r.method.c_str(), r.kv.c_str(),
                          r.target, r.note.c_str());
        else
            std::snprintf(buf, sizeof buf, "hashee eval: %-6s %-19s %-4s target %.1fx: FLOPs %.2fx, %.2f layers/token, "
                          "quality %.2f, %.2f s (wall %.2fx)\n",
                          r.task.c_str(), r.method.c_str(), r.kv.c_str(), r.target, r.flops_speedup, r.layers, r.quality,
                          r.seconds, r.wall_speedup);
        std::cerr << buf;
    }

    eval_options o_;
    std::optional<classifier_head> head_;
    const B& backend_;
    eigen_cpu cpu_;
    model<B> m_;
    hash_setup setup_;
    std::vector<eval_row> rows_;
};

inline std::string results_markdown(const std::vector<eval_row>& rows, const std::string& task, const std::string& quality_name) {
    std::string md = "| method | K/V | target | FLOPs speed-up | layers/token | " + quality_name +
                     " | time (s) | wall speed-up |\n|---|---|---|---|---|---|---|---|\n";
    char buf[400];
    for (const auto& r : rows) {
        if (r.task != task) continue;
        if (!r.note.empty())
            std::snprintf(buf, sizeof buf, "| %s | %s | %.1fx | — | — | — | — | — (%s) |\n", r.method.c_str(), r.kv.c_str(),
                          r.target, r.note.c_str());
        else
            std::snprintf(buf, sizeof buf, "| %s | %s | %s | %.2fx | %.2f | %.2f | %.2f | %.2fx |\n", r.method.c_str(),
                          r.kv.c_str(), r.target > 0 ? (std::to_string(r.target).substr(0, 3) + "x").c_str() : "—",
                          r.flops_speedup, r.layers, r.quality, r.seconds, r.wall_speedup);
        md += buf;
    }
    return md;
}

inline plot::figure quality_plot(const std::vector<eval_row>& rows, const std::string& task, const std::string& y_label,
                                 const std::string& model_note = "all-MiniLM-L6-v2 without fine-tuning") {
    plot::figure fig{task + " dev, " + model_note, "FLOPs speed-up (dense / actual)", y_label, {}};
    std::map<std::string, plot::series> by_method;
    for (const auto& r : rows) {
        if (r.task != task || !r.note.empty()) continue;
        const std::string key = r.target == 0 ? "dense" : r.method + " (" + r.kv + ")";
        auto& s = by_method[key];
        s.label = key;
        s.x.push_back(r.flops_speedup);
        s.y.push_back(r.quality);
    }
    for (auto& [_, s] : by_method) fig.data.push_back(std::move(s));
    return fig;
}

inline int run_eval(const eval_options& o, const std::string& command_line) {
    check_output_dir(o.out_dir);
    validate(o);
    const auto rows = with_backend(o.backend, o.threads, parse_precision(o.precision), [&](const auto& backend) {
        evaluator<std::decay_t<decltype(backend)>> ev(o, backend);
        return ev.run();
    });
    const bool tuned = safetensors_file::open(o.model_dir / "model.safetensors").find("classifier.bias") != nullptr;
    auto has = [&](const char* task) { return std::ranges::any_of(rows, [&](const eval_row& r) { return r.task == task; }); };
    // task, heading, quality column, plot axis, plot file
    struct section {
        const char *task, *heading, *quality, *axis, *svg;
    };
    const std::vector<section> sections =
        tuned ? std::vector<section>{{"SST-2", "SST-2 dev: the fine-tuned classifier's accuracy x100", "accuracy", "accuracy x100", "hashee-sst2.svg"},
                                     {"MRPC", "MRPC dev: the fine-tuned classifier's (accuracy + F1) / 2 x100", "(acc + F1) / 2", "(accuracy + F1) / 2 x100", "hashee-mrpc.svg"},
                                     {"STS-B", "STS-B dev: the fine-tuned regressor's (Pearson + Spearman) / 2 x100", "(Pearson + Spearman) / 2", "(Pearson + Spearman) / 2 x100", "hashee-stsb.svg"}}
              : std::vector<section>{{"STS-B", "STS-B dev: Spearman x100 of cosine similarity", "Spearman", "Spearman x100", "hashee-stsb.svg"},
                                     {"SST-2", "SST-2 dev: logistic-regression probe accuracy x100", "accuracy", "accuracy x100", "hashee-sst2.svg"}};
    std::string md, figures;
    for (const section& sec : sections)
        if (has(sec.task)) {
            md += std::string("### ") + sec.heading + "\n\n" + results_markdown(rows, sec.task, sec.quality) + "\n";
            figures += std::string("![") + sec.task + "](" + sec.svg + ")\n\n";
        }
    if (!o.out_dir.empty()) {
        make_output_dir(o.out_dir);
        char date[32];
        const std::time_t now = std::time(nullptr);
        std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
        output_file report(o.out_dir / "hashee-results.md");
        report.stream() << (tuned ? "# HashEE on a fine-tuned classifier (" + o.model_dir.string() + ")\n\n" : std::string("# HashEE on all-MiniLM-L6-v2 (no fine-tuning)\n\n"))
                        << "Generated " << date << " by `" << command_line << "` (" << o.threads << " threads, batch "
                        << o.batch_size << ", " << o.precision << " products). FLOPs speed-up is dense FLOPs / FLOPs that ran, counted from the shapes of "
                        << "each forward over the whole dev set; wall speed-up is the dense run's time / this run's time, "
                        << "measured in the same process (a shared, noisy machine: see bench/ for careful timings). "
                        << "Targets the hash cannot reach on the task's text are marked with the reason.\n\n"
                        << figures << md;
        report.commit();
        for (const section& sec : sections)
            if (has(sec.task))
                plot::write_svg(quality_plot(rows, sec.task, sec.axis, tuned ? "fine-tuned" : "all-MiniLM-L6-v2 without fine-tuning"),
                                o.out_dir / sec.svg);
        std::cerr << "hashee eval: wrote " << (o.out_dir / "hashee-results.md").string() << "\n";
    }
    std::cout << md; // after the files: a failed write prints no table
    return 0;
}

} // namespace hashee::cli
