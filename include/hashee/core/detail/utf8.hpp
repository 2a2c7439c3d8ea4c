#pragma once
// UTF-8, the one implementation for all of hashee: strict validation (RFC 3629), decoding of
// validated text, and encoding of code points.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <hashee/core/error.hpp>

namespace hashee::detail {

/// Appends the UTF-8 encoding of a (valid) code point.
inline void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

/// Byte offset of the first invalid UTF-8 sequence in `s`, or npos when `s` is valid.
/// Strict (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
inline std::size_t find_invalid_utf8(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char b = p[i];
        if (b < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0) lo = 0xA0;        // overlong
            else if (b == 0xED) hi = 0x9F;   // surrogates
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0) lo = 0x90;        // overlong
            else if (b == 0xF4) hi = 0x8F;   // above U+10FFFF
        } else {
            return i;
        }
        if (i + len > n) return i;
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (std::size_t k = 2; k < len; ++k)
            if ((p[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return std::string_view::npos;
}

/// Throws input_error (E17) naming the byte offset when `s` is not valid UTF-8.
inline void require_utf8(std::string_view s, std::string_view what = "text") {
    const std::size_t bad = find_invalid_utf8(s);
    if (bad != std::string_view::npos) {
        throw input_error("E17", std::string(what) + ": invalid UTF-8 at byte offset " +
                          std::to_string(bad));
    }
}

/// Decodes one code point of already validated UTF-8 at `i`, advancing `i`.
inline char32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const unsigned char b = p[i];
    if (b < 0x80) {
        ++i;
        return b;
    }
    if (b < 0xE0) {
        const char32_t c = (char32_t(b & 0x1F) << 6) | (p[i + 1] & 0x3F);
        i += 2;
        return c;
    }
    if (b < 0xF0) {
        const char32_t c =
            (char32_t(b & 0x0F) << 12) | (char32_t(p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
        i += 3;
        return c;
    }
    const char32_t c = (char32_t(b & 0x07) << 18) | (char32_t(p[i + 1] & 0x3F) << 12) |
                       (char32_t(p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
    i += 4;
    return c;
}

} // namespace hashee::detail
