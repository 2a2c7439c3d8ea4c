#pragma once
// BERT WordPiece tokenizer, identical in output to Hugging Face's BertTokenizer
// (transformers 5, backed by the Rust `tokenizers` library): see docs/tokenizer.md.

#include <hashee/text/detail/unicode.hpp>
#include <hashee/core/detail/json.hpp>
#include <hashee/core/detail/read_file.hpp>
#include <hashee/core/error.hpp>
#include <hashee/text/vocab.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hashee {

/// Pass as `max_length` to encode/encode_batch to switch truncation off.
inline constexpr std::size_t no_truncation = std::numeric_limits<std::size_t>::max();

struct tokenizer_options {
    bool lower_case = true;
    std::optional<bool> strip_accents;  // HF semantics: unset -> follows lower_case
    bool tokenize_chinese_chars = true;
    std::size_t max_length = 512;       // default truncation length incl. special tokens
    std::size_t max_input_chars_per_word = 100;
    std::string unk_token = "[UNK]", cls_token = "[CLS]", sep_token = "[SEP]",
                pad_token = "[PAD]", mask_token = "[MASK]";
};

struct encoding {
    std::vector<std::int32_t> ids, type_ids;
};

/// Row-major [batch x seq_len], right-padded with the pad id.
struct encoded_batch {
    std::size_t batch = 0, seq_len = 0;
    std::vector<std::int32_t> ids, type_ids, mask;  // mask: 1 real, 0 pad
    std::vector<std::size_t> lengths;               // real length of each row
};

struct text_input {
    std::string_view first;
    std::optional<std::string_view> second;
};

namespace detail {

/// HF longest_first truncation of a pair to `budget` content tokens (the Rust tokenizers
/// algorithm: when both must shrink, the longer keeps budget/2 + budget%2, on a tie the
/// second sequence does).
inline std::pair<std::size_t, std::size_t> longest_first(std::size_t n1, std::size_t n2,
                                                         std::size_t budget) {
    if (n1 + n2 <= budget) return {n1, n2};
    std::size_t a = n1, b = n2;
    const bool swap = a > b;
    if (swap) std::swap(a, b);
    if (a > budget) b = a;
    else b = std::max(a, budget - a);
    if (a + b > budget) {
        a = budget / 2;
        b = a + budget % 2;
    }
    if (swap) std::swap(a, b);
    return {std::min(a, n1), std::min(b, n2)};
}

} // namespace detail

class wordpiece_tokenizer {
public:
    /// usage_error (U04) when a special token of `o` is empty; format_error (E42, naming the
    /// vocabulary) when the vocabulary lacks one.
    wordpiece_tokenizer(hashee::vocab v, tokenizer_options o = {})
        : vocab_(std::move(v)), opt_(std::move(o)) {
        for (const std::string* t : {&opt_.unk_token, &opt_.cls_token, &opt_.sep_token, &opt_.pad_token, &opt_.mask_token})
            if (t->empty()) throw usage_error("U04", "tokenizer: special tokens must not be empty");
        strip_accents_ = opt_.strip_accents.value_or(opt_.lower_case);
        unk_id_ = vocab_.id(opt_.unk_token);
        cls_id_ = vocab_.id(opt_.cls_token);
        sep_id_ = vocab_.id(opt_.sep_token);
        pad_id_ = vocab_.id(opt_.pad_token);
        mask_id_ = vocab_.id(opt_.mask_token);
        specials_ = {{{opt_.unk_token, unk_id_},
                      {opt_.cls_token, cls_id_},
                      {opt_.sep_token, sep_id_},
                      {opt_.pad_token, pad_id_},
                      {opt_.mask_token, mask_id_}}};
        // longest first, so that the first match at a position is the longest one
        std::stable_sort(specials_.begin(), specials_.end(), [](const auto& x, const auto& y) {
            return x.first.size() > y.first.size();
        });
        for (const auto& s : specials_) special_first_byte_[static_cast<unsigned char>(s.first[0])] = true;
    }

