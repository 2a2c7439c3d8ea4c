// The smallest program that embeds sentences: load a model, batch the texts (truncated to the
// model's length, 32 a batch), run each batch, print one line per text.
//   embed MODEL_DIR [TEXT...]
#include <cstdio>
#include <string>
#include <vector>

#include <hashee/hashee.hpp>

int main(int argc, char** argv) try {
    if (argc < 2) {
        std::fprintf(stderr, "usage: embed MODEL_DIR [TEXT...]\n");
        return 2;
    }
    const hashee::eigen_cpu cpu(2); // 2 threads
    const auto model = hashee::model<hashee::eigen_cpu>::load(argv[1], cpu);

    std::vector<hashee::text_input> texts;
    for (int i = 2; i < argc; ++i) texts.push_back({argv[i], std::nullopt});
    if (texts.empty()) texts = {{"A cat sleeps on the mat.", std::nullopt}, {"The weather is nice today.", std::nullopt}};

    const auto d = static_cast<std::size_t>(model.config().hidden_size);
    for (const hashee::input_batch& batch : model.batches(texts, {.max_sequences = 32})) {
        const auto emb = model.pooling().apply(model.encoder().forward(cpu, batch.tokens));
        for (std::size_t k = 0; k < batch.size(); ++k) // sequence k of the batch is input batch.inputs[k]
            std::printf("%zu: %zu floats, first %.6f\n", batch.inputs[k], d, emb[k * d]);
    }
    return 0;
} catch (const hashee::error& e) {
    std::fprintf(stderr, "embed: [%s] %s\n", std::string(e.id()).c_str(), e.what());
    return 1;
}
