// A C interface to hashee for the runtime comparison (scripts/compare.py loads it with ctypes,
// so hashee, ONNX Runtime and PyTorch run interleaved in one process on the same batches).
//
//   hc_model* hc_open(model_dir, exit_table_or_null, threads, err, err_len)
//   hc_model* hc_open_precision(model_dir, exit_table_or_null, threads, precision, err, err_len)
//   int       hc_embed(model, ids, lengths, batch, out, flops, err, err_len)
//   int       hc_product_kernel(model, out, out_len)
//   void      hc_close(model)
//
// hc_embed runs the encoder on `batch` sequences packed back to back in `ids` (sequence i has
// lengths[i] token ids, type ids all 0, no padding) and writes each sequence's mask-aware mean of
// its final token states to out[i * hidden .. (i + 1) * hidden). With an exit table the encoder
// runs HashEE (exited tokens kept as keys and values); `flops`, when not null, receives
// {dense FLOPs, FLOPs that ran}. Errors return a non-zero status (null from hc_open) with the
// message in err. hc_open's products are fp32; hc_open_precision takes the precision by name
// ("fp32", "bf16", "int8"; hashee::parse_precision), an unknown or unavailable one failing with E63.
// hc_product_kernel writes the library and kernel that run the model's products on this
// machine (eigen_cpu::product_kernel, e.g. "oneDNN 2.6.3, brg:avx512_core_vnni") into out,
// truncated to out_len - 1 characters, and returns its full length.

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include <hashee/hashee.hpp>

#include "hashee_compare.h"

namespace {

using namespace hashee;
using hashee_policy = hash_exit<kv_semantics::keep>;

/// The message of e into err, "[ID] " first where e carries a catalogue id (docs/errors.md).
void set_error(char* err, std::size_t err_len, const std::exception& e) {
    if (!err || err_len == 0) return;
    std::string what = e.what();
    if (const auto* he = dynamic_cast<const hashee::error*>(&e)) what = "[" + std::string(he->id()) + "] " + what;
    std::strncpy(err, what.c_str(), err_len - 1);
    err[err_len - 1] = '\0';
}

} // namespace

struct hc_model {
    eigen_cpu cpu;
    model<eigen_cpu> m;
    std::optional<hashee_policy> hashee;

    hc_model(const char* dir, const char* table, int threads, gemm_precision precision)
        : cpu(threads, precision), m(model<eigen_cpu>::load(dir, cpu)) {
        if (table && *table)
            hashee.emplace(exit_table::load(table, m.tokenizer().vocab(), m.config().num_hidden_layers));
    }

    void embed(const std::int32_t* ids, const std::int32_t* lengths, int batch, float* out, double* flops) const {
        if (batch <= 0) throw input_error("E15", "hc_embed: empty batch");
        packed_batch b;
        std::size_t at = 0;
        for (int i = 0; i < batch; ++i) {
            if (lengths[i] <= 0) throw input_error("E15", "hc_embed: sequence " + std::to_string(i) + " has no tokens");
            const auto n = static_cast<std::size_t>(lengths[i]);
            const std::vector<std::int32_t> types(n, 0);
            b.push_back(std::span(ids + at, n), types);
            at += n;
        }
        const encoder_output o = hashee ? m.encoder().forward(cpu, b, *hashee) : m.encoder().forward(cpu, b, no_exit{});
        const std::vector<float> mean = o.mean_pooled(false);
        std::memcpy(out, mean.data(), mean.size() * sizeof(float));
        if (flops) {
            flops[0] = static_cast<double>(o.cost.dense.flops());
            flops[1] = static_cast<double>(o.cost.actual.flops());
        }
    }
};

extern "C" {

hc_model* hc_open_precision(const char* model_dir, const char* exit_table, int threads, const char* precision, char* err,
                            std::size_t err_len) {
    try {
        return new hc_model(model_dir, exit_table, threads, parse_precision(precision ? precision : "fp32"));
    } catch (const std::exception& e) {
        set_error(err, err_len, e);
        return nullptr;
    }
}

hc_model* hc_open(const char* model_dir, const char* exit_table, int threads, char* err, std::size_t err_len) {
    return hc_open_precision(model_dir, exit_table, threads, "fp32", err, err_len);
}

int hc_embed(const hc_model* m, const std::int32_t* ids, const std::int32_t* lengths, int batch, float* out,
             double* flops, char* err, std::size_t err_len) {
    try {
        m->embed(ids, lengths, batch, out, flops);
        return 0;
    } catch (const std::exception& e) {
        set_error(err, err_len, e);
        return 1;
    }
}

int hc_hidden_size(const hc_model* m) { return static_cast<int>(m->m.config().hidden_size); }

int hc_product_kernel(const hc_model* m, char* out, std::size_t out_len) {
    try {
        const std::string k = m->cpu.product_kernel();
        if (out && out_len > 0) {
            std::strncpy(out, k.c_str(), out_len - 1);
            out[out_len - 1] = '\0';
        }
        return static_cast<int>(k.size());
    } catch (const std::exception& e) {
        set_error(out, out_len, e);
        return -1;
    }
}

void hc_close(hc_model* m) { delete m; }

} // extern "C"