    /// Reads vocab.txt and tokenizer_config.json (do_lower_case, strip_accents,
    /// tokenize_chinese_chars, model_max_length, the special-token strings) from a Hugging Face
    /// model directory; sentence_bert_config.json's max_seq_length, when present, overrides
    /// max_length (as sentence-transformers does). Every error names the file it is about: a
    /// field of tokenizer_config.json or sentence_bert_config.json that is mistyped, empty, or
    /// names a token the vocabulary lacks is E41 naming that file and the field; JSON that is
    /// not valid E37 (too deep E36); vocab.txt's own errors name vocab.txt.
    static wordpiece_tokenizer from_directory(const std::filesystem::path& dir) {
        tokenizer_options o;
        const auto vocab_path = dir / "vocab.txt";
        const auto cfg_path = dir / "tokenizer_config.json";
        // Which special tokens tokenizer_config.json set (so that a token the vocabulary lacks is
        // blamed on the file that asked for it).
        std::vector<std::pair<const char*, const std::string*>> configured_tokens;
        if (detail::optional_file_present(cfg_path)) {
            const std::string cfg_name = cfg_path.string();
            const nlohmann::json cfg = detail::read_json_file(cfg_path);
            if (!cfg.is_object()) throw format_error("E41", detail::located(cfg_name, "not a JSON object"));
            const auto field_error = [&](const char* key, const std::string& what) {
                return format_error("E41", detail::located(cfg_name, "field '" + std::string(key) + "': " + what));
            };
            auto get_bool = [&](const char* key, bool& out) {
                auto it = cfg.find(key);
                if (it == cfg.end() || it->is_null()) return;
                if (!it->is_boolean()) throw field_error(key, "must be a boolean, got " + it->dump());
                out = it->get<bool>();
            };
            get_bool("do_lower_case", o.lower_case);
            get_bool("tokenize_chinese_chars", o.tokenize_chinese_chars);
            if (auto it = cfg.find("strip_accents"); it != cfg.end() && !it->is_null()) {
                if (!it->is_boolean()) throw field_error("strip_accents", "must be a boolean, got " + it->dump());
                o.strip_accents = it->get<bool>();
            }
            if (auto it = cfg.find("model_max_length"); it != cfg.end() && it->is_number()) {
                // HF writes int(1e30) for "no limit": keep the default then.
                const double m = it->get<double>();
                if (m >= 1.0 && m <= 1e9) o.max_length = static_cast<std::size_t>(m);
            }
            auto get_token = [&](const char* key, std::string& out) {
                auto it = cfg.find(key);
                if (it == cfg.end() || it->is_null()) return;
                if (it->is_string()) {
                    out = it->get<std::string>();
                } else if (it->is_object() && it->contains("content") &&
                           (*it)["content"].is_string()) {
                    out = (*it)["content"].get<std::string>();  // serialised AddedToken
                } else {
                    throw field_error(key, "must be a string (or an AddedToken with a 'content' string), got " +
                                               it->dump());
                }
                if (out.empty()) throw field_error(key, "a special token must not be empty");
                configured_tokens.emplace_back(key, &out);
            };
            get_token("unk_token", o.unk_token);
            get_token("cls_token", o.cls_token);
            get_token("sep_token", o.sep_token);
            get_token("pad_token", o.pad_token);
            get_token("mask_token", o.mask_token);
        }
        const auto st_path = dir / "sentence_bert_config.json";
        if (detail::optional_file_present(st_path)) {
            const nlohmann::json st = detail::read_json_file(st_path);
            if (!st.is_object()) throw format_error("E41", detail::located(st_path.string(), "not a JSON object"));
            if (auto it = st.find("max_seq_length"); it != st.end() && !it->is_null()) {
                if (!it->is_number_unsigned() || it->get<std::uint64_t>() == 0)
                    throw format_error("E41", detail::located(
                        st_path.string(), "max_seq_length is not a positive integer"));
                o.max_length = static_cast<std::size_t>(it->get<std::uint64_t>());
            }
        }
        hashee::vocab v = hashee::vocab::load(vocab_path);
        for (const auto& [key, token] : configured_tokens)
            if (!v.find(*token))
                throw format_error("E41", detail::located(cfg_path.string(),
                                                          "field '" + std::string(key) + "': '" + *token +
                                                              "' is not a token of the vocabulary " + vocab_path.string()));
        return wordpiece_tokenizer(std::move(v), std::move(o));
    }

    /// Word pieces of `text`, without [CLS]/[SEP].
    std::vector<std::string> tokenize(std::string_view text) const {
        std::vector<std::string> out;
        run(text, [&](std::int32_t id) { out.push_back(vocab_.token(id)); });
        return out;
    }

