#pragma once
// Seeded k-means++ with restarts, for the clustering hash of HashEE (Sun et al. 2022): the rows
// of a word-embedding matrix are clustered into k groups (k = number of layers), and clusters
// are ordered by the ascending sum of their members' L2 norms.
//
// Determinism: for a given input and options the result is bit-identical whatever the thread
// count. Rows are cut into fixed chunks (their boundaries depend on the input size and k only,
// never on the threads); each chunk is processed by one thread with the same code, and
// per-chunk partial sums (double) are combined in chunk order.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/detail/random.hpp>
#include <hashee/core/detail/eigen.hpp>

#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

struct kmeans_options {
    int k = 0;                 ///< number of clusters, 1 <= k <= rows
    int restarts = 5;          ///< independent k-means++ seedings; the lowest inertia wins (>= 1)
    int max_iterations = 100;  ///< Lloyd iterations per restart (>= 0; 0 = seeding only)
    double tolerance = 1e-6;   ///< stop when |inertia change| <= tolerance * previous inertia
    std::uint64_t seed = 0;    ///< restart r draws from random_source(stream_seed(seed, r))
};

struct kmeans_result {
    std::vector<int> assignment;  ///< cluster of each row, in [0, k)
    std::vector<float> centroids; ///< [k, dim] row-major
    double inertia = 0;           ///< sum of squared distances to the assigned centroid (double)
    int iterations = 0;           ///< Lloyd iterations of the best restart
};

