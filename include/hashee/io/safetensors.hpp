#pragma once
// Reader for the safetensors checkpoint format (https://github.com/huggingface/safetensors).
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (an object), then the
// data buffer. Every JSON entry except "__metadata__" describes one tensor:
//   "name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
// with offsets relative to the start of the data buffer. The file is memory-mapped read-only
// and validated completely on open (see docs/formats.md); every error names the file and,
// where there is one, the tensor.

#include <hashee/io/detail/half.hpp>
#include <hashee/io/detail/mapped_file.hpp>
#include <hashee/core/detail/json.hpp>
#include <hashee/core/detail/utf8.hpp>
#include <hashee/core/detail/write_file.hpp>
#include <hashee/core/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hashee {

/// Element types of the safetensors format.
enum class dtype {
    f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean,
    u64, u32, u16, f8_e4m3, f8_e5m2,
};

/// The format's name of a dtype ("F32", "BF16", "BOOL", ...).
inline std::string_view to_string(dtype t) noexcept {
    switch (t) {
    case dtype::f64: return "F64";
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i64: return "I64";
    case dtype::i32: return "I32";
    case dtype::i16: return "I16";
    case dtype::i8: return "I8";
    case dtype::u8: return "U8";
    case dtype::boolean: return "BOOL";
    case dtype::u64: return "U64";
    case dtype::u32: return "U32";
    case dtype::u16: return "U16";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::f8_e5m2: return "F8_E5M2";
    }
    return "?";
}

/// Bytes per element.
inline std::size_t size_of(dtype t) noexcept {
    switch (t) {
    case dtype::f64: case dtype::i64: case dtype::u64: return 8;
    case dtype::f32: case dtype::i32: case dtype::u32: return 4;
    case dtype::f16: case dtype::bf16: case dtype::i16: case dtype::u16: return 2;
    case dtype::i8: case dtype::u8: case dtype::boolean:
    case dtype::f8_e4m3: case dtype::f8_e5m2: return 1;
    }
    return 0;
}

/// The dtype of a format name ("F32" -> dtype::f32); nullopt for an unknown name.
inline std::optional<dtype> dtype_from_string(std::string_view name) noexcept {
    static constexpr dtype all[] = {
        dtype::f64, dtype::f32, dtype::f16, dtype::bf16, dtype::i64,
        dtype::i32, dtype::i16, dtype::i8, dtype::u8, dtype::boolean,
        dtype::u64, dtype::u32, dtype::u16, dtype::f8_e4m3, dtype::f8_e5m2,
    };
    for (dtype t : all)
        if (to_string(t) == name) return t;
    return std::nullopt;
}

/// One tensor of a safetensors file.
struct tensor_info {
    std::string name;
    hashee::dtype dtype = hashee::dtype::f32;
    std::vector<std::int64_t> shape;
    std::size_t offset = 0;  ///< from the start of the data buffer
    std::size_t nbytes = 0;

    /// Number of elements (1 for a scalar, 0 when any dimension is 0).
    std::int64_t numel() const noexcept {
        // A zero dimension first: the other dimensions' product may exceed int64 (the format
        // only bounds the total), and multiplying them would overflow.
        for (auto d : shape)
            if (d == 0) return 0;
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

namespace detail {

/// "[a, b, c]".
inline std::string shape_string(std::span<const std::int64_t> shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    s += ']';
    return s;
}

/// a * b, or nullopt on overflow.
inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) noexcept {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
    return a * b;
}

} // namespace detail

/// A validated, memory-mapped safetensors file. Move-only; tensor spans stay valid while the
/// object (or the object it was moved into) lives.
class safetensors_file {
public:
    /// The reference implementation's bound on the JSON header length.
    static constexpr std::uint64_t max_header_size = 100'000'000;

    /// Maps and validates `path`. io_error when it cannot be read, format_error when the
    /// content breaks the format.
    static safetensors_file open(const std::filesystem::path& path) {
        safetensors_file f;
        f.source_ = path.string();
        f.map_ = detail::mapped_file::open(path);
        f.parse();
        return f;
    }