    /// Ids of the word pieces of `text`, without [CLS]/[SEP].
    std::vector<std::int32_t> token_ids(std::string_view text) const {
        std::vector<std::int32_t> out;
        run(text, [&](std::int32_t id) { out.push_back(id); });
        return out;
    }

    /// The normalised, pre-tokenised words of `text` (what WordPiece sees; HF's
    /// normalizer + pre_tokenizer). Special tokens written in the text come out as they are.
    std::vector<std::string> words(std::string_view text) const {
        std::vector<std::string> out;
        detail::require_utf8(text, "tokenizer input");
        scratch s;
        auto on_special = [&](std::size_t k) { out.push_back(specials_[k].first); };
        auto on_word = [&](const char32_t* cps, std::size_t len) {
            std::string w;
            for (std::size_t k = 0; k < len; ++k) detail::append_utf8(w, cps[k]);
            out.push_back(std::move(w));
        };
        split(text, s, on_special, on_word);
        return out;
    }

    /// [CLS] a [SEP] (b [SEP]); type ids 0 for the first segment incl. its specials, 1 for b
    /// and its [SEP]. Truncated to max_length (0: options().max_length; no_truncation: none),
    /// HF 'longest_first' for pairs. input_error when max_length cannot hold the specials.
    /// As HF's tokenizer(a, b) does, an empty b counts as no b ([CLS] a [SEP]); encode_batch,
    /// like HF's batch call, keeps it a pair ([CLS] a [SEP] [SEP]).
    encoding encode(std::string_view a, std::optional<std::string_view> b = std::nullopt,
                    std::size_t max_length = 0) const {
        if (b && b->empty()) b.reset();
        std::vector<std::int32_t> ia = token_ids(a);
        std::vector<std::int32_t> ib;
        if (b) ib = token_ids(*b);
        encoding e;
        assemble(ia, b ? &ib : nullptr, effective_max(max_length), e.ids, e.type_ids);
        return e;
    }

    /// Encodes every input and right-pads the rows to the longest one. input_error for an
    /// empty span. Inputs may mix single texts and pairs.
    encoded_batch encode_batch(std::span<const text_input> inputs,
                               std::size_t max_length = 0) const {
        if (inputs.empty()) throw input_error("E15", "tokenizer: encode_batch needs at least one input");
        const std::size_t max_len = effective_max(max_length);
        std::vector<encoding> rows(inputs.size());
        std::vector<std::int32_t> ia, ib;
        encoded_batch out;
        out.batch = inputs.size();
        out.lengths.resize(inputs.size());
        for (std::size_t r = 0; r < inputs.size(); ++r) {
            ia.clear();
            ib.clear();
            run(inputs[r].first, [&](std::int32_t id) { ia.push_back(id); });
            if (inputs[r].second)
                run(*inputs[r].second, [&](std::int32_t id) { ib.push_back(id); });
            assemble(ia, inputs[r].second ? &ib : nullptr, max_len, rows[r].ids, rows[r].type_ids);
            out.lengths[r] = rows[r].ids.size();
            out.seq_len = std::max(out.seq_len, rows[r].ids.size());
        }
        const std::size_t total = out.batch * out.seq_len;
        out.ids.assign(total, pad_id_);
        out.type_ids.assign(total, 0);
        out.mask.assign(total, 0);
        for (std::size_t r = 0; r < out.batch; ++r) {
            const std::size_t base = r * out.seq_len;
            std::copy(rows[r].ids.begin(), rows[r].ids.end(), out.ids.begin() + base);
            std::copy(rows[r].type_ids.begin(), rows[r].type_ids.end(),
                      out.type_ids.begin() + base);
            std::fill_n(out.mask.begin() + base, rows[r].ids.size(), 1);
        }
        return out;
    }

    const hashee::vocab& vocab() const { return vocab_; }
    const tokenizer_options& options() const { return opt_; }
    std::int32_t cls_id() const { return cls_id_; }
    std::int32_t sep_id() const { return sep_id_; }
    std::int32_t pad_id() const { return pad_id_; }
    std::int32_t unk_id() const { return unk_id_; }
    std::int32_t mask_id() const { return mask_id_; }

private:
    std::size_t effective_max(std::size_t max_length) const {
        return max_length == 0 ? opt_.max_length : max_length;
    }

