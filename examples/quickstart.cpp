// The README's example as a whole program: embeddings, the encoder's outputs, and HashEE.
//   quickstart MODEL_DIR
#include <cstdio>
#include <vector>

#include <hashee/hashee.hpp>

int main(int argc, char** argv) try {
    if (argc != 2) {
        std::fprintf(stderr, "usage: quickstart MODEL_DIR\n");
        return 2;
    }
    const hashee::eigen_cpu cpu(2); // backend: 2 threads
    const auto model = hashee::model<hashee::eigen_cpu>::load(argv[1], cpu);
    std::vector<hashee::text_input> texts{{"A cat sleeps.", std::nullopt}, {"Is it?", "It is."}};
    std::vector<float> emb = model.embed(cpu, texts);       // [2, 384], mean-pooled, normalised
    hashee::encoder_output out = model.forward(cpu, texts); // hidden states, pooler, poolings

    // HashEE: a frequency hash over a corpus, bucketed to a 2x FLOPs speed-up on it.
    std::vector<hashee::text_input> corpus_texts;
    for (const char* s : {"the cat sat on the mat .", "a dog barks at the cat .", "it is a sunny day ,",
                          "the movie was good , and the cast was great ."})
        corpus_texts.push_back({s, std::nullopt});
    hashee::packed_batch corpus = model.tokenize(corpus_texts);
    const hashee::hash_setup setup = model.hash_setup_for();
    const hashee::hash_exit<hashee::frequency_hash> exits(
        hashee::frequency_hash(setup, corpus, hashee::target_speedup{2.0, &corpus, &model.config()}));
    hashee::encoder_output fast = model.forward(cpu, corpus_texts, exits); // fast.cost.flops_speedup(), fast.exits

    std::printf("embeddings: %zu floats; tokens: %lld; HashEE FLOPs speed-up %.2fx, %.2f layers per token\n",
                emb.size(), static_cast<long long>(out.tokens()), fast.cost.flops_speedup(), fast.cost.average_layers());
    return 0;
} catch (const hashee::error& e) {
    std::fprintf(stderr, "quickstart: %s\n", e.what());
    return 1;
}
