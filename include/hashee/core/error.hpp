#pragma once
// Typed errors. Every error names what it is about (the file, the tensor, the field, the line)
// and carries its catalogue id, the one docs/errors.md gives it ("E13"), so users and tests
// match ids, not message text. Bad data (a file, an input, a configuration) gets one of the
// data error types below; misuse of the API (a broken precondition) gets usage_error.

#include <stdexcept>
#include <string>
#include <string_view>

namespace hashee {

/// Base of every error hashee throws.
class error : public std::runtime_error {
public:
    /// `id`: the catalogue id (docs/errors.md); `message`: what went wrong, and where.
    error(std::string_view id, const std::string& message) : std::runtime_error(message), id_(id) {}

    /// The catalogue id, e.g. "E13".
    std::string_view id() const noexcept { return id_; }

private:
    std::string id_;
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

/// The API was misused: a precondition of a call does not hold (views of mismatched shapes, an
/// index outside its range, an option outside its domain given by code rather than by data).
class usage_error : public error {
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
