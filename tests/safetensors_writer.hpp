#pragma once
// Test helpers for safetensors files: a writer that builds valid files from scratch, raw byte
// builders for corrupt ones, a temporary directory, and exact-exception-type matching.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <nlohmann/json.hpp>

namespace hashee::test {

namespace fs = std::filesystem;

std::vector<std::byte> to_bytes(std::string_view s) {
    std::vector<std::byte> out(s.size());
    if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
    return out;
}

void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFF));
}

/// 8-byte length (the header's own unless `declared` says otherwise), header, `data_size`
/// zero bytes.
std::vector<std::byte> raw_file(std::string_view header, std::size_t data_size,
                                std::optional<std::uint64_t> declared = std::nullopt) {
    std::vector<std::byte> out;
    put_u64(out, declared.value_or(header.size()));
    auto h = to_bytes(header);
    out.insert(out.end(), h.begin(), h.end());
    out.resize(out.size() + data_size, std::byte{0});
    return out;
}

/// Writes valid safetensors files from scratch, tensors laid out in insertion order.
struct writer {
    struct item {
        std::string name, dtype;
        std::vector<std::int64_t> shape;
        std::vector<std::byte> data;
    };
    std::vector<item> items;
    std::optional<nlohmann::json> metadata;

    template <class T>
    writer& add(std::string name, std::string dt, std::vector<std::int64_t> shape,
                const std::vector<T>& values) {
        std::vector<std::byte> data(values.size() * sizeof(T));
        if (!data.empty()) std::memcpy(data.data(), values.data(), data.size());  // host is LE
        items.push_back({std::move(name), std::move(dt), std::move(shape), std::move(data)});
        return *this;
    }

    std::vector<std::byte> build(std::size_t align = 8) const {
        nlohmann::json h = nlohmann::json::object();
        if (metadata) h["__metadata__"] = *metadata;
        std::size_t off = 0;
        for (const auto& it : items) {
            h[it.name] = {{"dtype", it.dtype},
                          {"shape", it.shape},
                          {"data_offsets", {off, off + it.data.size()}}};
            off += it.data.size();
        }
        std::string header = h.dump();
        while (header.size() % align != 0) header += ' ';
        std::vector<std::byte> out;
        put_u64(out, header.size());
        auto hb = to_bytes(header);
        out.insert(out.end(), hb.begin(), hb.end());
        for (const auto& it : items) out.insert(out.end(), it.data.begin(), it.data.end());
        return out;
    }
};

std::vector<std::byte> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<std::byte> out(fs::file_size(p));
    in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
    REQUIRE(in.gcount() == static_cast<std::streamsize>(out.size()));
    return out;
}

} // namespace hashee::test