    void assemble(std::vector<std::int32_t>& a, std::vector<std::int32_t>* b,
                  std::size_t max_length, std::vector<std::int32_t>& ids,
                  std::vector<std::int32_t>& type_ids) const {
        const std::size_t specials = b ? 3 : 2;
        if (max_length < specials)
            throw input_error("E20", "tokenizer: max_length " + std::to_string(max_length) +
                              " cannot hold the " + std::to_string(specials) +
                              " special tokens of a " + (b ? "pair" : "single text"));
        if (max_length != no_truncation) {
            const std::size_t budget = max_length - specials;
            if (b) {
                auto [n1, n2] = detail::longest_first(a.size(), b->size(), budget);
                a.resize(n1);
                b->resize(n2);
            } else if (a.size() > budget) {
                a.resize(budget);
            }
        }
        ids.clear();
        type_ids.clear();
        ids.reserve(a.size() + (b ? b->size() : 0) + specials);
        ids.push_back(cls_id_);
        ids.insert(ids.end(), a.begin(), a.end());
        ids.push_back(sep_id_);
        type_ids.assign(ids.size(), 0);
        if (b) {
            ids.insert(ids.end(), b->begin(), b->end());
            ids.push_back(sep_id_);
            type_ids.resize(ids.size(), 1);
        }
    }

    /// Per-call scratch buffers (allocated once per call, reused for every word).
    struct scratch {
        std::vector<char32_t> norm;     // normalised code points of one segment
        std::vector<char32_t> decomp;   // NFD of one segment (before dropping Mn)
        std::string word;               // UTF-8 of the current word
        std::vector<std::size_t> bounds;  // byte offsets of the word's character starts
        std::string piece;              // "##" + candidate
    };

    /// The whole pipeline; calls emit(id) for every word piece of `text`.
    template <class Emit>
    void run(std::string_view text, Emit&& emit) const {
        detail::require_utf8(text, "tokenizer input");
        scratch s;
        auto on_special = [&](std::size_t k) { emit(specials_[k].second); };
        auto on_word = [&](const char32_t* cps, std::size_t len) { word(cps, len, s, emit); };
        split(text, s, on_special, on_word);
    }

    /// Splits validated text into special tokens (on_special(index into specials_)) and
    /// normalised, pre-tokenised words (on_word(code points, count)), in order.
    /// Special tokens written in the text are matched on the raw text, exactly and
    /// case-sensitively, before any normalisation (HF: added tokens with normalized=false),
    /// leftmost first, longest first.
    template <class OnSpecial, class OnWord>
    void split(std::string_view text, scratch& s, OnSpecial& on_special, OnWord& on_word) const {
        std::size_t seg_begin = 0;
        std::size_t i = 0;
        while (i < text.size()) {
            if (special_first_byte_[static_cast<unsigned char>(text[i])]) {
                std::size_t hit = specials_.size();
                for (std::size_t k = 0; k < specials_.size(); ++k) {
                    if (text.compare(i, specials_[k].first.size(), specials_[k].first) == 0) {
                        hit = k;
                        break;
                    }
                }
                if (hit < specials_.size()) {
                    segment(text.substr(seg_begin, i - seg_begin), s, on_word);
                    on_special(hit);
                    i += specials_[hit].first.size();
                    seg_begin = i;
                    continue;
                }
            }
            ++i;
        }
        segment(text.substr(seg_begin), s, on_word);
    }

    /// Normalises one segment (no special tokens inside) and splits it into words: on
    /// whitespace (dropped) and punctuation (each punctuation character is a word).
    template <class OnWord>
    void segment(std::string_view text, scratch& s, OnWord& on_word) const {
        if (text.empty()) return;
        normalize(text, s);
        const auto& norm = s.norm;
        std::size_t start = 0;
        const std::size_t n = norm.size();
        for (std::size_t k = 0; k < n; ++k) {
            const char32_t c = norm[k];
            if (detail::is_bert_whitespace(c)) {
                if (k > start) on_word(norm.data() + start, k - start);
                start = k + 1;
            } else if (detail::is_bert_punctuation(c)) {
                if (k > start) on_word(norm.data() + start, k - start);
                on_word(norm.data() + k, 1);
                start = k + 1;
            }
        }
        if (n > start) on_word(norm.data() + start, n - start);
    }

