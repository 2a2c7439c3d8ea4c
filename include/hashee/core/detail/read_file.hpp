#pragma once
// Opening a file to read it, and reading a whole (small) text file: with io/detail/mapped_file.hpp
// (which opens through open_regular_file below) the one place hashee opens what it reads.
//
// Only regular files are read. A named pipe opened for reading blocks in open() until a writer
// appears, and a device such as /dev/zero never ends, so the kind of the file is checked with
// stat() before it is opened, the open is non-blocking as a second guard, and the kind is checked
// again on the open descriptor. A text file is read up to a stated maximum size
// (max_text_file_size): config.json, vocab.txt, the tokenizer and pooling configs, exit tables
// and TSV files are all far smaller.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hashee/core/error.hpp>

namespace hashee::detail {

/// The largest text file read whole (256 MiB); larger is a format_error (E35) naming the file.
inline constexpr std::size_t max_text_file_size = std::size_t{256} << 20;

/// "1.5 MiB"-style size for messages.
inline std::string byte_count_text(std::size_t n) {
    if (n % (std::size_t{1} << 20) == 0) return std::to_string(n >> 20) + " MiB";
    return std::to_string(n) + " bytes";
}

/// An open file descriptor, closed on destruction. Move-only.
class file_descriptor {
public:
    file_descriptor() noexcept = default;
    explicit file_descriptor(int fd) noexcept : fd_(fd) {}
    file_descriptor(file_descriptor&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    file_descriptor& operator=(file_descriptor&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    file_descriptor(const file_descriptor&) = delete;
    file_descriptor& operator=(const file_descriptor&) = delete;
    ~file_descriptor() { reset(); }

    int get() const noexcept { return fd_; }

private:
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int fd_ = -1;
};

/// io_error unless `st` describes a regular file: E12 for a directory, E34 for a special file
/// (a named pipe, a device, a socket).
inline void require_regular_file(const std::string& name, const struct stat& st) {
    if (S_ISREG(st.st_mode)) return;
    if (S_ISDIR(st.st_mode)) throw io_error("E12", located(name, "is a directory, not a file"));
    const char* kind = S_ISFIFO(st.st_mode)  ? "a named pipe"
                       : S_ISCHR(st.st_mode) ? "a character device"
                       : S_ISBLK(st.st_mode) ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "a special file";
    throw io_error("E34", located(name, std::string("is ") + kind + ", not a regular file (hashee reads regular files only)"));
}

/// Opens a regular file read-only and returns its descriptor, with its fstat() in `st`. io_error
/// naming the path: E12 when it is missing, cannot be opened or is a directory ("cannot open",
/// followed by the system's reason when `with_reason`); E34 when it is a special file -- found
/// before open() is called, so a named pipe never blocks.
inline file_descriptor open_regular_file(const std::filesystem::path& path, struct stat& st, bool with_reason = true) {
    const std::string name = path.string();
    const auto cannot_open = [&](int err) {
        return io_error("E12", located(name, with_reason ? "cannot open: " + std::string(std::strerror(err)) : "cannot open"));
    };
    if (::stat(path.c_str(), &st) != 0) throw cannot_open(errno);
    require_regular_file(name, st);
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw cannot_open(errno);
    file_descriptor guard(fd);
    // The path may have been replaced between stat() and open(): check what was opened.
    if (::fstat(fd, &st) != 0) throw io_error("E12", located(name, "cannot stat: " + std::string(std::strerror(errno))));
    require_regular_file(name, st);
    return guard;
}

/// Whether a file that may be absent is there (a file that cannot even be examined counts as
/// there, so that reading it reports why).
inline bool optional_file_present(const std::filesystem::path& path) {
    std::error_code ec;
    return std::filesystem::status(path, ec).type() != std::filesystem::file_type::not_found;
}

/// The whole of a regular text file of at most `max_size` bytes. io_error as open_regular_file
/// (E12, E34); format_error E35 when the file is larger than `max_size`.
inline std::string read_text_file(const std::filesystem::path& path, std::size_t max_size = max_text_file_size) {
    const std::string name = path.string();
    struct stat st {};
    const file_descriptor fd = open_regular_file(path, st, /*with_reason=*/false);
    const auto too_large = [&] {
        return format_error("E35", located(name, "is larger than the " + byte_count_text(max_size) + " hashee reads of a text file"));
    };
    if (st.st_size < 0 || static_cast<std::size_t>(st.st_size) > max_size) throw too_large();
    std::string s;
    s.resize(static_cast<std::size_t>(st.st_size) + 1);  // one more byte: a file that grew shows it
    std::size_t have = 0;
    for (;;) {
        if (have == s.size()) {
            if (have > max_size) throw too_large();
            s.resize(std::min(max_size + 1, 2 * have));
        }
        const ::ssize_t n = ::read(fd.get(), s.data() + have, s.size() - have);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw io_error("E12", located(name, "read failed: " + std::string(std::strerror(errno))));
        }
        if (n == 0) break;
        have += static_cast<std::size_t>(n);
    }
    if (have > max_size) throw too_large();
    s.resize(have);
    return s;
}

} // namespace hashee::detail
