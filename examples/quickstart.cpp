// The README's example as a whole program: embeddings, the encoder's outputs, and HashEE, on
// the backend named by the second argument.
//   quickstart MODEL_DIR [eigen | thrust-omp | thrust-cpp]   (built by g++)
//   quickstart_cuda MODEL_DIR                                 (built by nvcc: thrust-cuda)
#include <cstdio>
#include <cstring>
#include <vector>

#include <hashee/hashee.hpp>
#if defined(__CUDACC__)
#include <hashee/backend/cuda.cuh>
#elif HASHEE_HAS_THRUST
#include <hashee/backend/thrust.hpp>
#endif

/// The same program for any backend: the model's weights live in the backend's memory.
template <hashee::backend B>
int run(const B& backend, const char* model_dir) {
    const auto model = hashee::model<B>::load(model_dir, backend);
    std::vector<hashee::text_input> texts{{"A cat sleeps.", std::nullopt}, {"Is it?", "It is."}};
    std::vector<float> emb = model.embed(backend, texts);       // [2, 384], mean-pooled, normalised
    hashee::encoder_output out = model.forward(backend, texts); // hidden states, pooler, poolings

    // HashEE: a frequency hash over a corpus, bucketed to a 2x FLOPs speed-up on it.
    std::vector<hashee::text_input> corpus_texts;
    for (const char* s : {"the cat sat on the mat .", "a dog barks at the cat .", "it is a sunny day ,",
                          "the movie was good , and the cast was great ."})
        corpus_texts.push_back({s, std::nullopt});
    hashee::packed_batch corpus = model.tokenize(corpus_texts);
    const hashee::hash_setup setup = model.hash_setup_for();
    const hashee::hash_exit<> exits(
        hashee::frequency_hash(setup, corpus, hashee::target_speedup{2.0, &corpus, &model.config()}));
    hashee::encoder_output fast = model.forward(backend, corpus_texts, exits); // fast.cost.flops_speedup(), fast.exits

    std::printf("embeddings: %zu floats; tokens: %lld; HashEE FLOPs speed-up %.2fx, %.2f layers per token\n",
                emb.size(), static_cast<long long>(out.tokens()), fast.cost.flops_speedup(), fast.cost.average_layers());
    return 0;
}

int main(int argc, char** argv) try {
    if (argc < 2 || argc > 3) {
        std::fprintf(stderr, "usage: quickstart MODEL_DIR [eigen | thrust-omp | thrust-cpp]\n");
        return 2;
    }
#if defined(__CUDACC__)
    return run(hashee::thrust_backend<hashee::thrust_cuda>(), argv[1]);
#else
    const char* backend = argc == 3 ? argv[2] : "eigen";
    if (std::strcmp(backend, "eigen") == 0) return run(hashee::eigen_cpu(2), argv[1]); // 2 threads
#if HASHEE_HAS_THRUST
    if (std::strcmp(backend, "thrust-omp") == 0) return run(hashee::thrust_backend<hashee::thrust_omp>(), argv[1]);
    if (std::strcmp(backend, "thrust-cpp") == 0) return run(hashee::thrust_backend<hashee::thrust_cpp>(), argv[1]);
#endif
    std::fprintf(stderr, "quickstart: unknown or unavailable backend '%s'\n", backend);
    return 2;
#endif
} catch (const hashee::error& e) {
    std::fprintf(stderr, "quickstart: %s\n", e.what());
    return 1;
}
