// hashee: the command-line front of the library.
//
//   hashee embed --model DIR [--input FILE | --tsv FILE --column NAME [--column NAME]]
//                [--exit TABLE [--kv keep|drop]] [--output FILE] [--batch-size N] [--threads N]
//                [--backend B] [--precision fp32|bf16|int8|fp16]
//   hashee hash build --model DIR --policy P [--corpus TSV --column NAME... [--label-column L]]
//                [--buckets B | --target X [--kv keep|drop]] [--seed S] --out TABLE
//   hashee eval --model DIR [--elue DIR] [--tasks stsb,sst2 | sst2,mrpc,stsb for a fine-tuned model] [--policies ...] [--targets 1.5,2,3]
//                [--kv keep,drop] [--backend B] [--precision fp32|bf16|int8|fp16] [--out DIR]
//   hashee finetune --model DIR (--task sst2|mrpc|stsb | --train TSV --text-column C [--text-column C2] --label-column L)
//                [--dev TSV] [--objective classify|regress|cosine] [--epochs E] [--lr X] [--batch-size B] [--seed S]
//                --out DIR [--resume] [--checkpoint-every N]
//   hashee predict --model DIR (--tsv FILE --column C [--column C2] | --input FILE) [--output FILE]
//   hashee baselines --model DIR [--elue DIR] [--tasks sst2,stsb] [--train-samples N] [--epochs E] [--heads-read mean|cls]
//                [--out DIR]
//
// Every failure (a bad option too) exits with status 1 and prints `hashee: error: [ID] message`
// (ids: docs/errors.md), naming the file and line; outputs are written atomically (a temporary
// file renamed into place) and output to stdout is held until the run succeeds, so a failed run
// leaves no partial output. --help exits 0.

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string_view>
#include <iostream>

#include <CLI/CLI.hpp>

#include "baselines.hpp"
#include "cli_embed.hpp"
#include "cli_finetune.hpp"
#include "eval.hpp"
#include "cli_hash.hpp"

namespace {
/// Rejects nan and inf, which CLI::Range lets through (every comparison with nan is false).
const CLI::Validator finite_number(
    [](std::string& v) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || !std::isfinite(x)) return "'" + v + "' is not a finite number";
        return {};
    },
    "FINITE");

int fail(std::string_view id, const std::string& message) {
    std::cerr << "hashee: error: [" << id << "] " << message << '\n';
    return 1;
}
} // namespace

