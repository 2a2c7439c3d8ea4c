#pragma once
// The one atomic writer: a stream into a temporary file in the same folder, renamed into place
// only after a successful flush and close, so a failure never leaves a half-written file under
// the final name; the temporary file is removed when the writer is destroyed uncommitted (the
// run failed).
//
//   detail::atomic_file out(path);
//   out.stream() << ...;
//   out.commit();              // or: detail::write_file_atomically(path, bytes)

#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

#include <hashee/core/error.hpp>

namespace hashee::detail {

class atomic_file {
public:
    /// Opens the temporary file beside `path`. io_error E61 when `path` is a directory or the
    /// file cannot be created (a folder that does not exist, no permission).
    explicit atomic_file(std::filesystem::path path) : path_(std::move(path)) {
        std::error_code ec;
        if (std::filesystem::is_directory(path_, ec)) throw io_error("E61", located(path_.string(), "is a directory"));
        tmp_ = path_;
#if __has_include(<unistd.h>)
        tmp_ += ".tmp." + std::to_string(::getpid());
#else
        tmp_ += ".tmp";
#endif
        file_.open(tmp_, std::ios::binary | std::ios::trunc);
        if (!file_) {
            const auto parent = path_.parent_path();
            if (!parent.empty() && !std::filesystem::is_directory(parent, ec))
                throw io_error("E61", located(path_.string(), "cannot create: the folder " + parent.string() +
                                                                  " does not exist"));
            throw io_error("E61", located(path_.string(), "cannot create"));
        }
    }
    atomic_file(const atomic_file&) = delete;
    atomic_file& operator=(const atomic_file&) = delete;
    ~atomic_file() {
        if (committed_) return;
        file_.close();
        std::error_code ec;
        std::filesystem::remove(tmp_, ec);
    }

    std::ostream& stream() { return file_; }
    const std::filesystem::path& path() const { return path_; }

    /// Flushes and closes the temporary file and renames it into place.
    void commit() {
        file_.flush();
        const bool flushed = static_cast<bool>(file_);
        file_.close();
        if (!flushed || !file_) throw io_error("E61", located(path_.string(), "write failed"));
        std::error_code ec;
        std::filesystem::rename(tmp_, path_, ec);
        if (ec) throw io_error("E61", located(path_.string(), "cannot rename the temporary file into place (" +
                                                                  ec.message() + ")"));
        committed_ = true;
    }

private:
    std::filesystem::path path_, tmp_;
    std::ofstream file_;
    bool committed_ = false;
};

inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
    atomic_file out(path);
    out.stream().write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.commit();
}

} // namespace hashee::detail
