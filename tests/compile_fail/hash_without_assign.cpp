// Must not compile: a hash policy without assign(ids, exits). The diagnostic names hash_policy.
#include <hashee/exit/exit_policy.hpp>

struct no_assign_hash {
    std::string_view name() const { return "broken"; }
    int num_layers() const { return 6; }
};

int main() {
    [[maybe_unused]] hashee::hash_exit<no_assign_hash>* policy = nullptr;
}
