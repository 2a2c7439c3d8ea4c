#pragma once
// Readers of the training goldens (tests/data/training, scripts/make_training_goldens.py) and
// the comparisons the training tests share.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <hashee/core/config.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/io/safetensors.hpp>
#include <hashee/train/trainable_bert.hpp>

#include "backends.hpp"

namespace hashee::test {

/// Sequences of token ids (and their type ids, 0 where absent) packed without padding.
inline packed_batch pack_ids(const nlohmann::json& input_ids, const nlohmann::json* type_ids = nullptr) {
    packed_batch batch;
    for (std::size_t s = 0; s < input_ids.size(); ++s) {
        std::int32_t position = 0;
        for (std::size_t t = 0; t < input_ids[s].size(); ++t) {
            batch.ids.push_back(input_ids[s][t].get<std::int32_t>());
            batch.type_ids.push_back(type_ids ? (*type_ids)[s][t].get<std::int32_t>() : 0);
            batch.positions.push_back(position++);
        }
        batch.offsets.push_back(static_cast<std::int32_t>(batch.ids.size()));
    }
    return batch;
}

/// The whole binary a golden's manifest names, as bytes.
inline std::vector<char> read_binary(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct tiny_golden {
    bert_config config;
    safetensors_file weights;
    int labels = 0;
    packed_batch batch;
    std::vector<double> targets, logits;
    double loss = 0;
    std::map<std::string, std::vector<double>> grads;

    static tiny_golden load(const std::string& sub) {
        const auto dir = data_dir() / "training" / "tiny" / sub;
        const auto manifest = nlohmann::json::parse(read_file_text(dir / "manifest.json"));
        tiny_golden g{bert_config::load(dir / "model" / "config.json"),
                      safetensors_file::open(dir / "model" / "model.safetensors"), 0, {}, {}, {}, 0, {}};
        g.labels = manifest["config"]["num_labels"].get<int>();
        g.batch = pack_ids(manifest["input_ids"]);
        for (const auto& t : manifest.contains("labels") ? manifest["labels"] : manifest["targets"]) g.targets.push_back(t.get<double>());
        for (const auto& row : manifest["logits"])
            for (const auto& z : row) g.logits.push_back(z.get<double>());
        g.loss = manifest["loss"].get<double>();
        const std::vector<char> raw = read_binary(dir / manifest["binary"].get<std::string>());
        for (const auto& t : manifest["tensors"]) {
            std::vector<double> v(t["count"].get<std::size_t>());
            std::memcpy(v.data(), raw.data() + 8 * t["offset"].get<std::size_t>(), 8 * v.size());
            g.grads[t["name"].get<std::string>()] = std::move(v);
        }
        return g;
    }
};

/// max |a - b| / max(1, max |b|) over a tensor.
inline double relative_gap(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double gap = 0, scale = 1;
    for (std::size_t i = 0; i < a.size(); ++i) {
        gap = std::max(gap, std::abs(a[i] - b[i]));
        scale = std::max(scale, std::abs(b[i]));
    }
    return gap / scale;
}

/// A tensor's gradient (or, with value = true, its value) on the host, in double.
template <class B, class T>
std::vector<double> gradient(const B& b, const trainable_tensor<B, T>& t, bool value = false) {
    const auto g = to_host(b, value ? t.value : t.grad, static_cast<std::size_t>(t.size()));
    return {g.begin(), g.end()};
}

} // namespace hashee::test
