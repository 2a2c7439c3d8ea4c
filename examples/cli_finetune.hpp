#pragma once
// hashee finetune: fine-tunes a Hugging Face BERT encoder on an ELUE task or any TSV, dense,
// keeping the best epoch on dev as a Hugging Face model directory; periodic training states
// make a killed run resumable (--resume) bit for bit.
// hashee predict: a fine-tuned classifier's predictions as JSON lines.

#include <cstdio>
#include <map>

#include <sys/resource.h>

#include <hashee/train/checkpoint.hpp>
#include <hashee/train/finetune.hpp>

#include "cli_common.hpp"

namespace hashee::cli {

struct finetune_cli_options {
    std::filesystem::path model_dir, train, dev, out, elue_dir;
    std::string task, objective, label_column, backend = "eigen";
    std::vector<std::string> text_columns;
    int epochs = 3, batch_size = 32, micro_batch = 0, max_length = 128, num_labels = 0;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    double lr = 5e-5, warmup_ratio = 0.1;
    std::uint64_t seed = 0;
    std::size_t limit = 0, dev_limit = 0;
    long checkpoint_every = 0;
    bool resume = false, quiet = false;
};

/// The ELUE presets (files under --elue, columns, labels, the default objective and the dev
/// metric: accuracy; MRPC the mean of accuracy and F1; STS-B the mean of Pearson and Spearman).
struct task_spec {
    std::filesystem::path train, dev;
    std::vector<std::string> columns;
    std::string label;
    objective task = objective::classify;
    std::string metric = "accuracy"; ///< accuracy, accuracy_f1 or pearson_spearman
    double score_scale = 1;          ///< cosine targets are score / score_scale
};

inline task_spec resolve_task(const finetune_cli_options& o) {
    task_spec t;
    if (!o.task.empty()) {
        const std::map<std::string, std::pair<std::string, task_spec>> presets{
            {"sst2", {"SST-2", {{}, {}, {"sentence"}, "label", objective::classify, "accuracy", 1}}},
            {"mrpc", {"MRPC", {{}, {}, {"#1 String", "#2 String"}, "Quality", objective::classify, "accuracy_f1", 1}}},
            {"stsb", {"STS-B", {{}, {}, {"sentence1", "sentence2"}, "label", objective::regress, "pearson_spearman", 5}}}};
        const auto it = presets.find(o.task);
        if (it == presets.end()) throw input_error("E88", "--task must be sst2, mrpc or stsb, not '" + o.task + "'");
        t = it->second.second;
        t.train = o.elue_dir / it->second.first / "train.tsv";
        t.dev = o.elue_dir / it->second.first / "dev.tsv";
    } else {
        if (o.train.empty()) throw input_error("E88", "give --task, or --train with --text-column and --label-column");
        if (o.text_columns.empty() || o.text_columns.size() > 2) throw input_error("E88", "give one --text-column, or two for pairs");
        if (o.label_column.empty()) throw input_error("E88", "--train needs --label-column");
        t.train = o.train;
        t.columns = o.text_columns;
        t.label = o.label_column;
    }
    if (!o.dev.empty()) t.dev = o.dev;
    if (!o.objective.empty()) t.task = parse_objective(o.objective);
    if (o.task.empty()) t.metric = t.task == objective::classify ? "accuracy" : "pearson_spearman";
    if (t.task == objective::cosine && t.columns.size() != 2) throw input_error("E88", "--objective cosine needs pairs (two text columns)");
    return t;
}

/// A TSV split tokenised for the objective, its targets, and its raw labels (for the metric).
struct task_split {
    training_set data;
    std::vector<double> labels;
};

inline task_split read_split(const std::filesystem::path& file, const task_spec& t, const wordpiece_tokenizer& tok,
                             std::size_t max_length, std::size_t limit) {
    const tsv_table table = tsv_table::load(file);
    const input_set in = read_tsv_columns(table, t.columns);
    task_split s;
    s.labels = t.task == objective::classify ? [&] {
        const auto ints = read_labels(table, t.label);
        return std::vector<double>(ints.begin(), ints.end());
    }() : read_scores(table, t.label);
    const std::size_t n = limit > 0 ? std::min(limit, in.size()) : in.size();
    s.labels.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (t.task == objective::cosine) {
            s.data.first.push_back(tok.encode(in.first[i], std::nullopt, max_length));
            s.data.second.push_back(tok.encode(*in.second[i], std::nullopt, max_length));
            s.data.targets.push_back(s.labels[i] / t.score_scale);
        } else {
            const auto second = in.second[i] ? std::optional<std::string_view>(*in.second[i]) : std::nullopt;
            s.data.first.push_back(tok.encode(in.first[i], second, max_length));
            s.data.targets.push_back(s.labels[i]);
        }
    }
    return s;
}