    /// Validates an in-memory file (same rules as open); `source_name` names it in messages.
    static safetensors_file from_bytes(std::vector<std::byte> bytes, std::string source_name) {
        safetensors_file f;
        f.source_ = std::move(source_name);
        f.owned_ = std::move(bytes);
        f.parse();
        return f;
    }

    safetensors_file(safetensors_file&&) noexcept = default;
    safetensors_file& operator=(safetensors_file&&) noexcept = default;
    safetensors_file(const safetensors_file&) = delete;
    safetensors_file& operator=(const safetensors_file&) = delete;
    ~safetensors_file() = default;

    /// The path (or source name) used in every message.
    const std::string& source() const noexcept { return source_; }

    /// All tensors, sorted by offset (ties, i.e. empty tensors, by name).
    std::span<const tensor_info> tensors() const noexcept { return tensors_; }

    /// The tensor called `name`, or nullptr.
    const tensor_info* find(std::string_view name) const noexcept {
        auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                   [this](std::size_t i, std::string_view n) {
                                       return std::string_view(tensors_[i].name) < n;
                                   });
        if (it == by_name_.end() || tensors_[*it].name != name) return nullptr;
        return &tensors_[*it];
    }

    /// The tensor called `name`; weight_error "<file>: tensor '<name>' not found".
    const tensor_info& at(std::string_view name) const {
        if (const tensor_info* t = find(name)) return *t;
        throw weight_error("E07", detail::located(source_, "tensor '" + std::string(name) + "' not found"));
    }

    /// The raw (little-endian) bytes of a tensor of this file; usage_error (U01) for a tensor
    /// that does not lie inside this file (one of another file).
    std::span<const std::byte> bytes(const tensor_info& t) const {
        const auto data = data_buffer();
        if (t.offset > data.size() || t.nbytes > data.size() - t.offset)
            throw usage_error("U01", detail::located(
                source_, "tensor '" + t.name + "': byte range [" + std::to_string(t.offset) +
                             ", +" + std::to_string(t.nbytes) + ") is not inside this file's " +
                             std::to_string(data.size()) + "-byte data buffer"));
        return data.subspan(t.offset, t.nbytes);
    }

    /// Float view of a tensor. F32 is returned zero-copy (a span into the mapping) when it is
    /// 4-byte aligned (and the host is little-endian); F16, BF16 and unaligned F32 are
    /// converted into `storage` and the span points there. Any other dtype: weight_error
    /// naming the file, the tensor and the dtype.
    std::span<const float> floats(const tensor_info& t, std::vector<float>& storage) const {
        const auto raw = bytes(t);
        const std::size_t n = raw.size() / size_of(t.dtype);
        switch (t.dtype) {
        case dtype::f32: {
            if (n == 0) return {};
            if constexpr (std::endian::native == std::endian::little) {
                if (reinterpret_cast<std::uintptr_t>(raw.data()) % alignof(float) == 0)
                    return {reinterpret_cast<const float*>(raw.data()), n};
            }
            storage.resize(n);
            for (std::size_t i = 0; i < n; ++i)
                storage[i] = std::bit_cast<float>(detail::load_u32_le(raw.data() + 4 * i));
            return {storage.data(), n};
        }
        case dtype::f16:
            storage.resize(n);
            for (std::size_t i = 0; i < n; ++i)
                storage[i] = detail::half_to_float(detail::load_u16_le(raw.data() + 2 * i));
            return {storage.data(), n};
        case dtype::bf16:
            storage.resize(n);
            for (std::size_t i = 0; i < n; ++i)
                storage[i] = detail::bf16_to_float(detail::load_u16_le(raw.data() + 2 * i));
            return {storage.data(), n};
        default:
            throw weight_error("E05", detail::located(
                source_, "tensor '" + t.name + "' has dtype " + std::string(to_string(t.dtype)) +
                             "; expected a float tensor (F32, F16 or BF16)"));
        }
    }

