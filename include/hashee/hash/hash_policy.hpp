#pragma once
// What a HashEE hash must provide (hash_policy), and any_hash: a hash a user provides, of any
// type, held behind one indirect call per batch. The hashes hashee builds are exit tables
// (exit_table.hpp; frequency, mutual information, clustering, random) and the inconsistent
// random draw (random_hash.hpp); hash_exit (exit/exit_policy.hpp) holds one of those or an
// any_hash.

#include <concepts>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include <hashee/hash/exit_table.hpp>

namespace hashee {

/// A hash assigns every token occurrence an exit layer in 1..num_layers().
template <class H>
concept hash_policy = requires(const H& h, std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) {
    { h.name() } -> std::convertible_to<std::string_view>;
    { h.num_layers() } -> std::same_as<int>;
    h.assign(ids, exits); ///< exits[i] = exit layer of the occurrence ids[i]
};

static_assert(hash_policy<exit_table>);

/// Any hash_policy, type-erased and shared (copies share the one hash; it must be safe to call
/// from several threads at once, as a loaded model is).
class any_hash {
public:
    template <hash_policy H>
        requires(!std::same_as<std::remove_cvref_t<H>, any_hash>)
    explicit any_hash(H hash) : self_(std::make_shared<const held<H>>(std::move(hash))) {}

    std::string_view name() const { return self_->name(); }
    int num_layers() const { return self_->num_layers(); }
    void assign(std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) const { self_->assign(ids, exits); }

private:
    struct base {
        virtual ~base() = default;
        virtual std::string_view name() const = 0;
        virtual int num_layers() const = 0;
        virtual void assign(std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) const = 0;
    };
    template <class H>
    struct held final : base {
        explicit held(H h) : hash(std::move(h)) {}
        std::string_view name() const override { return hash.name(); }
        int num_layers() const override { return hash.num_layers(); }
        void assign(std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) const override {
            hash.assign(ids, exits);
        }
        H hash;
    };
    std::shared_ptr<const base> self_;
};

static_assert(hash_policy<any_hash>);

} // namespace hashee
