// config.json: the real all-MiniLM-L6-v2 config, an ElasticBERT config, and one case per
// error rule.

#include <hashee/core/config.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using Catch::Matchers::Contains;
using hashee::bert_config;
using nlohmann::json;

namespace {

using namespace hashee::test;
namespace fs = std::filesystem;

const std::string src = "test/config.json";

/// A minimal valid BERT config.
json base() {
    return json{{"model_type", "bert"},          {"hidden_size", 384},
                {"num_hidden_layers", 6},        {"num_attention_heads", 12},
                {"intermediate_size", 1536},     {"hidden_act", "gelu"},
                {"layer_norm_eps", 1e-12},       {"max_position_embeddings", 512},
                {"type_vocab_size", 2},          {"vocab_size", 30522},
                {"pad_token_id", 0}};
}

bert_config parse(const json& j) { return bert_config::parse(j.dump(), src); }

/// parse(j) must throw config_error naming the source and field `field`, with catalogue id
/// `id` (E38 unless given: a field missing, mistyped, repeated or out of range).
std::string expect_config_error(const json& j, const std::string& field, const std::string& id = "E38") {
    CHECK_THROWS_ID_AS(parse(j), hashee::config_error, id);
    const auto msg = error_of<hashee::config_error>([&] { (void)parse(j); });
    INFO(msg);
    CHECK(msg.rfind(src + ": ", 0) == 0);
    CHECK_THAT(msg, Contains("field '" + field + "'"));
    return msg;
}

} // namespace

TEST_CASE("real all-MiniLM-L6-v2 config.json", "[config][real]") {
    const auto c = bert_config::load(hashee::test::model_dir() / "config.json");
    CHECK(c.model_type == "bert");
    CHECK(c.hidden_size == 384);
    CHECK(c.num_hidden_layers == 6);
    CHECK(c.num_attention_heads == 12);
    CHECK(c.head_dim() == 32);
    CHECK(c.intermediate_size == 1536);
    CHECK(c.hidden_act == "gelu");
    CHECK(c.layer_norm_eps == 1e-12);
    CHECK(c.max_position_embeddings == 512);
    CHECK(c.type_vocab_size == 2);
    CHECK(c.vocab_size == 30522);
    CHECK(c.pad_token_id == 0);
}

TEST_CASE("an ElasticBERT config parses", "[config]") {
    // The shape of fnlp/elasticbert-base's config.json (ElasticBertConfig, transformers 4.x).
    const std::string text = R"({
      "_name_or_path": "fnlp/elasticbert-base",
      "architectures": ["ElasticBertForMaskedLM"],
      "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 768,
      "initializer_range": 0.02,
      "intermediate_size": 3072,
      "layer_norm_eps": 1e-08,
      "max_output_layers": 12,
      "max_position_embeddings": 512,
      "model_type": "elasticbert",
      "num_attention_heads": 12,
      "num_hidden_layers": 12,
      "num_output_layers": 12,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "transformers_version": "4.8.2",
      "type_vocab_size": 2,
      "use_cache": true,
      "vocab_size": 30522
    })";
    const auto c = bert_config::parse(text, "elasticbert/config.json");
    CHECK(c.model_type == "elasticbert");
    CHECK(c.hidden_size == 768);
    CHECK(c.num_hidden_layers == 12);
    CHECK(c.head_dim() == 64);
    CHECK(c.layer_norm_eps == 1e-8);  // from the file, not a default
}

TEST_CASE("fine-tuned classifier config fields are accepted", "[config]") {
    json j = base();
    j["architectures"] = {"BertForSequenceClassification"};
    j["id2label"] = {{"0", "NEGATIVE"}, {"1", "POSITIVE"}};
    j["label2id"] = {{"NEGATIVE", 0}, {"POSITIVE", 1}};
    j["finetuning_task"] = "sst-2";
    j["problem_type"] = "single_label_classification";
    j["classifier_dropout"] = nullptr;
    j["torch_dtype"] = "float32";
    j["is_decoder"] = false;
    j["add_cross_attention"] = false;
    j["pruned_heads"] = json::object();
    j["output_attentions"] = false;
    j["return_dict"] = true;
    j["chunk_size_feed_forward"] = 0;
    j["tie_word_embeddings"] = true;
    j["bos_token_id"] = nullptr;
    j["eos_token_id"] = nullptr;
    j["directionality"] = "bidi";
    j["pooler_type"] = "first_token_transform";
    j["layer_norm_eps"] = 1;  // an integer is a number too
    const auto c = parse(j);
    CHECK(c.layer_norm_eps == 1.0);
}