int main(int argc, char** argv) {
    using namespace hashee::cli;
    CLI::App app{"hashee: early-exit transformer inference (HashEE)"};
    app.require_subcommand(1);

    embed_options eo;
    auto* embed = app.add_subcommand("embed", "Sentence embeddings as JSON lines, dense or with HashEE exits");
    embed->add_option("--model", eo.model_dir, "Model directory (model.safetensors, config.json, vocab.txt)")
        ->required()->check(CLI::ExistingDirectory);
    embed->add_option("--input", eo.input, "Text file: one text, or two tab-separated texts, per line ('-' = stdin)");
    embed->add_option("--tsv", eo.tsv, "TSV file with a header line (e.g. an ELUE task file)")->excludes("--input");
    embed->add_option("--column", eo.columns, "TSV column(s) to embed: one, or two for pairs")->needs("--tsv");
    embed->add_option("--exit", eo.exit_table, "Exit table (from 'hashee hash build'): token-level HashEE exits");
    embed->add_option("--kv", eo.kv, "What exited tokens are to upper layers: keep (keys/values) or drop")
        ->check(CLI::IsMember({"keep", "drop"}));
    embed->add_option("--output", eo.output, "Output file (default: stdout, held until the run succeeds), written atomically");
    embed->add_option("--batch-size", eo.batch_size, "Inputs per forward pass")->check(CLI::Range(1, 4096));
    embed->add_option("--threads", eo.threads, "Threads")->check(CLI::Range(1, 1024));
    embed->add_option("--max-length", eo.max_length, "Truncate to this many tokens (default: the model's)")
        ->check(CLI::Range(2, 100000));
    embed->add_flag("--quiet", eo.quiet, "No progress or summary on stderr");
    embed->add_option("--precision", eo.precision, "The products' inputs: fp32, bf16 (eigen with oneDNN; cuda), int8 (eigen with oneDNN) or fp16 (cuda)");
    embed->add_option("--backend", eo.backend, "eigen, thrust-omp or thrust-cpp (cuda where built by nvcc)")
        ->check(CLI::IsMember({"eigen", "thrust-omp", "thrust-cpp", "cuda"}));

    hash_build_options ho;
    auto* hash = app.add_subcommand("hash", "Hash tables for HashEE");
    hash->require_subcommand(1);
    auto* build = hash->add_subcommand("build", "Build an exit table from a hash policy");
    build->add_option("--model", ho.model_dir, "Model directory")->required()->check(CLI::ExistingDirectory);
    build->add_option("--policy", ho.policy, "frequency, mutual_information, clustering or random")
        ->check(CLI::IsMember({"frequency", "mutual_information", "clustering", "random"}));
    build->add_option("--corpus", ho.corpus, "TSV file with a header: the text the hash is built (and a target met) on")
        ->check(CLI::ExistingFile);
    build->add_option("--column", ho.columns, "Text column(s) of the corpus");
    build->add_option("--label-column", ho.label_column, "Label column (mutual_information; real scores are rounded)");
    build->add_option("--buckets", ho.buckets, "Equal type-count buckets (0: one per layer), the paper's bucketing")
        ->check(CLI::Range(0, 255));
    build->add_option("--target", ho.target, "Choose buckets to meet this FLOPs speed-up on the corpus")
        ->check(finite_number)->check(CLI::Range(1.0, 100.0))->excludes("--buckets");
    build->add_option("--kv", ho.kv, "Key/value semantics the target is met for")->check(CLI::IsMember({"keep", "drop"}));
    build->add_option("--seed", ho.seed, "Seed (clustering, random)");
    build->add_option("--threads", ho.threads, "Threads")->check(CLI::Range(1, 1024));
    build->add_option("--out", ho.out, "Output table (JSON)")->required();

    eval_options vo;
    if (const char* e = std::getenv("HASHEE_ELUE_DIR"); e && *e) vo.elue_dir = e;
    else vo.elue_dir = "../shared/data/elue";
    auto* eval = app.add_subcommand("eval", "Quality, FLOPs and time of dense against HashEE on STS-B and SST-2 (of a fine-tuned "
                                            "classifier: its ELUE metric on SST-2, MRPC or STS-B)");
    eval->add_option("--model", vo.model_dir, "Model directory")->required()->check(CLI::ExistingDirectory);
    eval->add_option("--elue", vo.elue_dir, "ELUE data directory (default: $HASHEE_ELUE_DIR or ../shared/data/elue)")
        ->check(CLI::ExistingDirectory);
    eval->add_option("--tasks", vo.tasks, "stsb and/or sst2 (and mrpc for a fine-tuned classifier, scored by its own predictions)")->delimiter(',');
    eval->add_option("--policies", vo.policies, "Hash policies (and random_inconsistent)")->delimiter(',');
    eval->add_option("--targets", vo.targets, "Target FLOPs speed-ups for STS-B")->delimiter(',')->check(finite_number)
        ->check(CLI::Range(1.0, 100.0));
    eval->add_option("--sst2-target", vo.sst2_target, "Target FLOPs speed-up for SST-2")->check(finite_number)
        ->check(CLI::Range(1.0, 100.0));
    eval->add_option("--kv", vo.kvs, "keep and/or drop")->delimiter(',');
    eval->add_option("--threads", vo.threads, "Threads")->check(CLI::Range(1, 1024));
    eval->add_option("--batch-size", vo.batch_size, "Sentences per forward pass")->check(CLI::Range(1, 4096));
    eval->add_option("--limit", vo.limit, "Use only the first N examples of each split (quick checks)");
    eval->add_option("--seed", vo.seed, "Seed of the hashes and the probe");
    eval->add_option("--precision", vo.precision, "The products' inputs: fp32, bf16 (eigen with oneDNN; cuda), int8 (eigen with oneDNN) or fp16 (cuda)");
    eval->add_option("--backend", vo.backend, "eigen, thrust-omp or thrust-cpp (cuda where built by nvcc)")
        ->check(CLI::IsMember({"eigen", "thrust-omp", "thrust-cpp", "cuda"}));
    eval->add_option("--out", vo.out_dir, "Write hashee-results.md and plots (SVG) here");

    baselines_options bo;
    bo.elue_dir = vo.elue_dir;
    auto* base = app.add_subcommand("baselines", "Sentence-level early exits (DeeBERT, FastBERT, PABEE, BERxiT, static) "
                                                 "against HashEE: one table");
    base->add_option("--model", bo.model_dir, "Model directory")->required()->check(CLI::ExistingDirectory);
    base->add_option("--elue", bo.elue_dir, "ELUE data directory (default: $HASHEE_ELUE_DIR or ../shared/data/elue)")
        ->check(CLI::ExistingDirectory);
    base->add_option("--tasks", bo.tasks, "sst2 and/or stsb")->delimiter(',');
    base->add_option("--train-samples", bo.train_samples, "Head-training budget: training examples drawn with the seed (0: all)");
    base->add_option("--epochs", bo.epochs, "Head-training budget: epochs")->check(CLI::Range(1, 1000));
    base->add_option("--learning-rate", bo.learning_rate, "Head-training budget: AdamW learning rate")->check(finite_number)->check(CLI::Range(1e-7, 1.0));
    base->add_option("--heads-read", bo.heads_read, "What the pooler + linear heads and BERxiT read: mean or cls")
        ->transform(CLI::CheckedTransformer(std::map<std::string, hashee::head_input>{{"mean", hashee::head_input::mean}, {"cls", hashee::head_input::cls}}));
    base->add_option("--timing-samples", bo.timing_samples, "Dev examples timed at batch 1 and 32")->check(CLI::Range(1, 100000));
    base->add_option("--hash-target", bo.hash_target, "HashEE's FLOPs speed-up target")->check(finite_number)
        ->check(CLI::Range(1.0, 100.0));
    base->add_option("--limit", bo.limit, "Use only the first N dev examples (quick checks)");
    base->add_option("--threads", bo.threads, "Threads")->check(CLI::Range(1, 1024));
    base->add_option("--backend", bo.backend, "eigen, thrust-omp or thrust-cpp (cuda where built by nvcc): what the encoder runs on")
        ->check(CLI::IsMember({"eigen", "thrust-omp", "thrust-cpp", "cuda"}));
    base->add_option("--seed", bo.seed, "Seed of head initialisation and minibatch order");
    base->add_option("--out", bo.out_dir, "Write baselines.md and plots (SVG) here");

    finetune_cli_options fo;
    fo.elue_dir = vo.elue_dir;
    auto* ft = app.add_subcommand("finetune", "Fine-tune an encoder (every parameter) on an ELUE task or a TSV; the best dev epoch "
                                              "is written as a Hugging Face model directory");
    ft->add_option("--model", fo.model_dir, "Model directory to start from")->required()->check(CLI::ExistingDirectory);
    ft->add_option("--task", fo.task, "sst2, mrpc or stsb (ELUE files under --elue)");
    ft->add_option("--elue", fo.elue_dir, "ELUE data directory (default: $HASHEE_ELUE_DIR or ../shared/data/elue)");
    ft->add_option("--train", fo.train, "Training TSV with a header")->check(CLI::ExistingFile)->excludes("--task");
    ft->add_option("--text-column", fo.text_columns, "Text column(s) of --train: one, or two for pairs");
    ft->add_option("--label-column", fo.label_column, "Label column of --train (class index, or score)");
    ft->add_option("--dev", fo.dev, "Dev TSV (the same columns): the metric after each epoch picks the epoch kept")->check(CLI::ExistingFile);
    ft->add_option("--objective", fo.objective, "classify (cross-entropy), regress (squared error) or cosine (bi-encoder, pairs)");
    ft->add_option("--num-labels", fo.num_labels, "Classes (default: the largest training label + 1)")->check(CLI::Range(2, 1000));
    ft->add_option("--epochs", fo.epochs, "Epochs");
    ft->add_option("--lr", fo.lr, "Peak learning rate (linear warm-up over --warmup-ratio of the steps, then linear decay)")->check(finite_number);
    ft->add_option("--warmup-ratio", fo.warmup_ratio, "Share of the steps spent warming up")->check(finite_number);
    ft->add_option("--batch-size", fo.batch_size, "Examples per optimizer step");
    ft->add_option("--micro-batch", fo.micro_batch, "Examples per forward/backward (gradient accumulation; 0: the batch)");
    ft->add_option("--seed", fo.seed, "Seed of the new classifier, the data order and dropout");
    ft->add_option("--max-length", fo.max_length, "Truncate to this many tokens")->check(CLI::Range(2, 100000));
    ft->add_option("--limit", fo.limit, "Train on the first N examples only (quick runs)");
    ft->add_option("--dev-limit", fo.dev_limit, "Evaluate on the first N dev examples only");
    ft->add_option("--checkpoint-every", fo.checkpoint_every, "Also save the training state every N steps (it is saved after each epoch)");
    ft->add_flag("--resume", fo.resume, "Continue the run whose training state is in --out");
    ft->add_flag("--quiet", fo.quiet, "No progress on stderr");
    ft->add_option("--threads", fo.threads, "Threads")->check(CLI::Range(1, 1024));
    ft->add_option("--backend", fo.backend, "eigen, thrust-omp or thrust-cpp (cuda where built by nvcc)")
        ->check(CLI::IsMember({"eigen", "thrust-omp", "thrust-cpp", "cuda"}));
    ft->add_option("--out", fo.out, "Output model directory")->required();

    predict_options po;
    auto* pred = app.add_subcommand("predict", "A fine-tuned classifier's predictions as JSON lines");
    pred->add_option("--model", po.model_dir, "Fine-tuned model directory (hashee finetune's --out)")->required()->check(CLI::ExistingDirectory);
    pred->add_option("--tsv", po.tsv, "TSV file with a header")->check(CLI::ExistingFile);
    pred->add_option("--column", po.columns, "TSV column(s): one, or two for pairs")->needs("--tsv");
    pred->add_option("--input", po.input, "Text file: one text, or two tab-separated texts, per line ('-' = stdin)")->excludes("--tsv");
    pred->add_option("--output", po.output, "Output file (default: stdout, held until the run succeeds), written atomically");
    pred->add_option("--batch-size", po.batch_size, "Inputs per forward pass")->check(CLI::Range(1, 4096));
    pred->add_option("--max-length", po.max_length, "Truncate to this many tokens (default: the model's)")->check(CLI::Range(2, 100000));
    pred->add_option("--threads", po.threads, "Threads")->check(CLI::Range(1, 1024));
    pred->add_option("--backend", po.backend, "eigen, thrust-omp or thrust-cpp (cuda where built by nvcc)")
        ->check(CLI::IsMember({"eigen", "thrust-omp", "thrust-cpp", "cuda"}));

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e); // --help
        return fail("C13", e.what());
    }
    try {
        if (embed->parsed()) return run_embed(eo);
        if (build->parsed()) return run_hash_build(ho);
        std::string cmd = "hashee"; // recorded in the reports
        for (int i = 1; i < argc; ++i) cmd.append(" ").append(argv[i]);
        if (eval->parsed()) return run_eval(vo, cmd);
        if (ft->parsed()) return run_finetune(fo, cmd);
        if (pred->parsed()) {
            if (po.tsv.empty() && po.input.empty()) return fail("C20", "predict: give --tsv with --column, or --input");
            return run_predict(po);
        }
        if (base->parsed()) return run_baselines(bo, cmd);
    } catch (const hashee::error& e) {
        return fail(e.id().empty() ? "C22" : e.id(), e.what());
    } catch (const std::filesystem::filesystem_error& e) {
        return fail("C14", e.path1().string() + ": " + e.code().message());
    } catch (const std::bad_alloc&) {
        return fail("C23", "out of memory");
    } catch (const std::exception& e) {
        return fail("C22", e.what());
    }
    return 0;
}
