// Must not compile: classification with "heads" that cannot produce logits. The diagnostic
// names internal_classifiers.
#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/exit/classify.hpp>

struct no_logits_heads {
    hashee::head_input input() const { return hashee::head_input::cls; }
    int num_layers() const { return 6; }
    hashee::index_t outputs() const { return 2; }
};

int main() {
    const hashee::bert_encoder<hashee::eigen_cpu>* encoder = nullptr;
    const hashee::eigen_cpu* cpu = nullptr;
    (void)hashee::classify(*encoder, *cpu, hashee::packed_batch{}, no_logits_heads{}, hashee::entropy_exit{0.1});
}
