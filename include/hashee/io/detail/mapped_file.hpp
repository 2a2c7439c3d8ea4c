#pragma once
// Read-only memory mapping of a whole file (POSIX open/fstat/mmap), move-only RAII.

#include <hashee/core/error.hpp>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hashee::detail {

/// A whole regular file mapped read-only. An empty file is a valid, empty mapping (nothing
/// is mapped); anything that is not a regular file (a directory, a FIFO, ...) is an io_error.
class mapped_file {
public:
    mapped_file() noexcept = default;

    /// Maps `path` read-only. io_error naming the path when it cannot be opened, is not a
    /// regular file, or cannot be mapped.
    static mapped_file open(const std::filesystem::path& path) {
        const std::string name = path.string();
        int fd;
        do {
            fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) throw io_error(located(name, "cannot open: " + errno_text(errno)));
        struct fd_guard {
            int fd;
            ~fd_guard() { ::close(fd); }
        } guard{fd};

        struct stat st {};
        if (::fstat(fd, &st) != 0) throw io_error(located(name, "cannot stat: " + errno_text(errno)));
        if (S_ISDIR(st.st_mode)) throw io_error(located(name, "is a directory, not a file"));
        if (!S_ISREG(st.st_mode)) throw io_error(located(name, "is not a regular file"));
        if (st.st_size < 0) throw io_error(located(name, "negative file size"));

        mapped_file m;
        m.size_ = static_cast<std::size_t>(st.st_size);
        if (m.size_ == 0) return m;  // mmap of length 0 is invalid; an empty view is right
        void* addr = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            const int err = errno;
            m.size_ = 0;
            throw io_error(located(name, "cannot mmap: " + errno_text(err)));
        }
        m.addr_ = addr;
        return m;
    }

    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    mapped_file(mapped_file&& other) noexcept
        : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}

    mapped_file& operator=(mapped_file&& other) noexcept {
        if (this != &other) {
            unmap();
            addr_ = std::exchange(other.addr_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }

    ~mapped_file() { unmap(); }

    const std::byte* data() const noexcept { return static_cast<const std::byte*>(addr_); }
    std::size_t size() const noexcept { return size_; }
    std::span<const std::byte> bytes() const noexcept { return {data(), size_}; }

private:
    static std::string errno_text(int err) { return std::strerror(err); }

    void unmap() noexcept {
        if (addr_ != nullptr) ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }

    void* addr_ = nullptr;
    std::size_t size_ = 0;
};

} // namespace hashee::detail