namespace detail::kmeans_impl {

inline constexpr index_t block_rows = 256;                   ///< minimum rows per chunk
inline constexpr index_t max_chunks = 64;                    ///< upper bound on chunks
inline constexpr index_t max_partial_doubles = 1 << 22;      ///< bound on chunks * k * dim


/// Fixed row chunks: [chunk * per, min(n, (chunk + 1) * per)). Depends on n, k, dim only.
struct chunking {
    index_t per = 0;
    index_t count = 0;
    chunking(index_t n, index_t k, index_t dim) {
        index_t chunks = std::min<index_t>(max_chunks, (n + block_rows - 1) / block_rows);
        chunks = std::min<index_t>(chunks, std::max<index_t>(1, max_partial_doubles / std::max<index_t>(1, k * dim)));
        chunks = std::max<index_t>(chunks, 1);
        per = (n + chunks - 1) / chunks;
        count = (n + per - 1) / per;
    }
    index_t begin(index_t c) const { return c * per; }
    index_t end(index_t c, index_t n) const { return std::min(n, (c + 1) * per); }
};

// Reductions with a fixed accumulation pattern (Eigen packets, then a fixed tail), so a row's
// result does not depend on its address alignment or on which thread computes it.
// (Eigen's packet types carry vector attributes, which GCC warns about as template arguments.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif
using packet = Eigen::internal::packet_traits<float>::type;
inline constexpr index_t packet_size = Eigen::internal::packet_traits<float>::size;
inline constexpr index_t group = 4; ///< centroids scored together against one row

inline float squared_distance(const float* x, const float* c, index_t dim) {
    using namespace Eigen::internal;
    packet a0 = pset1<packet>(0.f), a1 = a0;
    index_t j = 0;
    for (; j + 2 * packet_size <= dim; j += 2 * packet_size) {
        const packet d0 = psub(ploadu<packet>(x + j), ploadu<packet>(c + j));
        const packet d1 = psub(ploadu<packet>(x + j + packet_size), ploadu<packet>(c + j + packet_size));
        a0 = pmadd(d0, d0, a0);
        a1 = pmadd(d1, d1, a1);
    }
    for (; j + packet_size <= dim; j += packet_size) {
        const packet d0 = psub(ploadu<packet>(x + j), ploadu<packet>(c + j));
        a0 = pmadd(d0, d0, a0);
    }
    float s = predux(padd(a0, a1));
    for (; j < dim; ++j) s += (x[j] - c[j]) * (x[j] - c[j]);
    return s;
}

inline float squared_norm(const float* x, index_t dim) {
    using namespace Eigen::internal;
    packet a0 = pset1<packet>(0.f);
    index_t j = 0;
    for (; j + packet_size <= dim; j += packet_size) {
        const packet v = ploadu<packet>(x + j);
        a0 = pmadd(v, v, a0);
    }
    float s = predux(a0);
    for (; j < dim; ++j) s += x[j] * x[j];
    return s;
}

/// out[g] = x . c[g] for the `group` centroids starting at c ([group, dim] row-major).
inline void dot_group(const float* x, const float* c, index_t dim, float* out) {
    using namespace Eigen::internal;
    static_assert(group == 4);
    const float *c0 = c, *c1 = c + dim, *c2 = c + 2 * dim, *c3 = c + 3 * dim;
    packet a0 = pset1<packet>(0.f), a1 = a0, a2 = a0, a3 = a0;
    index_t j = 0;
    for (; j + packet_size <= dim; j += packet_size) {
        const packet v = ploadu<packet>(x + j);
        a0 = pmadd(v, ploadu<packet>(c0 + j), a0);
        a1 = pmadd(v, ploadu<packet>(c1 + j), a1);
        a2 = pmadd(v, ploadu<packet>(c2 + j), a2);
        a3 = pmadd(v, ploadu<packet>(c3 + j), a3);
    }
    float s0 = predux(a0), s1 = predux(a1), s2 = predux(a2), s3 = predux(a3);
    for (; j < dim; ++j) {
        s0 += x[j] * c0[j];
        s1 += x[j] * c1[j];
        s2 += x[j] * c2[j];
        s3 += x[j] * c3[j];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

inline double squared_distance_double(const float* x, const float* c, index_t dim) {
    double s = 0;
    for (index_t j = 0; j < dim; ++j) {
        const double d = static_cast<double>(x[j]) - static_cast<double>(c[j]);
        s += d * d;
    }
    return s;
}

inline void validate(const_matrix_view<float> rows, int k, const char* where) {
    if (rows.rows <= 0) throw usage_error("U26", located(where, "no rows to cluster"));
    if (rows.cols <= 0) throw usage_error("U26", located(where, "rows have no columns"));
    if (rows.stride < rows.cols) throw usage_error("U26", located(where, "row stride is smaller than the row length"));
    if (k < 1) {
        std::string m = "k must be >= 1, got ";
        m += std::to_string(k);
        throw usage_error("U26", located(where, m));
    }
    if (k > rows.rows) {
        std::string m = "k = ";
        m += std::to_string(k);
        m += " exceeds the number of rows (";
        m += std::to_string(rows.rows);
        m += ")";
        throw usage_error("U26", located(where, m));
    }
}

inline void validate_finite(const_matrix_view<float> rows, const char* where) {
    for (index_t r = 0; r < rows.rows; ++r) {
        const float* x = rows.row(r);
        for (index_t j = 0; j < rows.cols; ++j) {
            if (!std::isfinite(x[j])) {
                std::string m = "row ";
                m += std::to_string(r);
                m += ", column ";
                m += std::to_string(j);
                m += " is not finite";
                throw input_error("E75", located(where, m));
            }
        }
    }
}

/// Lloyd state for one run.
class lloyd_state {
public:
    lloyd_state(const_matrix_view<float> rows, int k, const eigen_cpu& backend)
        : x_(rows), k_(k), dim_(rows.cols), n_(rows.rows), backend_(backend), chunks_(rows.rows, k, rows.cols),
          assignment_(static_cast<std::size_t>(n_), -1), dist_(static_cast<std::size_t>(n_), 0.f),
          partial_sums_(static_cast<std::size_t>(chunks_.count * k * dim_)),
          partial_counts_(static_cast<std::size_t>(chunks_.count * k)),
          partial_inertia_(static_cast<std::size_t>(chunks_.count)), sums_(static_cast<std::size_t>(k * dim_)),
          counts_(static_cast<std::size_t>(k)) {}

    /// Runs Lloyd from `centroids` ([k, dim], updated in place). Returns the iteration count.
    int run(std::vector<float>& centroids, int max_iterations, double tolerance) {
        std::vector<int> previous;
        double previous_inertia = std::numeric_limits<double>::infinity();
        bool stale = true; // centroids changed since the last assignment
        int iterations = 0;
        for (int it = 1; it <= max_iterations; ++it) {
            previous = assignment_;
            const double inertia = assign(centroids);
            iterations = it;
            if (assignment_ == previous) { // centroids already are the means of this assignment
                stale = false;
                break;
            }
            update(centroids);
            if (inertia == 0 ||
                (std::isfinite(previous_inertia) && std::abs(previous_inertia - inertia) <= tolerance * previous_inertia))
                break;
            previous_inertia = inertia;
        }
        if (stale) assign(centroids);
        return iterations;
    }

    /// Nearest-centroid assignment (argmin of |c|^2 - 2 x.c), then re-seeding
    /// of empty clusters. Fills per-cluster sums and counts. Returns the (float-distance) inertia.
    double assign(std::vector<float>& centroids) {
        const index_t k = k_, dim = dim_;
        const index_t kp = (k + group - 1) / group * group; // padded with zero centroids
        padded_.assign(static_cast<std::size_t>(kp * dim), 0.f);
        std::copy(centroids.begin(), centroids.end(), padded_.begin());
        cnorm_.resize(static_cast<std::size_t>(k));
        for (index_t j = 0; j < k; ++j) {
            const float* cj = centroids.data() + j * dim;
            cnorm_[static_cast<std::size_t>(j)] = squared_norm(cj, dim);
        }
        backend_.parallel_for(chunks_.count, [&](index_t chunk) {
            const index_t r0 = chunks_.begin(chunk), r1 = chunks_.end(chunk, n_);
            double* sums = partial_sums_.data() + chunk * k * dim;
            std::int64_t* counts = partial_counts_.data() + chunk * k;
            std::fill(sums, sums + k * dim, 0.0);
            std::fill(counts, counts + k, 0);
            double inertia = 0;
            std::vector<float> dots(static_cast<std::size_t>(kp));
            for (index_t r = r0; r < r1; ++r) {
                const float* xr = x_.row(r);
                for (index_t g = 0; g < kp; g += group) dot_group(xr, padded_.data() + g * dim, dim, dots.data() + g);
                int best = 0;
                float best_score = cnorm_[0] - 2.f * dots[0];
                for (index_t j = 1; j < k; ++j) {
                    const float sc = cnorm_[static_cast<std::size_t>(j)] - 2.f * dots[static_cast<std::size_t>(j)];
                    if (sc < best_score) {
                        best_score = sc;
                        best = static_cast<int>(j);
                    }
                }
                const float d = squared_distance(xr, centroids.data() + best * dim, dim);
                assignment_[static_cast<std::size_t>(r)] = best;
                dist_[static_cast<std::size_t>(r)] = d;
                inertia += d;
                double* s = sums + best * dim;
                for (index_t j = 0; j < dim; ++j) s[j] += static_cast<double>(xr[j]);
                ++counts[best];
            }
            partial_inertia_[static_cast<std::size_t>(chunk)] = inertia;
        });
        // Combine the chunk partials in chunk order.
        std::fill(sums_.begin(), sums_.end(), 0.0);
        std::fill(counts_.begin(), counts_.end(), 0);
        double inertia = 0;
        for (index_t chunk = 0; chunk < chunks_.count; ++chunk) {
            const double* s = partial_sums_.data() + chunk * k * dim;
            for (index_t i = 0; i < k * dim; ++i) sums_[static_cast<std::size_t>(i)] += s[i];
            for (index_t j = 0; j < k; ++j) counts_[static_cast<std::size_t>(j)] += partial_counts_[static_cast<std::size_t>(chunk * k + j)];
            inertia += partial_inertia_[static_cast<std::size_t>(chunk)];
        }
        return inertia - reseed_empty(centroids);
    }

    /// centroid = sum / count for every cluster (all are non-empty after assign()).
    void update(std::vector<float>& centroids) const {
        for (index_t j = 0; j < k_; ++j) {
            const double inv = 1.0 / static_cast<double>(counts_[static_cast<std::size_t>(j)]);
            for (index_t t = 0; t < dim_; ++t)
                centroids[static_cast<std::size_t>(j * dim_ + t)] =
                    static_cast<float>(sums_[static_cast<std::size_t>(j * dim_ + t)] * inv);
        }
    }

    /// Exact inertia (double) of the current assignment against `centroids`.
    double exact_inertia(const std::vector<float>& centroids) {
        backend_.parallel_for(chunks_.count, [&](index_t chunk) {
            double s = 0;
            for (index_t r = chunks_.begin(chunk), r1 = chunks_.end(chunk, n_); r < r1; ++r)
                s += squared_distance_double(
                    x_.row(r), centroids.data() + assignment_[static_cast<std::size_t>(r)] * dim_, dim_);
            partial_inertia_[static_cast<std::size_t>(chunk)] = s;
        });
        double total = 0;
        for (index_t chunk = 0; chunk < chunks_.count; ++chunk) total += partial_inertia_[static_cast<std::size_t>(chunk)];
        return total;
    }

    std::vector<int>& assignment() { return assignment_; }
    std::int64_t empty_reseeds() const { return empty_reseeds_; }

private:
    /// Each empty cluster (ascending id) takes the row farthest from its centroid (ties: lowest
    /// row) among rows whose cluster has more than one member. Returns the inertia removed.
    double reseed_empty(std::vector<float>& centroids) {
        double removed = 0;
        for (index_t j = 0; j < k_; ++j) {
            if (counts_[static_cast<std::size_t>(j)] != 0) continue;
            index_t far = -1;
            float far_d = -1.f;
            for (index_t r = 0; r < n_; ++r) {
                const auto a = static_cast<std::size_t>(assignment_[static_cast<std::size_t>(r)]);
                if (counts_[a] > 1 && dist_[static_cast<std::size_t>(r)] > far_d) {
                    far_d = dist_[static_cast<std::size_t>(r)];
                    far = r;
                }
            }
            // k <= n guarantees a donor: otherwise every row would be alone in a cluster.
            const auto old = static_cast<std::size_t>(assignment_[static_cast<std::size_t>(far)]);
            const float* xr = x_.row(far);
            for (index_t t = 0; t < dim_; ++t) {
                sums_[old * static_cast<std::size_t>(dim_) + static_cast<std::size_t>(t)] -= static_cast<double>(xr[t]);
                sums_[static_cast<std::size_t>(j * dim_ + t)] = static_cast<double>(xr[t]);
                centroids[static_cast<std::size_t>(j * dim_ + t)] = xr[t];
            }
            --counts_[old];
            counts_[static_cast<std::size_t>(j)] = 1;
            assignment_[static_cast<std::size_t>(far)] = static_cast<int>(j);
            removed += static_cast<double>(far_d);
            dist_[static_cast<std::size_t>(far)] = 0.f;
            ++empty_reseeds_;
        }
        return removed;
    }

    const_matrix_view<float> x_;
    index_t k_, dim_, n_;
    const eigen_cpu& backend_;
    chunking chunks_;
    std::vector<int> assignment_;
    std::vector<float> dist_;
    std::vector<float> padded_; ///< centroids padded to a multiple of `group` rows
    std::vector<float> cnorm_;  ///< squared norms of the centroids
    std::vector<double> partial_sums_;
    std::vector<std::int64_t> partial_counts_;
    std::vector<double> partial_inertia_;
    std::vector<double> sums_;
    std::vector<std::int64_t> counts_;
    std::int64_t empty_reseeds_ = 0;
};

/// k-means++ seeding: the first centre uniformly, each next one with probability proportional
/// to the squared distance to the nearest centre chosen so far (D^2 sampling).
inline std::vector<float> seed_plus_plus(const_matrix_view<float> x, int k, random_source& rng,
                                         const eigen_cpu& backend) {
    const index_t n = x.rows, dim = x.cols;
    std::vector<float> centroids(static_cast<std::size_t>(k * dim));
    std::vector<float> d2(static_cast<std::size_t>(n), std::numeric_limits<float>::infinity());
    std::vector<double> prefix(static_cast<std::size_t>(n));
    std::vector<char> chosen(static_cast<std::size_t>(n), 0);
    const index_t grain = 512;

    auto take = [&](index_t j, index_t r) {
        chosen[static_cast<std::size_t>(r)] = 1;
        std::copy(x.row(r), x.row(r) + dim, centroids.begin() + j * dim);
        const float* c = centroids.data() + j * dim;
        backend.parallel_for_ranges(n, grain, [&](index_t b, index_t e) {
            for (index_t i = b; i < e; ++i)
                d2[static_cast<std::size_t>(i)] = std::min(d2[static_cast<std::size_t>(i)], squared_distance(x.row(i), c, dim));
        });
    };

    take(0, std::min<index_t>(n - 1, static_cast<index_t>(rng.uniform() * static_cast<double>(n))));
    for (index_t j = 1; j < k; ++j) {
        double total = 0;
        for (index_t i = 0; i < n; ++i) prefix[static_cast<std::size_t>(i)] = total += d2[static_cast<std::size_t>(i)];
        const double u = rng.uniform(); // always drawn, so the stream does not depend on the data
        index_t pick = -1;
        if (total > 0) {
            const double target = u * total;
            pick = std::upper_bound(prefix.begin(), prefix.end(), target) - prefix.begin();
            if (pick >= n) { // rounding: take the last row with a positive weight
                pick = n - 1;
                while (d2[static_cast<std::size_t>(pick)] <= 0) --pick;
            }
        } else {
            // Every row coincides with a centre: take the first row not yet chosen.
            pick = 0;
            while (chosen[static_cast<std::size_t>(pick)]) ++pick;
        }
        take(j, pick);
    }
    return centroids;
}

inline void validate_options(const kmeans_options& o, const char* where) {
    if (o.restarts < 1) {
        std::string m = "restarts must be >= 1, got ";
        m += std::to_string(o.restarts);
        throw usage_error("U26", located(where, m));
    }
    if (o.max_iterations < 0) {
        std::string m = "max_iterations must be >= 0, got ";
        m += std::to_string(o.max_iterations);
        throw usage_error("U26", located(where, m));
    }
    if (!(o.tolerance >= 0)) throw usage_error("U26", located(where, "tolerance must be >= 0"));
}

} // namespace detail::kmeans_impl

/// Lloyd iterations from given initial centroids ([k, dim] row-major, k = options.k); the
/// seed and restarts of `options` are unused. Empty clusters are re-seeded with the row farthest
/// from its centroid. The assignment step runs on `backend`'s threads; the result does not
/// depend on their number.
inline kmeans_result lloyd(const_matrix_view<float> rows, std::span<const float> initial_centroids,
                           const kmeans_options& options, const eigen_cpu& backend) {
    namespace ki = detail::kmeans_impl;
    ki::validate(rows, options.k, "lloyd");
    if (options.max_iterations < 0) throw usage_error("U26", "lloyd: max_iterations must be >= 0");
    if (!(options.tolerance >= 0)) throw usage_error("U26", "lloyd: tolerance must be >= 0");
    if (static_cast<index_t>(initial_centroids.size()) != options.k * rows.cols) {
        std::string m = "initial centroids hold ";
        m += std::to_string(initial_centroids.size());
        m += " floats, expected k * dim = ";
        m += std::to_string(options.k * rows.cols);
        throw usage_error("U26", detail::located("lloyd", m));
    }
    ki::validate_finite(rows, "lloyd");
    for (float v : initial_centroids)
        if (!std::isfinite(v)) throw usage_error("U26", "lloyd: initial centroids contain a non-finite value");
    kmeans_result result;
    result.centroids.assign(initial_centroids.begin(), initial_centroids.end());
    ki::lloyd_state state(rows, options.k, backend);
    result.iterations = state.run(result.centroids, options.max_iterations, options.tolerance);
    result.inertia = state.exact_inertia(result.centroids);
    result.assignment = std::move(state.assignment());
    return result;
}

inline kmeans_result lloyd(const_matrix_view<float> rows, std::span<const float> initial_centroids,
                           const kmeans_options& options) {
    return lloyd(rows, initial_centroids, options, eigen_cpu(1));
}

/// k-means with k-means++ seeding and `options.restarts` restarts; the restart of lowest
/// inertia wins (ties: the earliest). Restart r draws from
/// random_source(stream_seed(seed, r)) (core/detail/random.hpp). usage_error U26 when k < 1, k > rows,
/// rows == 0, restarts < 1, max_iterations < 0 or tolerance < 0; input_error E75 when a value
/// is not finite.
inline kmeans_result kmeans(const_matrix_view<float> rows, const kmeans_options& options, const eigen_cpu& backend) {
    namespace ki = detail::kmeans_impl;
    ki::validate(rows, options.k, "kmeans");
    ki::validate_options(options, "kmeans");
    ki::validate_finite(rows, "kmeans");
    kmeans_result best;
    best.inertia = std::numeric_limits<double>::infinity();
    ki::lloyd_state state(rows, options.k, backend);
    for (int r = 0; r < options.restarts; ++r) {
        detail::random_source rng(detail::stream_seed(options.seed, static_cast<std::uint64_t>(r)));
        std::vector<float> centroids = ki::seed_plus_plus(rows, options.k, rng, backend);
        std::fill(state.assignment().begin(), state.assignment().end(), -1);
        const int iterations = state.run(centroids, options.max_iterations, options.tolerance);
        const double inertia = state.exact_inertia(centroids);
        if (inertia < best.inertia) {
            best.inertia = inertia;
            best.iterations = iterations;
            best.centroids = std::move(centroids);
            best.assignment = state.assignment();
        }
    }
    return best;
}

inline kmeans_result kmeans(const_matrix_view<float> rows, const kmeans_options& options) {
    return kmeans(rows, options, eigen_cpu(1));
}

/// Cluster ids ordered by ascending sum of the L2 norms of their members (ties, e.g. empty
/// clusters, by cluster id): result[0] is the cluster that should exit earliest.
inline std::vector<int> order_clusters_by_norm_sum(const_matrix_view<float> rows, std::span<const int> assignment,
                                                   int k) {
    if (k < 1) {
        std::string m = "k must be >= 1, got ";
        m += std::to_string(k);
        throw usage_error("U26", detail::located("order_clusters_by_norm_sum", m));
    }
    if (static_cast<index_t>(assignment.size()) != rows.rows) {
        std::string m = "assignment has ";
        m += std::to_string(assignment.size());
        m += " entries for ";
        m += std::to_string(rows.rows);
        m += " rows";
        throw usage_error("U26", detail::located("order_clusters_by_norm_sum", m));
    }
    std::vector<double> sums(static_cast<std::size_t>(k), 0.0);
    for (index_t r = 0; r < rows.rows; ++r) {
        const int a = assignment[static_cast<std::size_t>(r)];
        if (a < 0 || a >= k) {
            std::string m = "assignment of row ";
            m += std::to_string(r);
            m += " is ";
            m += std::to_string(a);
            m += ", outside [0, ";
            m += std::to_string(k);
            m += ")";
            throw usage_error("U26", detail::located("order_clusters_by_norm_sum", m));
        }
        const float* x = rows.row(r);
        double s = 0;
        for (index_t j = 0; j < rows.cols; ++j) s += static_cast<double>(x[j]) * static_cast<double>(x[j]);
        sums[static_cast<std::size_t>(a)] += std::sqrt(s);
    }
    std::vector<int> order(static_cast<std::size_t>(k));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return sums[static_cast<std::size_t>(a)] < sums[static_cast<std::size_t>(b)];
    });
    return order;
}

} // namespace hashee