/// The dev metric from the model's outputs (logits [n, labels], or a score per example).
inline double dev_metric(const std::string& metric, const std::vector<double>& outputs, int labels, const std::vector<double>& truth) {
    if (metric == "pearson_spearman") return (pearson(outputs, truth) + spearman(outputs, truth)) / 2;
    std::vector<int> predicted, gold;
    for (std::size_t i = 0; i < truth.size(); ++i) {
        const auto row = outputs.begin() + static_cast<std::ptrdiff_t>(i) * labels;
        predicted.push_back(static_cast<int>(std::max_element(row, row + labels) - row));
        gold.push_back(static_cast<int>(truth[i]));
    }
    const double acc = accuracy(predicted, gold);
    return metric == "accuracy_f1" ? (acc + f1_binary(predicted, gold)) / 2 : acc;
}

/// Forward only over a split, 64 examples (pairs) at a time: logits or scores.
template <class B>
std::vector<double> run_split(const trainable_bert<B, float>& m, const training_set& data, objective task) {
    std::vector<double> out;
    for (std::size_t b0 = 0; b0 < data.size(); b0 += 64) {
        packed_batch batch;
        for (std::size_t i = b0; i < std::min(data.size(), b0 + 64); ++i) {
            batch.push_back(data.first[i].ids, data.first[i].type_ids);
            if (task == objective::cosine) batch.push_back(data.second[i].ids, data.second[i].type_ids);
        }
        const std::vector<double> part = m.infer(batch, no_exit{});
        out.insert(out.end(), part.begin(), part.end());
    }
    return out;
}

/// This process's peak resident memory, in MiB.
inline double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

inline std::string duration(double seconds) {
    char buf[32];
    const long s = static_cast<long>(seconds);
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
    return buf;
}

