#pragma once
// Where tests find the real model, the ELUE data and the committed test data.

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace hashee::test {

inline std::filesystem::path from_env(const char* var, const char* fallback) {
    const char* v = std::getenv(var);
    return std::filesystem::path(v && *v ? v : fallback);
}

/// Committed test data (goldens, small samples): tests/data.
inline std::filesystem::path data_dir() { return HASHEE_TEST_DATA_DIR; }

/// The real all-MiniLM-L6-v2 (set up by scripts/setup.sh). A missing model fails the test:
/// parity tests must not pass by skipping.
inline std::filesystem::path model_dir() {
    auto dir = from_env("HASHEE_MODEL_DIR", HASHEE_TEST_MODEL_DIR);
    if (!std::filesystem::exists(dir / "model.safetensors"))
        throw std::runtime_error("model not found in " + dir.string() +
                                 " (run scripts/setup.sh or set HASHEE_MODEL_DIR)");
    return dir;
}

/// The ELUE task data (../shared/data/elue unless HASHEE_ELUE_DIR says otherwise).
inline std::filesystem::path elue_dir() {
    auto dir = from_env("HASHEE_ELUE_DIR", HASHEE_TEST_ELUE_DIR);
    if (!std::filesystem::exists(dir / "SST-2" / "dev.tsv"))
        throw std::runtime_error("ELUE data not found in " + dir.string() +
                                 " (set HASHEE_ELUE_DIR)");
    return dir;
}

} // namespace hashee::test
