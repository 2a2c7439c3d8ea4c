// Must not compile: a backend that lacks attention. The diagnostic names backend_attention.
#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/model/encoder.hpp>

struct no_attention_backend : hashee::eigen_cpu {
    using eigen_cpu::eigen_cpu;
    void attention() const = delete;
};

int main() {
    [[maybe_unused]] hashee::bert_encoder<no_attention_backend>* encoder = nullptr;
}
