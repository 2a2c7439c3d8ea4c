#pragma once
// The backends every backend-generic test body runs over, and helpers to move test data in
// and out of a backend's memory. With Thrust found (HASHEE_HAS_THRUST: tests/CMakeLists.txt
// links hashee::thrust to every test that includes this header), the Thrust backend's OMP and
// CPP systems run every such body beside eigen_cpu; built by nvcc (HASHEE_TEST_CUDA, linking
// hashee::cuda), the bodies run on thrust_backend<thrust_cuda> alone.

#include <span>
#include <tuple>
#include <type_traits>
#include <vector>

#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/model/model.hpp>
#if HASHEE_TEST_CUDA
#include <hashee/backend/cuda.cuh>
#elif HASHEE_HAS_THRUST
#include <hashee/backend/thrust.hpp>
#endif

#include "test_support.hpp"

namespace hashee::test {

#if HASHEE_TEST_CUDA
using all_backends = std::tuple<hashee::thrust_backend<hashee::thrust_cuda>>;
#elif HASHEE_HAS_THRUST && defined(HASHEE_TEST_UNDER_SANITIZER)
// Instrumented runs take the OMP system only: the CPP system runs the same functors serially.
using all_backends = std::tuple<hashee::eigen_cpu, hashee::thrust_backend<hashee::thrust_omp>>;
#elif HASHEE_HAS_THRUST
using all_backends = std::tuple<hashee::eigen_cpu, hashee::thrust_backend<hashee::thrust_omp>,
                                hashee::thrust_backend<hashee::thrust_cpp>>;
#else
using all_backends = std::tuple<hashee::eigen_cpu>;
#endif

/// A backend of type B with this many threads (where threads mean something to it).
template <class B>
B make_backend(int threads) {
    return B(threads);
}

/// The real model loaded once per backend type (its weights in that backend's memory), with
/// the two-thread backend that loaded it.
template <class B>
struct real_model {
    B backend = make_backend<B>(2);
    model<B> m = model<B>::load(model_dir(), backend);
    static const real_model& get() {
        static const real_model r;
        return r;
    }
};

template <class B, class T>
typename B::template buffer<T> to_device(const B& b, const std::vector<T>& host) {
    auto buf = b.template allocate<T>(static_cast<index_t>(host.size()));
    b.upload(std::span<const T>(host), buf.data());
    return buf;
}

/// The first n elements of a buffer of B's, copied to the host.
template <class B, class Buffer>
auto to_host(const B& b, const Buffer& buf, std::size_t n) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(buf.data())>>;
    std::vector<T> host(n);
    b.download(static_cast<const T*>(buf.data()), std::span<T>(host));
    return host;
}

} // namespace hashee::test
