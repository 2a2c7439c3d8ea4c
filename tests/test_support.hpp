#pragma once
// Errors are matched by catalogue id: CHECK_THROWS_ID(expr, "E13") passes when expr throws a
// hashee::error (or a type derived from it, given as CHECK_THROWS_ID_AS) whose id() is "E13".
// Where tests find the real model, the ELUE data and the committed test data.

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include <hashee/core/error.hpp>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HASHEE_TEST_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HASHEE_TEST_UNDER_SANITIZER 1
#endif
#endif

namespace hashee::test {

/// Matches a hashee::error by its catalogue id (docs/errors.md).
class error_id_matcher : public Catch::MatcherBase<hashee::error> {
public:
    explicit error_id_matcher(std::string id) : id_(std::move(id)) {}
    bool match(const hashee::error& e) const override { return e.id() == id_; }
    std::string describe() const override { return "has catalogue id " + id_; }

private:
    std::string id_;
};
inline error_id_matcher has_id(std::string id) { return error_id_matcher(std::move(id)); }


/// True in the sanitizer builds (docs/sanitizers.md), which run every test but over smaller
/// grids where a test repeats the same code on more data: instrumented code runs 5-20x slower.
#ifdef HASHEE_TEST_UNDER_SANITIZER
inline constexpr bool under_sanitizer = true;
#else
inline constexpr bool under_sanitizer = false;
#endif

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

namespace fs = std::filesystem;

/// The exception message of `fn`, which must throw exactly an `E` (a sibling type fails).
template <class E, class F>
std::string error_of(F&& fn) {
    try {
        fn();
    } catch (const E& e) {
        return e.what();
    } catch (const std::exception& e) {
        FAIL("threw the wrong exception type: " << e.what());
    }
    FAIL("did not throw");
    return {};
}

/// A fresh temporary directory, removed at scope exit.
struct temp_dir {
    fs::path path;
    temp_dir() {
        static std::atomic<int> counter{0};
        path = fs::temp_directory_path() /
               ("hashee_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path write(const std::string& name, const std::vector<std::byte>& bytes) const {
        auto p = path / name;
        std::ofstream out(p, std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()),
                  static_cast<std::streamsize>(bytes.size()));
        return p;
    }
};

/// A whole file as text.
inline std::string read_file_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + p.string());
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace hashee::test

#define CHECK_THROWS_ID(expr, id) CHECK_THROWS_MATCHES(expr, hashee::error, hashee::test::has_id(id))
#define REQUIRE_THROWS_ID(expr, id) REQUIRE_THROWS_MATCHES(expr, hashee::error, hashee::test::has_id(id))
#define CHECK_THROWS_ID_AS(expr, type, id) CHECK_THROWS_MATCHES(expr, type, hashee::test::has_id(id))