    /// The tensor `name`, which must have exactly `shape`; else weight_error naming the file,
    /// the tensor, the expected and the actual shape.
    const tensor_info& expect(std::string_view name,
                              std::initializer_list<std::int64_t> shape) const {
        const tensor_info& t = at(name);
        if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end()))
            throw weight_error("E06", detail::located(
                source_, "tensor '" + t.name + "' has shape " + detail::shape_string(t.shape) +
                             ", expected " +
                             detail::shape_string(std::span<const std::int64_t>(
                                 shape.begin(), shape.size()))));
        return t;
    }

    /// The "__metadata__" string map (empty when the file has none).
    const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

    /// The whole file (header length, header, data buffer) as mapped or given.
    std::span<const std::byte> file_bytes() const noexcept {
        if (map_.data() != nullptr) return map_.bytes();
        return owned_;
    }

    /// Length N of the JSON header.
    std::size_t header_size() const noexcept { return data_start_ - 8; }

    /// The data buffer (everything after the header); tensor offsets are relative to it.
    std::span<const std::byte> data_buffer() const noexcept {
        const auto f = file_bytes();
        return data_start_ <= f.size() ? f.subspan(data_start_) : std::span<const std::byte>{};
    }

private:
    safetensors_file() = default;

    // Ids (docs/errors.md): E01 the file ends early, E02 the header is not a JSON object,
    // E03 a header length that cannot be, E04 offsets or sizes that lie, E39 a malformed entry.
    [[noreturn]] void fail(std::string_view id, const std::string& what) const {
        throw format_error(id, detail::located(source_, what));
    }
    [[noreturn]] void fail_tensor(std::string_view id, const std::string& name, const std::string& what) const {
        fail(id, "tensor '" + name + "': " + what);
    }

    // Parses a header JSON (core/detail/json.hpp: the depth limit, E36), rejecting duplicate
    // keys, which nlohmann would silently collapse.
    nlohmann::json parse_header(std::string_view header) const {
        using json = nlohmann::json;
        std::vector<std::set<std::string>> keys;  // one set per open object
        std::string entry;                        // current top-level key
        detail::json_options opt;
        opt.invalid_id = "E02";
        opt.what = "header";
        opt.on_event = [&](int depth, json::parse_event_t event, const json& parsed) {
            switch (event) {
            case json::parse_event_t::object_start:
                keys.emplace_back();
                break;
            case json::parse_event_t::object_end:
                if (!keys.empty()) keys.pop_back();
                break;
            case json::parse_event_t::key: {
                const auto& k = parsed.get_ref<const std::string&>();
                if (depth == 1) entry = k;
                if (!keys.empty() && !keys.back().insert(k).second) {
                    if (depth == 1) {
                        if (k == "__metadata__") fail("E39", "duplicate key '__metadata__' in header");
                        fail_tensor("E39", k, "duplicate tensor name in header");
                    }
                    fail_tensor("E39", entry, "duplicate key '" + k + "'");
                }
                break;
            }
            default:
                break;
            }
        };
        return detail::parse_json(header, source_, opt);
    }

    void parse() {
        using json = nlohmann::json;
        const auto file = file_bytes();
        const std::size_t size = file.size();
        if (size < 8)
            fail("E01", "file is " + std::to_string(size) +
                 " bytes, shorter than the 8-byte header length of a safetensors file");
        const std::uint64_t n = detail::load_u64_le(file.data());
        if (n == 0) fail("E03", "header length is 0");
        if (n > max_header_size)
            fail("E03", "header length " + std::to_string(n) + " exceeds the limit of " +
                 std::to_string(max_header_size) + " bytes");
        if (n > size - 8)
            fail("E01", "header length " + std::to_string(n) + " runs past the end of the file (" +
                 std::to_string(size) + " bytes)");
        data_start_ = 8 + static_cast<std::size_t>(n);
        const std::size_t data_size = size - data_start_;

        const std::string_view header(reinterpret_cast<const char*>(file.data() + 8),
                                      static_cast<std::size_t>(n));
        if (header.front() != '{') fail("E02", "header does not start with '{'");
        if (const std::size_t bad = detail::find_invalid_utf8(header); bad != std::string_view::npos)
            fail("E02", "header is not valid UTF-8 (byte " + std::to_string(bad) + " of the header)");
        // JSON text never holds a raw NUL, but nlohmann's lexer would take one for the end of
        // the input and ignore whatever follows it.
        if (const auto nul = header.find('\0'); nul != std::string_view::npos)
            fail("E02", "header is not valid JSON: NUL byte at byte " + std::to_string(nul) +
                 " of the header");
        const json root = parse_header(header);
        if (!root.is_object()) fail("E02", "header is not a JSON object");

        std::vector<tensor_info> tensors;
        tensors.reserve(root.size());
        for (const auto& [name, entry] : root.items()) {
            if (name == "__metadata__") {
                if (!entry.is_object()) fail("E39", "__metadata__ is not an object of strings");
                for (const auto& [k, v] : entry.items()) {
                    if (!v.is_string())
                        fail("E39", "__metadata__ value of '" + k + "' is not a string");
                    metadata_.emplace(k, v.get<std::string>());
                }
                continue;
            }
            tensors.push_back(parse_entry(name, entry, data_size));
        }

        // Sorted by offset, the tensors must tile the data buffer exactly.
        std::sort(tensors.begin(), tensors.end(), [](const tensor_info& a, const tensor_info& b) {
            if (a.offset != b.offset) return a.offset < b.offset;
            if (a.nbytes != b.nbytes) return a.nbytes < b.nbytes;
            return a.name < b.name;
        });
        std::size_t expected = 0;
        const tensor_info* prev = nullptr;
        for (const auto& t : tensors) {
            if (t.offset < expected)
                fail_tensor("E04", t.name, "data_offsets [" + std::to_string(t.offset) + ", " +
                                        std::to_string(t.offset + t.nbytes) +
                                        "] overlap tensor '" + prev->name + "' (ends at " +
                                        std::to_string(expected) + ")");
            if (t.offset > expected)
                fail_tensor("E04", t.name, "gap in the data buffer: begins at " +
                                        std::to_string(t.offset) + " but the previous tensor" +
                                        (prev ? " '" + prev->name + "'" : std::string()) +
                                        " ends at " + std::to_string(expected));
            expected = t.offset + t.nbytes;
            prev = &t;
        }
        if (expected != data_size)
            fail("E04", "data buffer is " + std::to_string(data_size) + " bytes but the tensors cover " +
                 std::to_string(expected) + " (file length must be 8 + header length + last "
                                            "data_offsets end)");

        tensors_ = std::move(tensors);
        by_name_.resize(tensors_.size());
        for (std::size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
        std::sort(by_name_.begin(), by_name_.end(), [this](std::size_t a, std::size_t b) {
            return tensors_[a].name < tensors_[b].name;
        });
        for (std::size_t i = 1; i < by_name_.size(); ++i)  // defensive: the parser checks too
            if (tensors_[by_name_[i]].name == tensors_[by_name_[i - 1]].name)
                fail_tensor("E39", tensors_[by_name_[i]].name, "duplicate tensor name in header");
    }

    tensor_info parse_entry(const std::string& name, const nlohmann::json& entry,
                            std::size_t data_size) const {
        if (!entry.is_object()) fail_tensor("E39", name, "entry is not a JSON object");
        for (const auto& [k, v] : entry.items())
            if (k != "dtype" && k != "shape" && k != "data_offsets")
                fail_tensor("E39", name, "unexpected key '" + k + "'");
        for (const char* k : {"dtype", "shape", "data_offsets"})
            if (!entry.contains(k)) fail_tensor("E39", name, std::string("missing key '") + k + "'");

        tensor_info t;
        t.name = name;

        const auto& dt = entry["dtype"];
        if (!dt.is_string()) fail_tensor("E39", name, "dtype is not a string");
        const auto& dt_name = dt.get_ref<const std::string&>();
        const auto parsed = dtype_from_string(dt_name);
        if (!parsed) fail_tensor("E39", name, "unknown dtype '" + dt_name + "'");
        t.dtype = *parsed;

        const auto& shape = entry["shape"];
        if (!shape.is_array()) fail_tensor("E39", name, "shape is not a list");
        std::uint64_t numel = 1;
        for (const auto& d : shape) {
            if (!d.is_number_unsigned() ||
                d.get<std::uint64_t>() >
                    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                fail_tensor("E39", name, "shape " + shape.dump() +
                                      " is not a list of non-negative integers");
            const auto dim = d.get<std::uint64_t>();
            t.shape.push_back(static_cast<std::int64_t>(dim));
            const auto m = detail::checked_mul(numel, dim);
            if (!m) fail_tensor("E04", name, "element count of shape " + shape.dump() + " overflows");
            numel = *m;
        }
        if (numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            fail_tensor("E04", name, "element count of shape " + shape.dump() + " overflows");
        const auto want = detail::checked_mul(numel, size_of(t.dtype));
        if (!want) fail_tensor("E04", name, "byte size of shape " + shape.dump() + " overflows");

        const auto& off = entry["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
            !off[1].is_number_unsigned())
            fail_tensor("E39", name, "data_offsets " + off.dump() + " is not a pair of non-negative integers");
        const auto begin = off[0].get<std::uint64_t>();
        const auto end = off[1].get<std::uint64_t>();
        if (begin > end)
            fail_tensor("E04", name, "data_offsets " + off.dump() + ": begin is after end");
        if (end > data_size)
            fail_tensor("E01", name, "data_offsets " + off.dump() + " run past the end of the " +
                                  std::to_string(data_size) + "-byte data buffer");
        if (end - begin != *want)
            fail_tensor("E04", name, "data_offsets " + off.dump() + " hold " +
                                  std::to_string(end - begin) + " bytes, but shape " +
                                  shape.dump() + " of " + std::string(to_string(t.dtype)) +
                                  " needs " + std::to_string(*want));
        t.offset = static_cast<std::size_t>(begin);
        t.nbytes = static_cast<std::size_t>(end - begin);
        return t;
    }

    std::string source_;
    detail::mapped_file map_;
    std::vector<std::byte> owned_;
    std::size_t data_start_ = 0;
    std::vector<tensor_info> tensors_;
    std::vector<std::size_t> by_name_;  // indices into tensors_, sorted by name
    std::map<std::string, std::string> metadata_;
};

/// One F32 tensor to write: name, shape and row-major values.
struct safetensors_tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::span<const float> values;
};

/// Writes F32 tensors as a safetensors file (little-endian, in the order given), atomically,
/// with `metadata` as its "__metadata__" (left out when empty). usage_error (U02) when a
/// tensor's value count does not match its shape or a name repeats.
inline void write_safetensors(const std::filesystem::path& path, std::span<const safetensors_tensor> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::size_t offset = 0;
    for (const auto& t : tensors) {
        std::int64_t n = 1;
        for (auto d : t.shape) n *= d;
        if (n < 0 || static_cast<std::size_t>(n) != t.values.size())
            throw usage_error("U02", detail::located(path.string(), "tensor '" + t.name + "': " + std::to_string(t.values.size()) +
                                                                 " values for shape " + detail::shape_string(t.shape)));
        if (header.contains(t.name)) throw usage_error("U02", detail::located(path.string(), "tensor '" + t.name + "' given twice"));
        header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + 4 * t.values.size()}}};
        offset += 4 * t.values.size();
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    std::string bytes;
    bytes.reserve(8 + h.size() + offset);
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((static_cast<std::uint64_t>(h.size()) >> (8 * i)) & 0xFF));
    bytes += h;
    for (const auto& t : tensors)
        for (float v : t.values) {
            const auto u = std::bit_cast<std::uint32_t>(v);
            for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
        }
    detail::write_file_atomically(path, bytes);
}

} // namespace hashee
