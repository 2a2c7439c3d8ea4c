#pragma once
// Reading a whole (small) file, with the io_error every reader gives when it cannot.

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include <hashee/core/error.hpp>

namespace hashee::detail {

inline std::string read_text_file(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw io_error(located(path.string(), "is a directory, not a file"));
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(located(path.string(), "cannot open"));
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw io_error(located(path.string(), "read failed"));
    return s;
}

} // namespace hashee::detail
