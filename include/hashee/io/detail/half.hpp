#pragma once
// Exact conversions of the 16-bit float formats found in checkpoints to float:
// IEEE 754 binary16 ("half", safetensors F16) and bfloat16 (safetensors BF16).
// Plain C++ bit manipulation; every binary16 and bfloat16 value is exactly representable
// as a float, so both conversions are exact (subnormals, signed zeros, infinities and NaN
// payloads included).

#include <bit>
#include <cstddef>
#include <cstdint>

namespace hashee::detail {

/// IEEE 754 binary16 bit pattern -> float (exact).
inline float half_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1Fu;
    std::uint32_t mantissa = h & 0x3FFu;
    std::uint32_t bits;
    if (exponent == 0x1Fu) {
        // Inf (mantissa 0) or NaN; the payload moves to the top of the float mantissa,
        // so a quiet NaN stays quiet.
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        // Normal: rebias 15 -> 127.
        bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;  // signed zero
    } else {
        // Subnormal half: value = mantissa * 2^-24. Normalise it (every half subnormal is a
        // normal float).
        std::uint32_t e = 127 - 15 + 1;  // exponent of 2^-14, the subnormal scale
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --e;
        }
        mantissa &= 0x3FFu;
        bits = sign | (e << 23) | (mantissa << 13);
    }
    return std::bit_cast<float>(bits);
}

/// bfloat16 bit pattern -> float (exact: bfloat16 is the top half of a float).
inline float bf16_to_float(std::uint16_t b) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// Reads a little-endian 16-bit value from two bytes (independent of host byte order).
inline std::uint16_t load_u16_le(const std::byte* p) noexcept {
    return static_cast<std::uint16_t>(static_cast<unsigned>(p[0]) |
                                      (static_cast<unsigned>(p[1]) << 8));
}

/// Reads a little-endian 32-bit value from four bytes (independent of host byte order).
inline std::uint32_t load_u32_le(const std::byte* p) noexcept {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

/// Reads a little-endian 64-bit value from eight bytes (independent of host byte order).
inline std::uint64_t load_u64_le(const std::byte* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
    return v;
}

} // namespace hashee::detail
