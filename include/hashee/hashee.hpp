#pragma once
// Umbrella header: everything public in hashee.
#include <hashee/backend.hpp>
#include <hashee/bert_weights.hpp>
#include <hashee/config.hpp>
#include <hashee/eigen_backend.hpp>
#include <hashee/encoder.hpp>
#include <hashee/encoder_output.hpp>
#include <hashee/error.hpp>
#include <hashee/matrix_view.hpp>
#include <hashee/model.hpp>
#include <hashee/packed_batch.hpp>
#include <hashee/safetensors.hpp>
#include <hashee/tokenizer.hpp>
#include <hashee/vocab.hpp>
#include <hashee/tsv.hpp>
#include <hashee/cost.hpp>
