#pragma once
// Eigen, included once for all of hashee. GCC 12 flags its own AVX-512 intrinsics
// (_mm512_undefined_ps, inlined into Eigen's GEMM packing) as uninitialised (GCC bug 105593, a
// false positive). Middle-end warnings are judged by the pragma state at the intrinsic's
// source location, so silencing them around this include silences exactly those.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