TEST_CASE("config: missing required fields", "[config]") {
    for (const char* field : {"model_type", "hidden_size", "num_hidden_layers",
                              "num_attention_heads", "intermediate_size", "hidden_act",
                              "layer_norm_eps", "max_position_embeddings", "type_vocab_size",
                              "vocab_size", "pad_token_id"}) {
        DYNAMIC_SECTION("missing " << field) {
            json j = base();
            j.erase(field);
            CHECK_THAT(expect_config_error(j, field), Contains("missing"));
        }
    }
}

TEST_CASE("config: wrong JSON types", "[config]") {
    for (const char* field : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                              "intermediate_size", "max_position_embeddings",
                              "type_vocab_size", "vocab_size", "pad_token_id"}) {
        DYNAMIC_SECTION("integer field " << field) {
            for (const json& bad : {json("384"), json(384.0), json(nullptr), json(true),
                                    json::array({384})}) {
                json j = base();
                j[field] = bad;
                expect_config_error(j, field);
            }
        }
    }
    SECTION("string fields") {
        for (const char* field : {"model_type", "hidden_act"}) {
            json j = base();
            j[field] = 1;
            expect_config_error(j, field);
            j[field] = nullptr;
            expect_config_error(j, field);
        }
    }
    SECTION("layer_norm_eps") {
        json j = base();
        j["layer_norm_eps"] = "1e-12";
        expect_config_error(j, "layer_norm_eps");
    }
    SECTION("optional checked fields") {
        json j = base();
        j["position_embedding_type"] = 1;
        expect_config_error(j, "position_embedding_type");
        j = base();
        j["is_decoder"] = "false";
        expect_config_error(j, "is_decoder");
        j = base();
        j["add_cross_attention"] = 0;
        expect_config_error(j, "add_cross_attention");
        j = base();
        j["pruned_heads"] = json::array();
        expect_config_error(j, "pruned_heads");
    }
    SECTION("integer out of int range") {
        json j = base();
        j["vocab_size"] = 4294967296LL;
        expect_config_error(j, "vocab_size");
        j = base();
        j["pad_token_id"] = -4294967296LL;
        expect_config_error(j, "pad_token_id");
    }
}

TEST_CASE("config: invalid values", "[config]") {
    for (const char* field : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                              "intermediate_size", "max_position_embeddings",
                              "type_vocab_size", "vocab_size"}) {
        DYNAMIC_SECTION("non-positive " << field) {
            for (int bad : {0, -1}) {
                json j = base();
                j[field] = bad;
                if (std::string(field) == "vocab_size") j["pad_token_id"] = 0;
                expect_config_error(j, field);
            }
        }
    }
    SECTION("hidden_size not divisible by num_attention_heads") {
        json j = base();
        j["num_attention_heads"] = 7;
        CHECK_THAT(expect_config_error(j, "hidden_size"), Contains("divisible"));
    }
    SECTION("pad_token_id outside [0, vocab_size)") {
        json j = base();
        j["pad_token_id"] = -1;
        expect_config_error(j, "pad_token_id");
        j["pad_token_id"] = 30522;
        expect_config_error(j, "pad_token_id");
        j["pad_token_id"] = 30521;
        CHECK(parse(j).pad_token_id == 30521);
    }
    SECTION("layer_norm_eps not positive and finite") {
        for (double bad : {0.0, -1e-12}) {
            json j = base();
            j["layer_norm_eps"] = bad;
            expect_config_error(j, "layer_norm_eps");
        }
        // 1e999 does not fit a double: nlohmann reports the overflow as a parse error.
        std::string text = base().dump();
        const auto pos = text.find("1e-12");
        REQUIRE(pos != std::string::npos);
        text.replace(pos, 5, "1e999");
        CHECK_THROWS_AS(bert_config::parse(text, src), hashee::format_error);
    }
}

TEST_CASE("config: unsupported values", "[config]") {
    SECTION("hidden_act other than gelu") {
        for (const char* act : {"gelu_new", "gelu_pytorch_tanh", "relu", "GELU", ""}) {
            json j = base();
            j["hidden_act"] = act;
            CHECK_THAT(expect_config_error(j, "hidden_act", "E09"), Contains("not supported"));
        }
    }
    SECTION("position_embedding_type other than absolute") {
        for (const char* p : {"relative_key", "relative_key_query", "rotary"}) {
            json j = base();
            j["position_embedding_type"] = p;
            CHECK_THAT(expect_config_error(j, "position_embedding_type", "E09"), Contains(p));
        }
        json j = base();
        j["position_embedding_type"] = "absolute";
        CHECK_NOTHROW(parse(j));
    }
    SECTION("decoder flags") {
        for (const char* flag : {"is_decoder", "add_cross_attention", "is_encoder_decoder"}) {
            json j = base();
            j[flag] = true;
            expect_config_error(j, flag, "E09");
            j[flag] = false;
            CHECK_NOTHROW(parse(j));
        }
    }
    SECTION("pruned heads") {
        json j = base();
        j["pruned_heads"] = {{"0", {1, 2}}};
        expect_config_error(j, "pruned_heads", "E09");
    }
    SECTION("model_type other than bert / elasticbert") {
        for (const char* m : {"roberta", "distilbert", "BERT", ""}) {
            json j = base();
            j["model_type"] = m;
            expect_config_error(j, "model_type", "E09");
        }
    }
}

