// Must not compile: a sentence-level exit policy without should_exit(state, signal), composed
// with a token-level one. The diagnostic names sentence_exit_policy.
#include <hashee/exit/sentence_exit.hpp>

struct no_decision {
    struct sample_state {};
    static constexpr bool reads_every_layer = true;
    int depth(int num_layers) const { return num_layers; }
};

int main() {
    [[maybe_unused]] hashee::composed_exit<hashee::no_exit, no_decision>* policy = nullptr;
}
