// Must not compile: a hash a user plugs into hash_exit without assign(ids, exits). The
// diagnostic names hash_policy.
#include <string_view>

#include <hashee/exit/exit_policy.hpp>

struct no_assign_hash {
    std::string_view name() const { return "broken"; }
    int num_layers() const { return 6; }
};

int main() {
    [[maybe_unused]] const hashee::hash_exit<> policy(no_assign_hash{});
}
