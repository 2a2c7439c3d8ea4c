#pragma once
// Writing a whole file atomically: into a temporary file beside it, renamed into place, so a
// failure never leaves a half-written file under the final name.

#include <filesystem>
#include <fstream>
#include <string_view>
#include <system_error>

#include <hashee/core/error.hpp>

namespace hashee::detail {

inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
    const auto tmp = std::filesystem::path(path.string() + ".tmp");
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw io_error("E45", located(path.string(), "cannot create"));
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out.flush()) {
            out.close();
            std::error_code ec;
            std::filesystem::remove(tmp, ec);
            throw io_error("E45", located(path.string(), "write failed"));
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        throw io_error("E45", located(path.string(), "cannot rename the temporary file into place"));
    }
}

} // namespace hashee::detail
