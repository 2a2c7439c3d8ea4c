// The SVG plot writer: well-formed output (balanced tags, escaped text), one polyline per line
// series, a marker per finite point, 1-2-5 ticks, an empty figure, NaN points, file errors.

#include <catch2/catch.hpp>

#include <hashee/core/error.hpp>

#include "../tools/svg_plot.hpp"

#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace hashee;
using Catch::Matchers::Contains;

namespace {

std::size_t count(const std::string& s, const std::string& needle) {
    std::size_t n = 0;
    for (auto p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size())) ++n;
    return n;
}

/// A small XML well-formedness check: one prolog, tags balanced and properly nested, a single
/// root <svg>, quoted attribute values without '<', and every '&' starting a known entity.
/// Returns "" when well formed, else what is wrong.
std::string xml_problem(const std::string& s) {
    std::vector<std::string> stack;
    std::size_t roots = 0;
    std::size_t i = 0;
    if (s.rfind("<?xml ", 0) == 0) {
        i = s.find("?>");
        if (i == std::string::npos) return "unterminated prolog";
        i += 2;
    }
    while (i < s.size()) {
        const char c = s[i];
        if (c == '&') {
            static const char* const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
            bool ok = false;
            for (const char* e : entities) ok = ok || s.compare(i, std::string(e).size(), e) == 0;
            if (!ok) return "bare '&' at " + std::to_string(i);
            ++i;
            continue;
        }
        if (c == '>') return "bare '>' in text at " + std::to_string(i);
        if (c != '<') {
            if (stack.empty() && !std::isspace(static_cast<unsigned char>(c))) return "text outside the root";
            ++i;
            continue;
        }
        // A tag: find its end, skipping quoted attribute values.
        std::size_t j = i + 1;
        char quote = 0;
        for (; j < s.size(); ++j) {
            if (quote) {
                if (s[j] == quote) quote = 0;
                else if (s[j] == '<') return "'<' in an attribute value";
                else if (s[j] == '&') {
                    if (s.compare(j, 5, "&amp;") != 0 && s.compare(j, 4, "&lt;") != 0 && s.compare(j, 4, "&gt;") != 0 &&
                        s.compare(j, 6, "&quot;") != 0 && s.compare(j, 6, "&apos;") != 0)
                        return "bare '&' in an attribute value";
                }
            } else if (s[j] == '"' || s[j] == '\'') {
                quote = s[j];
            } else if (s[j] == '>') {
                break;
            } else if (s[j] == '<') {
                return "'<' inside a tag";
            }
        }
        if (j >= s.size()) return "unterminated tag";
        std::string tag = s.substr(i + 1, j - i - 1);
        i = j + 1;
        if (tag.empty()) return "empty tag";
        if (tag[0] == '/') {
            const std::string name = tag.substr(1);
            if (stack.empty() || stack.back() != name) return "unbalanced </" + name + ">";
            stack.pop_back();
            continue;
        }
        const bool self_closing = tag.back() == '/';
        const std::string name = tag.substr(0, tag.find_first_of(" \t\n/"));
        if (name.empty()) return "tag without a name";
        if (stack.empty() && ++roots > 1) return "more than one root element";
        if (!self_closing) stack.push_back(name);
    }
    if (!stack.empty()) return "unclosed <" + stack.back() + ">";
    if (roots != 1) return "no root element";
    return "";
}

/// The text of every <text> element inside the <g class="CLS"> group.
std::vector<std::string> group_texts(const std::string& svg, const std::string& cls) {
    std::vector<std::string> out;
    const auto start = svg.find("<g class=\"" + cls + "\"");
    if (start == std::string::npos) return out;
    const auto end = svg.find("</g>", start);
    for (auto p = svg.find("<text", start); p != std::string::npos && p < end; p = svg.find("<text", p + 1)) {
        const auto a = svg.find('>', p) + 1;
        out.push_back(svg.substr(a, svg.find("</text>", a) - a));
    }
    return out;
}

plot::figure sample() {
    plot::figure f;
    f.title = "Quality against FLOPs speed-up (SST-2)";
    f.x_label = "speed-up (x)";
    f.y_label = "accuracy";
    f.data.push_back({"HashEE", {1.0, 1.5, 2.0, 2.5, 3.0}, {0.915, 0.912, 0.905, 0.893, 0.875}});
    f.data.push_back({"PABEE", {1.0, 1.4, 1.9, 2.6}, {0.915, 0.905, 0.884, 0.85}});
    f.data.push_back({"a<b&c \"q\"", {1.2, 2.2, 2.8}, {0.86, 0.87, 0.88}, false});
    f.data.push_back({"DeeBERT", {1.1, 1.6, std::nan(""), 2.1, 2.9}, {0.91, 0.9, 0.95, 0.88, 0.82}});
    return f;
}

} // namespace

