// Replays the fuzz seeds (fuzz/corpus/<target>/) and every input the fuzzers ever broke a reader
// with (fuzz/regressions/<target>/) through the fuzz targets (fuzz/targets.hpp), in the normal
// build: each must return or throw a hashee::error (the targets swallow those), never anything
// else, never crash.

#include <catch2/catch.hpp>

#include "../fuzz/targets.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using target_fn = void (*)(const std::uint8_t*, std::size_t);

fs::path fuzz_dir() { return fs::path(HASHEE_TEST_DATA_DIR "/../../fuzz").lexically_normal(); }

const std::map<std::string, target_fn>& targets() {
    static const std::map<std::string, target_fn> m{
        {"safetensors", &fuzz_safetensors}, {"config", &fuzz_config},
        {"vocab", &fuzz_vocab},             {"tokenizer", &fuzz_tokenizer},
        {"exit_table", &fuzz_exit_table},   {"tsv", &fuzz_tsv},
    };
    return m;
}

std::vector<std::uint8_t> read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool is_input(const fs::directory_entry& e) {
    return e.is_regular_file() && e.path().filename().string().rfind("README", 0) != 0;
}

/// Runs every input under fuzz/<kind>/<target>/; returns the number of inputs per target.
std::map<std::string, std::size_t> replay(const char* kind) {
    std::map<std::string, std::size_t> count;
    const fs::path root = fuzz_dir() / kind;
    INFO(root.string());
    REQUIRE(fs::is_directory(root));
    for (const auto& dir : fs::directory_iterator(root)) {
        if (!dir.is_directory()) continue;
        const std::string name = dir.path().filename().string();
        INFO(name);
        const auto it = targets().find(name);
        REQUIRE(it != targets().end());  // a directory named after no target is a mistake
        std::vector<fs::path> files;
        for (const auto& f : fs::directory_iterator(dir.path()))
            if (is_input(f)) files.push_back(f.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            const auto bytes = read_bytes(f);
            INFO(f.string());
            CHECK_NOTHROW(it->second(bytes.data(), bytes.size()));
        }
        count[name] += files.size();
    }
    return count;
}

} // namespace

TEST_CASE("every fuzz seed is handled: a result or a hashee::error", "[fuzz]") {
    const auto count = replay("corpus");
    for (const auto& [name, fn] : targets()) {
        INFO(name);
        CHECK((count.count(name) == 1 && count.at(name) > 0));
    }
}

TEST_CASE("every input a fuzzer once broke a reader with is handled", "[fuzz]") {
    (void)replay("regressions");
}

TEST_CASE("the fuzz targets report what is not a hashee::error", "[fuzz]") {
    // The harness's own contract checks surface as a non-hashee exception.
    CHECK_THROWS_AS(hashee_fuzz::check(false, "x"), hashee_fuzz::fuzz_invariant_failure);
    // Short and empty inputs are fine for every target.
    for (const auto& [name, fn] : targets()) {
        INFO(name);
        const std::uint8_t bytes[4] = {0xFF, 0x00, 0x7B, 0x0A};
        for (std::size_t n = 0; n <= 4; ++n) CHECK_NOTHROW(fn(bytes, n));
    }
}