template <class B>
int finetune_with(const finetune_cli_options& o, const B& backend, const std::string& command_line) {
    const task_spec spec = resolve_task(o);
    check_output_dir(o.out);
    const auto tok = wordpiece_tokenizer::from_directory(o.model_dir);
    const auto max_length = static_cast<std::size_t>(o.max_length);
    const task_split train = read_split(spec.train, spec, tok, max_length, o.limit);
    std::optional<task_split> dev;
    if (!spec.dev.empty()) dev = read_split(spec.dev, spec, tok, max_length, o.dev_limit);
    if (train.data.size() == 0) throw input_error("E88", spec.train.string() + ": the training set is empty");

    // The model: a new classifier (its labels from the training set, or --num-labels), or the
    // encoder alone for the cosine objective.
    const bert_config config = bert_config::load(o.model_dir / "config.json");
    const nlohmann::json config_json = detail::read_json_file(o.model_dir / "config.json");
    const auto weights = safetensors_file::open(o.model_dir / "model.safetensors");
    int labels = 0;
    if (spec.task == objective::regress) labels = 1;
    if (spec.task == objective::classify) {
        double top = 0;
        for (const double y : train.labels) top = std::max(top, y);
        labels = o.num_labels > 0 ? o.num_labels : std::max(2, static_cast<int>(top) + 1);
        for (const task_split* split : std::initializer_list<const task_split*>{&train, dev ? &*dev : nullptr})
            if (split)
                for (std::size_t i = 0; i < split->labels.size(); ++i)
                    if (split->labels[i] >= labels)
                        throw input_error("E28", "label " + std::to_string(static_cast<int>(split->labels[i])) + " of example " +
                                                     std::to_string(i) + " is outside the " + std::to_string(labels) + " classes" +
                                                     (o.num_labels > 0 ? " of --num-labels" : " of the training set"));
    }
    auto model = spec.task == objective::cosine
                     ? trainable_bert<B, float>::load_encoder(weights, config, backend)
                     : trainable_bert<B, float>::load_with_new_head(
                           weights, config, labels, backend,
                           trainable_bert<B, float>::random_classifier(labels, config.hidden_size, o.seed,
                                                                       config_json.value("initializer_range", 0.02)));
    finetune_options fo;
    fo.task = spec.task;
    fo.epochs = o.epochs;
    fo.learning_rate = o.lr;
    fo.batch_size = o.batch_size;
    fo.micro_batch = o.micro_batch;
    fo.seed = o.seed;
    fo.warmup_ratio = o.warmup_ratio;
    fo.hidden_dropout = config_json.value("hidden_dropout_prob", 0.1);
    fo.attention_dropout = config_json.value("attention_probs_dropout_prob", 0.1);
    finetuner<B> tuner(model, train.data, fo, backend);

    make_output_dir(o.out);
    const auto state_dir = o.out / "training-state";
    nlohmann::json history = nlohmann::json::array();
    double best = -1e300;
    int best_epoch = -1;
    if (o.resume) {
        if (!std::filesystem::exists(state_dir / "state.json"))
            throw input_error("E89", (state_dir / "state.json").string() + ": no training state to resume (run without --resume)");
        const nlohmann::json extra = tuner.restore_state(state_dir);
        history = extra.value("history", nlohmann::json::array());
        best = extra.value("best", -1e300);
        best_epoch = extra.value("best_epoch", -1);
        if (!o.quiet) std::cerr << "hashee: resumed at step " << tuner.steps_done() << "/" << tuner.total_steps() << "\n";
    }
    const checkpoint_labels names = [&] {
        checkpoint_labels l;
        l.regression = spec.task == objective::regress;
        for (int c = 0; c < labels && !l.regression; ++c) l.names.push_back(std::to_string(c));
        return l;
    }();
    auto save_state = [&] {
        tuner.save_state(state_dir, {{"history", history}, {"best", best}, {"best_epoch", best_epoch}});
    };
    if (!o.quiet)
        std::cerr << "hashee: fine-tuning " << o.model_dir.string() << " (" << to_string(spec.task) << ") on " << train.data.size()
                  << " examples, " << o.epochs << " epochs of " << tuner.steps_per_epoch() << " steps, batch " << o.batch_size
                  << ", lr " << o.lr << ", seed " << o.seed << ", " << o.threads << " threads\n";
    const auto t0 = clock_type::now();
    const long start_step = tuner.steps_done();
    std::size_t examples = 0;
    double epoch_loss = 0;
    long epoch_steps = 0;
    const long report_every = std::max<long>(1, tuner.total_steps() / 100);
    double step_seconds = 0, epoch_seconds = 0; // training alone, without the dev evaluations and saves
    while (!tuner.done()) {
        const auto ts = clock_type::now();
        const finetune_progress p = tuner.step();
        step_seconds += seconds_since(ts);
        epoch_seconds += seconds_since(ts);
        examples += p.examples;
        epoch_loss += p.loss;
        ++epoch_steps;
        if (!o.quiet && (p.step % report_every == 0 || p.epoch_end)) {
            const double s = seconds_since(t0), rate = static_cast<double>(examples) / step_seconds;
            const double eta = s / static_cast<double>(p.step - start_step) * static_cast<double>(p.total_steps - p.step);
            char buf[200];
            std::snprintf(buf, sizeof buf, "hashee: step %ld/%ld  epoch %d  loss %.4f  lr %.2e  %.1f examples/s  ETA %s\n", p.step,
                          p.total_steps, p.epoch + 1, p.loss, p.learning_rate, rate, duration(eta).c_str());
            std::cerr << buf;
        }
        if (p.epoch_end) {
            nlohmann::json row{{"epoch", p.epoch + 1}, {"train_loss", epoch_loss / static_cast<double>(epoch_steps)},
                               {"seconds", epoch_seconds}};
            double metric = p.epoch; // without dev, the last epoch is kept
            if (dev) {
                metric = dev_metric(spec.metric, run_split(model, dev->data, spec.task), std::max(labels, 1), dev->labels);
                row["dev_" + spec.metric] = metric;
            }
            history.push_back(row);
            const bool improved = metric > best;
            if (improved) {
                best = metric;
                best_epoch = p.epoch + 1;
                save_pretrained(model, backend, o.model_dir, o.out, names);
            }
            if (!o.quiet) {
                std::cerr << "hashee: epoch " << p.epoch + 1 << ": train loss " << row["train_loss"].get<double>();
                if (dev) std::cerr << ", dev " << spec.metric << " " << metric << (improved ? " (best, saved)" : "");
                std::cerr << "\n";
            }
            epoch_loss = 0, epoch_steps = 0, epoch_seconds = 0;
            if (!tuner.done()) save_state();
        } else if (o.checkpoint_every > 0 && p.step % o.checkpoint_every == 0) {
            save_state();
        }
    }
    const double seconds = seconds_since(t0);
    const nlohmann::json summary{{"command", command_line}, {"objective", to_string(spec.task)}, {"metric", spec.metric},
                                 {"history", history}, {"best_epoch", best_epoch}, {"best", best},
                                 {"train_examples", train.data.size()}, {"steps", tuner.total_steps()},
                                 {"seconds_this_run", seconds}, {"train_examples_per_s", static_cast<double>(examples) / step_seconds},
                                 {"peak_rss_mb", peak_rss_mb()}, {"threads", o.threads}, {"backend", o.backend}};
    detail::write_file_atomically(o.out / "hashee_finetune.json", summary.dump(2) + "\n");
    std::error_code ec;
    std::filesystem::remove_all(state_dir, ec); // the run is complete: nothing to resume
    if (!o.quiet)
        std::cerr << "hashee: done in " << duration(seconds) << "; best epoch " << best_epoch << " saved to " << o.out.string() << "\n";
    return 0;
}