TEST_CASE("a figure is well-formed SVG with escaped labels", "[plot]") {
    const auto svg = plot::to_svg(sample());
    INFO(svg);
    CHECK(xml_problem(svg).empty());
    CHECK(svg.rfind("<?xml", 0) == 0);
    CHECK(svg.find(">0.95<") == std::string::npos);
    CHECK_THAT(svg, Contains("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"480\""));
    CHECK_THAT(svg, Contains(">Quality against FLOPs speed-up (SST-2)</text>"));
    CHECK_THAT(svg, Contains(">speed-up (x)</text>"));
    CHECK_THAT(svg, Contains(">accuracy</text>"));
    CHECK_THAT(svg, Contains(">HashEE</text>"));
    CHECK_THAT(svg, Contains(">PABEE</text>"));
    CHECK_THAT(svg, Contains(">DeeBERT</text>"));
    CHECK_THAT(svg, Contains(">a&lt;b&amp;c &quot;q&quot;</text>"));
    CHECK(count(svg, "a<b") == 0);
    // One polyline per series with lines (3 of 4), one marker per finite point (5+4+3+4).
    CHECK(count(svg, "<polyline") == 3);
    CHECK(count(svg, "class=\"marker\"") == 16);
    CHECK(count(svg, "class=\"legend-marker\"") == 4);
    // Distinct colours.
    CHECK_THAT(svg, Contains("#1f77b4") && Contains("#ff7f0e") && Contains("#2ca02c") && Contains("#d62728"));
    // Tick labels: x in [1, 3] in steps of 0.5; y in [0.82, 0.915] (the 0.95 at a NaN x is
    // skipped) in steps of 0.02.
    CHECK(group_texts(svg, "x-tick-labels") == std::vector<std::string>{"1.0", "1.5", "2.0", "2.5", "3.0"});
    CHECK(group_texts(svg, "y-tick-labels") == std::vector<std::string>{"0.82", "0.84", "0.86", "0.88", "0.90", "0.92"});
}

TEST_CASE("nice ticks are 1-2-5 steps enclosing the data", "[plot]") {
    using plot::detail::make_axis;
    auto a = make_axis(1.0, 3.0);
    CHECK(a.step == 0.5);
    CHECK(a.lo == 1.0);
    CHECK(a.hi == 3.0);
    CHECK(a.ticks == std::vector<double>{1.0, 1.5, 2.0, 2.5, 3.0});
    a = make_axis(0.0, 10.0);
    CHECK(a.step == 2.0);
    CHECK(a.ticks.size() == 6);
    a = make_axis(-0.3, 0.7);
    CHECK(a.step == Approx(0.2));
    CHECK(a.lo == Approx(-0.4));
    CHECK(a.hi == Approx(0.8));
    a = make_axis(120.0, 980.0);
    CHECK(a.step == 200.0);
    CHECK(a.lo == 0.0);
    CHECK(a.hi == 1000.0);
    a = make_axis(5.0, 5.0); // a single value gets a range around it
    CHECK(a.lo < 5.0);
    CHECK(a.hi > 5.0);
    CHECK(plot::detail::format_number(0.30000000000000004, 1) == "0.3");
    CHECK(plot::detail::format_number(-0.0, 2) == "0.00");
    CHECK(plot::detail::format_number(-1e-17, 1) == "0.0"); // 0 - 0.1 * 1e-16 rounding noise
    CHECK(plot::detail::format_number(2.0, 1) == "2.0");
    CHECK(plot::detail::format_number(-2.5, 1) == "-2.5");
    CHECK(plot::detail::format_number(1000.0, 0) == "1000");
    CHECK(plot::detail::coord(12.50) == "12.5");
    CHECK(plot::detail::coord(-0.001) == "0");
}

TEST_CASE("an empty figure and an all-NaN series are still valid SVG", "[plot]") {
    const plot::figure empty;
    const auto svg = plot::to_svg(empty);
    CHECK(xml_problem(svg).empty());
    CHECK(count(svg, "<polyline") == 0);
    CHECK(count(svg, "class=\"marker\"") == 0);
    CHECK(count(svg, "class=\"legend\"") == 0);
    CHECK(group_texts(svg, "x-tick-labels") == std::vector<std::string>{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"});

    plot::figure f;
    f.data.push_back({"nothing", {NAN, 1.0}, {2.0, INFINITY}});
    const auto s = plot::to_svg(f);
    CHECK(xml_problem(s).empty());
    CHECK(count(s, "<polyline") == 1);
    CHECK(count(s, "class=\"marker\"") == 0);
    CHECK(s.find("nan") == std::string::npos);
    CHECK(s.find("inf") == std::string::npos);
}

TEST_CASE("the checker itself rejects malformed XML", "[plot]") {
    CHECK_FALSE(xml_problem("<svg><g></svg>").empty());
    CHECK_FALSE(xml_problem("<svg><text>a<b</text></svg>").empty());
    CHECK_FALSE(xml_problem("<svg><text>a&b</text></svg>").empty());
    CHECK_FALSE(xml_problem("<svg></svg><svg></svg>").empty());
    CHECK(xml_problem("<svg><g><line x=\"1\"/></g><text>a&amp;b</text></svg>").empty());
}

TEST_CASE("write_svg writes the file; errors are typed", "[plot][errors]") {
    const auto path = std::filesystem::temp_directory_path() / "hashee_test_svg_plot.svg";
    plot::write_svg(sample(), path);
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    CHECK(ss.str() == plot::to_svg(sample()));
    std::filesystem::remove(path);

    CHECK_THROWS_AS(plot::write_svg(sample(), "/nonexistent/dir/x.svg"), io_error);
    plot::figure bad;
    bad.data.push_back({"s", {1.0, 2.0}, {1.0}});
    CHECK_THROWS_WITH(plot::to_svg(bad), Contains("series 's' has 2 x values but 1 y values"));
    CHECK_THROWS_AS(plot::to_svg(bad), input_error);
    plot::figure tiny;
    tiny.width = 10;
    CHECK_THROWS_AS(plot::to_svg(tiny), input_error);
}