TEST_CASE("config: unknown fields are errors", "[config]") {
    for (const char* field : {"hiden_size", "embedding_size", "rotary_dim", "quantization_config",
                              "num_hidden_layer", "layer_norm_epsilon"}) {
        DYNAMIC_SECTION(field) {
            json j = base();
            j[field] = 1;
            CHECK_THAT(expect_config_error(j, field, "E10"), Contains("unknown field"));
        }
    }
    SECTION("an unknown field is reported before a missing one") {
        json j = base();
        j.erase("hidden_size");
        j["hiden_size"] = 384;
        expect_config_error(j, "hiden_size", "E10");
    }
}

TEST_CASE("config: malformed JSON and files", "[config]") {
    SECTION("not JSON") {
        for (const char* bad : {"", "{", "{\"hidden_size\": }", "not json", "{} {}", "{\"a\":NaN}"}) {
            INFO(bad);
            CHECK_THROWS_ID_AS(bert_config::parse(bad, src), hashee::format_error, "E37");
            const auto msg = error_of<hashee::format_error>([&] { (void)bert_config::parse(bad, src); });
            CHECK_THAT(msg, Contains(src));
        }
    }
    SECTION("a NUL byte (which would end nlohmann's input early)") {
        const std::string text = base().dump() + std::string(1, '\0') + "garbage";
        CHECK_THROWS_ID_AS(bert_config::parse(text, src), hashee::format_error, "E37");
        const auto msg = error_of<hashee::format_error>([&] { (void)bert_config::parse(text, src); });
        CHECK_THAT(msg, Contains(src) && Contains("NUL"));
    }
    SECTION("not an object") {
        for (const char* bad : {"[]", "1", "\"bert\"", "null"}) {
            CHECK_THROWS_ID_AS(bert_config::parse(bad, src), hashee::format_error, "E37");
            const auto msg = error_of<hashee::format_error>([&] { (void)bert_config::parse(bad, src); });
            CHECK_THAT(msg, Contains(src) && Contains("not a JSON object"));
        }
    }
    SECTION("duplicate fields") {
        std::string text = base().dump();
        text.insert(1, "\"hidden_size\":768,");
        CHECK_THROWS_ID_AS(bert_config::parse(text, src), hashee::config_error, "E38");
        const auto msg = error_of<hashee::config_error>([&] { (void)bert_config::parse(text, src); });
        CHECK_THAT(msg, Contains(src) && Contains("field 'hidden_size'") && Contains("twice"));
    }
    SECTION("too deep") {
        const std::string deep = "{\"task_specific_params\":" + std::string(40, '[') + std::string(40, ']') + "}";
        CHECK_THROWS_ID_AS(bert_config::parse(deep, src), hashee::format_error, "E36");
    }
    SECTION("files") {
        temp_dir dir;
        const auto missing = dir.path / "config.json";
        CHECK_THROWS_ID_AS(bert_config::load(missing), hashee::io_error, "E12");
        CHECK_THROWS_ID_AS(bert_config::load(dir.path), hashee::io_error, "E12");
        CHECK_THAT(error_of<hashee::io_error>([&] { (void)bert_config::load(missing); }),
                   Contains(missing.string()));
        CHECK_THAT(error_of<hashee::io_error>([&] { (void)bert_config::load(dir.path); }),
                   Contains(dir.path.string()));
        {
            std::ofstream(missing) << "";
        }
        CHECK_THAT(error_of<hashee::format_error>([&] { (void)bert_config::load(missing); }),
                   Contains(missing.string()));
        {
            std::ofstream out(missing);
            auto j = base();
            j["vocab_size"] = 0;
            out << j.dump();
        }
        CHECK_THAT(error_of<hashee::config_error>([&] { (void)bert_config::load(missing); }),
                   Contains(missing.string()) && Contains("vocab_size"));
        {
            std::ofstream(missing) << base().dump(2);
        }
        CHECK(bert_config::load(missing).hidden_size == 384);
    }
}