inline int run_finetune(const finetune_cli_options& o, const std::string& command_line) {
    return with_backend(o.backend, o.threads, gemm_precision::fp32,
                        [&](const auto& backend) { return finetune_with(o, backend, command_line); });
}

struct predict_options {
    std::filesystem::path model_dir, input, tsv, output;
    std::vector<std::string> columns;
    std::string backend = "eigen";
    int batch_size = 32, max_length = 0;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
};

/// A fine-tuned classifier's head as config.json and the checkpoint describe it.
struct classifier_head {
    std::vector<float> weight, bias; ///< [labels, d], [labels]
    std::vector<std::string> names;  ///< id2label
    bool regression = false;
    int labels() const { return static_cast<int>(bias.size()); }

    static classifier_head load(const std::filesystem::path& dir, index_t hidden) {
        classifier_head h;
        const auto f = safetensors_file::open(dir / "model.safetensors");
        const tensor_info* b = f.find("classifier.bias");
        if (!b || b->shape.size() != 1)
            throw weight_error("E07", (dir / "model.safetensors").string() +
                                          ": no classifier ('classifier.bias'): not a fine-tuned classifier (hashee embed reads encoders)");
        const std::int64_t labels = b->shape[0];
        std::vector<float> storage;
        const auto w = f.floats(f.expect("classifier.weight", {labels, hidden}), storage);
        h.weight.assign(w.begin(), w.end());
        const auto bb = f.floats(*b, storage);
        h.bias.assign(bb.begin(), bb.end());
        const nlohmann::json config = detail::read_json_file(dir / "config.json");
        h.regression = config.value("problem_type", "") == "regression" || labels == 1;
        for (std::int64_t c = 0; c < labels; ++c) {
            const auto key = std::to_string(c);
            h.names.push_back(config.contains("id2label") && config["id2label"].contains(key) && config["id2label"][key].is_string()
                                  ? config["id2label"][key].get<std::string>()
                                  : key);
        }
        return h;
    }
};

inline int run_predict(const predict_options& o) {
    const input_set in = !o.tsv.empty() ? read_tsv_columns(tsv_table::load(o.tsv), o.columns)
                                        : read_lines(o.input == "-" ? read_stream(std::cin, "stdin") : read_file(o.input),
                                                     o.input == "-" ? "stdin" : o.input.string());
    if (in.size() == 0) throw input_error("C04", in.source + ": no input lines");
    return with_backend(o.backend, o.threads, gemm_precision::fp32, [&](const auto& backend) {
        using B = std::decay_t<decltype(backend)>;
        const auto m = model<B>::load(o.model_dir, backend);
        const index_t d = m.config().hidden_size;
        const classifier_head head = classifier_head::load(o.model_dir, d);
        std::vector<text_input> inputs;
        for (std::size_t i = 0; i < in.size(); ++i) inputs.push_back(in.at(i));
        const input_source source{in.source, {}};
        const std::size_t max_length = o.max_length > 0 ? static_cast<std::size_t>(o.max_length) : m.tokenizer().options().max_length;
        output_file out(o.output);
        nlohmann::json line;
        for (const input_batch& batch :
             m.batches(inputs, {.max_sequences = static_cast<std::size_t>(o.batch_size), .max_length = max_length}, &source)) {
            const encoder_output eo = with_input_context(batch, &source, [&] { return m.encoder().forward(backend, batch.tokens); });
            if (eo.pooled.empty()) throw weight_error("E07", (o.model_dir / "model.safetensors").string() + ": no pooler: not a fine-tuned classifier");
            for (std::size_t k = 0; k < batch.size(); ++k) {
                std::vector<double> z(static_cast<std::size_t>(head.labels()));
                for (int c = 0; c < head.labels(); ++c) {
                    double s = head.bias[static_cast<std::size_t>(c)];
                    for (index_t j = 0; j < d; ++j)
                        s += static_cast<double>(head.weight[static_cast<std::size_t>(c * d + j)]) * eo.pooled[k * static_cast<std::size_t>(d) + static_cast<std::size_t>(j)];
                    z[static_cast<std::size_t>(c)] = s;
                }
                line = nlohmann::json::object();
                line["index"] = batch.inputs[k];
                if (head.regression) {
                    line["score"] = z[0];
                } else {
                    line["logits"] = z;
                    const double top = *std::max_element(z.begin(), z.end());
                    double sum = 0;
                    for (double& v : z) sum += (v = std::exp(v - top));
                    for (double& v : z) v /= sum;
                    const auto best = static_cast<std::size_t>(std::max_element(z.begin(), z.end()) - z.begin());
                    line["label"] = head.names[best];
                    line["score"] = z[best];
                    line["probabilities"] = z;
                }
                out.stream() << line.dump() << '\n';
            }
        }
        out.commit();
        return 0;
    });
}

} // namespace hashee::cli
