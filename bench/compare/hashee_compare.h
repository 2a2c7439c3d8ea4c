/* The C interface to hashee for the runtime comparison (hashee_compare.cpp says what each
 * function does). Other programs load it (scripts/compare.py, through ctypes): these
 * functions and their signatures stay as they are; new abilities come as new functions. */
#ifndef HASHEE_COMPARE_H
#define HASHEE_COMPARE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hc_model hc_model;

hc_model* hc_open(const char* model_dir, const char* exit_table, int threads, char* err, size_t err_len);
hc_model* hc_open_precision(const char* model_dir, const char* exit_table, int threads, const char* precision, char* err,
                            size_t err_len);
int hc_embed(const hc_model* m, const int32_t* ids, const int32_t* lengths, int batch, float* out, double* flops, char* err,
             size_t err_len);
int hc_hidden_size(const hc_model* m);
int hc_product_kernel(const hc_model* m, char* out, size_t out_len);
void hc_close(hc_model* m);

#ifdef __cplusplus
}
#endif

#endif