    /// BertNormalizer: clean text, space around CJK ideographs, strip accents (NFD, drop Mn),
    /// lower-case -- in this order.
    void normalize(std::string_view text, scratch& s) const {
        auto& out = strip_accents_ ? s.decomp : s.norm;
        out.clear();
        std::size_t i = 0;
        bool any_non_ascii = false;
        while (i < text.size()) {
            const char32_t c = detail::next_code_point(text, i);
            if (c < 0x80) {
                if (c == '\t' || c == '\n' || c == '\r' || c == ' ') {
                    out.push_back(U' ');
                } else if (c < 0x20 || c == 0x7F) {
                    // control: dropped
                } else {
                    out.push_back(c);
                }
                continue;
            }
            any_non_ascii = true;
            if (c == 0xFFFD || detail::is_bert_control(c)) continue;
            if (detail::is_bert_whitespace(c)) {
                out.push_back(U' ');
            } else if (opt_.tokenize_chinese_chars && detail::is_chinese_char(c)) {
                out.push_back(U' ');
                if (strip_accents_) detail::append_nfd(out, c);  // U+F900.. decompose
                else out.push_back(c);
                out.push_back(U' ');
            } else if (strip_accents_) {
                detail::append_nfd(out, c);
            } else {
                out.push_back(c);
            }
        }
        if (strip_accents_) {
            s.norm.clear();
            for (const char32_t c : s.decomp) {
                if (any_non_ascii && detail::is_mark_nonspacing(c)) continue;
                if (opt_.lower_case) detail::append_lower(s.norm, c);
                else s.norm.push_back(c);
            }
        } else if (opt_.lower_case) {
            if (!any_non_ascii) {
                for (char32_t& c : s.norm)
                    if (c >= 'A' && c <= 'Z') c += 32;
            } else {
                s.decomp.swap(s.norm);
                s.norm.clear();
                for (const char32_t c : s.decomp) detail::append_lower(s.norm, c);
            }
        }
    }

    /// WordPiece on one pre-tokenised word: greedy longest match, "##" continuations;
    /// [UNK] for a word that is too long or cannot be covered.
    template <class Emit>
    void word(const char32_t* cps, std::size_t len, scratch& s, Emit& emit) const {
        if (len > opt_.max_input_chars_per_word) {
            emit(unk_id_);
            return;
        }
        s.word.clear();
        s.bounds.clear();
        for (std::size_t k = 0; k < len; ++k) {
            s.bounds.push_back(s.word.size());
            detail::append_utf8(s.word, cps[k]);
        }
        s.bounds.push_back(s.word.size());
        const std::string_view w = s.word;
        // Fast path: the whole word is a token.
        if (auto id = vocab_.find(w)) {
            emit(*id);
            return;
        }
        // Collect the pieces first: an uncoverable word yields one [UNK] and nothing else.
        std::int32_t pieces_small[32];
        std::vector<std::int32_t> pieces_big;
        std::size_t npieces = 0;
        auto push_piece = [&](std::int32_t id) {
            if (npieces < 32) pieces_small[npieces] = id;
            else {
                if (pieces_big.empty()) pieces_big.assign(pieces_small, pieces_small + 32);
                pieces_big.push_back(id);
            }
            ++npieces;
        };
        std::size_t start = 0;  // index into bounds
        while (start < len) {
            std::size_t end = len;
            std::optional<std::int32_t> found;
            while (end > start) {
                const std::string_view sub = w.substr(s.bounds[start], s.bounds[end] - s.bounds[start]);
                if (start == 0) {
                    found = vocab_.find(sub);
                } else {
                    s.piece.assign("##");
                    s.piece.append(sub);
                    found = vocab_.find(s.piece);
                }
                if (found) break;
                --end;
            }
            if (!found) {
                emit(unk_id_);
                return;
            }
            push_piece(*found);
            start = end;
        }
        if (npieces <= 32) {
            for (std::size_t k = 0; k < npieces; ++k) emit(pieces_small[k]);
        } else {
            for (const std::int32_t id : pieces_big) emit(id);
        }
    }

    hashee::vocab vocab_;
    tokenizer_options opt_;
    bool strip_accents_ = true;
    std::int32_t unk_id_ = 0, cls_id_ = 0, sep_id_ = 0, pad_id_ = 0, mask_id_ = 0;
    std::array<std::pair<std::string, std::int32_t>, 5> specials_;
    std::array<bool, 256> special_first_byte_{};
};

} // namespace hashee
