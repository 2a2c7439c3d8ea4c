#pragma once
// Typed errors. Every error names what it is about: the file, the tensor, the line.

#include <stdexcept>
#include <string>
#include <string_view>

namespace hashee {

/// Base of every error hashee throws.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A file could not be opened, mapped or read.
class io_error : public error {
public:
    using error::error;
};

/// A file's content is malformed (corrupt checkpoint, bad JSON, malformed TSV line, ...).
class format_error : public error {
public:
    using error::error;
};

/// A model configuration is invalid or asks for something hashee does not support.
class config_error : public error {
public:
    using error::error;
};

/// A checkpoint lacks a tensor the model needs, or holds it with the wrong shape or dtype.
class weight_error : public error {
public:
    using error::error;
};

/// Input given at run time is unusable (empty batch, over-long sequence, invalid token id,
/// text that is not UTF-8, ...).
class input_error : public error {
public:
    using error::error;
};

/// The device (a GPU, its runtime or a library on it) reported a failure.
class device_error : public error {
public:
    using error::error;
};

namespace detail {
/// "where: what" -- the common shape of every message.
inline std::string located(std::string_view where, std::string_view what) {
    std::string s(where);
    s += ": ";
    s += what;
    return s;
}
} // namespace detail

} // namespace hashee
