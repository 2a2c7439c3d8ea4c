#pragma once
// Read-only memory mapping of a whole file (POSIX open/fstat/mmap), move-only RAII.

#include <hashee/core/detail/read_file.hpp>
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
/// is mapped); anything that is not a regular file is an io_error: E12 for a directory, E34 for
/// a named pipe or a device (checked before it is opened: see core/detail/read_file.hpp).
class mapped_file {
public:
    mapped_file() noexcept = default;

    /// Maps `path` read-only. io_error naming the path when it cannot be opened or mapped (E12)
    /// or is not a regular file (E12 a directory, E34 a special file).
    static mapped_file open(const std::filesystem::path& path) {
        const std::string name = path.string();
        struct stat st {};
        const file_descriptor fd = open_regular_file(path, st);  // E12, E34: never blocks
        if (st.st_size < 0) throw io_error("E12", located(name, "negative file size"));

        mapped_file m;
        m.size_ = static_cast<std::size_t>(st.st_size);
        if (m.size_ == 0) return m;  // mmap of length 0 is invalid; an empty view is right
        void* addr = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
        if (addr == MAP_FAILED) {
            const int err = errno;
            m.size_ = 0;
            throw io_error("E12", located(name, "cannot mmap: " + errno_text(err)));
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
