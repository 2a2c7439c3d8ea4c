#pragma once
// The backends every backend-generic test body runs over, and helpers to move test data in
// and out of a backend's memory.

#include <span>
#include <tuple>
#include <vector>

#include <hashee/eigen_backend.hpp>

namespace hashee::test {

using all_backends = std::tuple<hashee::eigen_cpu>;

/// A backend of type B with this many threads (where threads mean something to it).
template <class B>
B make_backend(int threads) {
    return B(threads);
}

template <class B, class T>
typename B::template buffer<T> to_device(const B& b, const std::vector<T>& host) {
    auto buf = b.template allocate<T>(static_cast<index_t>(host.size()));
    b.upload(std::span<const T>(host), buf.data());
    return buf;
}

template <class B, class T>
std::vector<T> to_host(const B& b, const typename B::template buffer<T>& buf, std::size_t n) {
    std::vector<T> host(n);
    b.download(static_cast<const T*>(buf.data()), std::span<T>(host));
    return host;
}

} // namespace hashee::test
