#pragma once
// A tiny SVG line/scatter plot writer with no dependencies beyond the standard library, for
// reports such as "quality against FLOPs speed-up", one series per method.
//
//   hashee::plot::figure f{"SST-2", "speed-up (x)", "accuracy"};
//   f.data.push_back({"HashEE", {1.0, 1.5, 2.0}, {0.91, 0.90, 0.88}});
//   hashee::plot::write_svg(f, "sst2.svg");
//
// Axes get "nice" ticks (steps of 1, 2 or 5 times a power of ten) that enclose the data, a light
// grid, a legend to the right of the plot area, a marker per point (shape and colour differ per
// series) and, for series with `lines`, one polyline through the points in the order given.
// Points with a non-finite x or y are skipped. All text is XML-escaped.

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <hashee/core/detail/write_file.hpp>
#include <hashee/core/error.hpp>

namespace hashee::plot {

struct series {
    std::string label;
    std::vector<double> x, y;
    bool lines = true;
};

struct figure {
    std::string title, x_label, y_label;
    std::vector<series> data;
    int width = 720, height = 480;
};

namespace detail {

/// `s` with &, <, >, " and ' replaced by entities, and the control characters XML 1.0 forbids
/// dropped (tab, line feed and carriage return are kept).
inline std::string xml_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char ch : s) {
        switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default:
            if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') break;
            out += ch;
        }
    }
    return out;
}

/// Fixed-point text of `v` with exactly `decimals` decimals (a tick label: every label of an
/// axis gets the same number), a negative zero written without its sign. Locale-independent.
inline std::string format_number(double v, int decimals) {
    std::array<char, 512> buf{};
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v, std::chars_format::fixed,
                                 std::clamp(decimals, 0, 17));
    std::string s(buf.data(), r.ec == std::errc{} ? r.ptr : buf.data());
    if (s.size() > 1 && s[0] == '-' && s.find_first_not_of("0.", 1) == std::string::npos) s.erase(0, 1);
    return s;
}

/// A coordinate in the SVG: at most two decimals, trailing zeros dropped.
inline std::string coord(double v) {
    std::string s = format_number(v, 2);
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    if (s == "-0") s = "0";
    return s;
}

/// Display width estimate of `s` in pixels: 0.6 em per code point.
inline double text_width(std::string_view s, double font_size) {
    std::size_t cps = 0;
    for (const char ch : s) cps += (static_cast<unsigned char>(ch) & 0xC0) != 0x80 ? 1 : 0;
    return 0.6 * font_size * static_cast<double>(cps);
}

/// 1, 2 or 5 times a power of ten, the smallest such value >= raw (> 0).
inline double nice_step(double raw) {
    const double e = std::floor(std::log10(raw));
    const double p = std::pow(10.0, e);
    const double f = raw / p;
    const double m = f <= 1.0 + 1e-9 ? 1.0 : f <= 2.0 + 1e-9 ? 2.0 : f <= 5.0 + 1e-9 ? 5.0 : 10.0;
    return m * p;
}

struct axis {
    double lo = 0.0, hi = 1.0, step = 0.5;
    std::vector<double> ticks;
    int decimals = 0;
};

/// An axis from lo to hi (multiples of a 1-2-5 step) that encloses [min, max], with about
/// `target` intervals. Without data (min > max) the range is [0, 1].
inline axis make_axis(double min, double max, int target = 5) {
    if (!(min <= max)) {
        min = 0.0;
        max = 1.0;
    }
    if (min == max) {
        const double pad = min == 0.0 ? 1.0 : std::abs(min) * 0.1;
        min -= pad;
        max += pad;
    }
    const double span = max - min;
    if (!std::isfinite(span))
        throw input_error("C18", hashee::detail::located("plot", "data range too large to draw"));
    axis a;
    a.step = nice_step(span / target);
    const double i0 = std::floor(min / a.step + 1e-9), i1 = std::ceil(max / a.step - 1e-9);
    a.lo = i0 * a.step;
    a.hi = i1 * a.step;
    for (double i = i0; i <= i1 + 0.5; i += 1.0) a.ticks.push_back(i * a.step);
    a.decimals = std::max(0, -static_cast<int>(std::floor(std::log10(a.step) + 1e-9)));
    return a;
}

inline constexpr std::array<const char*, 10> palette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/// A marker of shape `shape` (0 circle, 1 square, 2 triangle, 3 diamond) centred on (x, y).
inline void append_marker(std::string& out, int shape, double x, double y, const char* colour, const char* cls) {
    constexpr double r = 3.5;
    out += "<";
    switch (shape % 4) {
    case 0:
        out += "circle cx=\"";
        out += coord(x);
        out += "\" cy=\"";
        out += coord(y);
        out += "\" r=\"";
        out += coord(r);
        break;
    case 1:
        out += "rect x=\"";
        out += coord(x - r);
        out += "\" y=\"";
        out += coord(y - r);
        out += "\" width=\"";
        out += coord(2 * r);
        out += "\" height=\"";
        out += coord(2 * r);
        break;
    case 2:
        out += "polygon points=\"";
        out += coord(x) + "," + coord(y - 1.2 * r) + " ";
        out += coord(x - 1.1 * r) + "," + coord(y + 0.8 * r) + " ";
        out += coord(x + 1.1 * r) + "," + coord(y + 0.8 * r);
        break;
    default:
        out += "polygon points=\"";
        out += coord(x) + "," + coord(y - 1.3 * r) + " ";
        out += coord(x + 1.3 * r) + "," + coord(y) + " ";
        out += coord(x) + "," + coord(y + 1.3 * r) + " ";
        out += coord(x - 1.3 * r) + "," + coord(y);
        break;
    }
    out += "\" class=\"";
    out += cls;
    out += "\" fill=\"";
    out += colour;
    out += "\"/>\n";
}

/// <text x=".." y=".." extra>escaped</text>
inline void append_text(std::string& out, double x, double y, std::string_view extra, std::string_view text) {
    out += "<text x=\"";
    out += coord(x);
    out += "\" y=\"";
    out += coord(y);
    out += "\"";
    if (!extra.empty()) {
        out += " ";
        out += extra;
    }
    out += ">";
    out += xml_escape(text);
    out += "</text>\n";
}

inline void append_line(std::string& out, double x1, double y1, double x2, double y2) {
    out += "<line x1=\"";
    out += coord(x1);
    out += "\" y1=\"";
    out += coord(y1);
    out += "\" x2=\"";
    out += coord(x2);
    out += "\" y2=\"";
    out += coord(y2);
    out += "\"/>\n";
}

} // namespace detail

/// The figure as a standalone SVG document. input_error when a series' x and y differ in
/// length, or the figure is smaller than 200 x 150 pixels.
inline std::string to_svg(const figure& fig) {
    using namespace detail;
    if (fig.width < 200 || fig.height < 150)
        throw input_error("C18", hashee::detail::located("plot::to_svg", "figure must be at least 200 x 150 pixels"));

    // Data range over the finite points.
    double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
    bool any_label = false;
    double legend_text = 0.0;
    for (const auto& s : fig.data) {
        if (s.x.size() != s.y.size()) {
            std::string what = "series '";
            what += s.label;
            what += "' has ";
            what += std::to_string(s.x.size());
            what += " x values but ";
            what += std::to_string(s.y.size());
            what += " y values";
            throw input_error("C18", hashee::detail::located("plot::to_svg", what));
        }
        for (std::size_t i = 0; i < s.x.size(); ++i) {
            if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
            xmin = std::min(xmin, s.x[i]);
            xmax = std::max(xmax, s.x[i]);
            ymin = std::min(ymin, s.y[i]);
            ymax = std::max(ymax, s.y[i]);
        }
        if (!s.label.empty()) {
            any_label = true;
            legend_text = std::max(legend_text, text_width(s.label, 12.0));
        }
    }
    const axis ax = make_axis(xmin, xmax, 5);
    const axis ay = make_axis(ymin, ymax, 5);

    // Layout.
    const double W = fig.width, H = fig.height;
    double ytick_w = 0.0;
    for (double t : ay.ticks) ytick_w = std::max(ytick_w, text_width(format_number(t, ay.decimals), 12.0));
    const double left = (fig.y_label.empty() ? 10.0 : 30.0) + ytick_w + 10.0;
    const double top = fig.title.empty() ? 16.0 : 40.0;
    const double bottom = H - (fig.x_label.empty() ? 30.0 : 50.0);
    const double legend_w = any_label ? std::min(legend_text, W / 3.0) + 50.0 : 0.0;
    const double right = W - 20.0 - legend_w;
    const double pw = std::max(right - left, 40.0), ph = std::max(bottom - top, 40.0);
    // The axis range [lo, hi] sits `pad` pixels inside the frame so that markers on the
    // extreme ticks are not cut by it.
    const double pad = 8.0;
    auto px = [&](double x) { return left + pad + (x - ax.lo) / (ax.hi - ax.lo) * (pw - 2 * pad); };
    auto py = [&](double y) { return top + ph - pad - (y - ay.lo) / (ay.hi - ay.lo) * (ph - 2 * pad); };

    std::string out;
    out += "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"";
    out += std::to_string(fig.width);
    out += "\" height=\"";
    out += std::to_string(fig.height);
    out += "\" viewBox=\"0 0 ";
    out += std::to_string(fig.width);
    out += " ";
    out += std::to_string(fig.height);
    out += "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
    out += "<rect x=\"0\" y=\"0\" width=\"";
    out += std::to_string(fig.width);
    out += "\" height=\"";
    out += std::to_string(fig.height);
    out += "\" fill=\"white\"/>\n";

    if (!fig.title.empty()) { // centred over the plot; a title too wide for that starts at the left edge
        if (static_cast<double>(fig.title.size()) * 8.0 < 2 * (left + pw / 2) - 16)
            append_text(out, left + pw / 2, 26.0, "class=\"title\" font-size=\"16\" text-anchor=\"middle\"", fig.title);
        else
            append_text(out, 8.0, 26.0, "class=\"title\" font-size=\"16\" text-anchor=\"start\"", fig.title);
    }

    // Grid.
    out += "<g class=\"grid\" stroke=\"#e4e4e4\" stroke-width=\"1\">\n";
    for (double t : ax.ticks) append_line(out, px(t), top, px(t), top + ph);
    for (double t : ay.ticks) append_line(out, left, py(t), left + pw, py(t));
    out += "</g>\n";

    // Ticks and their labels.
    out += "<g class=\"x-ticks\" stroke=\"black\" stroke-width=\"1\">\n";
    for (double t : ax.ticks) append_line(out, px(t), top + ph, px(t), top + ph + 5);
    out += "</g>\n<g class=\"x-tick-labels\" font-size=\"12\" text-anchor=\"middle\">\n";
    for (double t : ax.ticks) append_text(out, px(t), top + ph + 18, "", format_number(t, ax.decimals));
    out += "</g>\n<g class=\"y-ticks\" stroke=\"black\" stroke-width=\"1\">\n";
    for (double t : ay.ticks) append_line(out, left - 5, py(t), left, py(t));
    out += "</g>\n<g class=\"y-tick-labels\" font-size=\"12\" text-anchor=\"end\">\n";
    for (double t : ay.ticks) append_text(out, left - 8, py(t) + 4, "", format_number(t, ay.decimals));
    out += "</g>\n";

    // Frame.
    out += "<rect class=\"frame\" x=\"";
    out += coord(left);
    out += "\" y=\"";
    out += coord(top);
    out += "\" width=\"";
    out += coord(pw);
    out += "\" height=\"";
    out += coord(ph);
    out += "\" fill=\"none\" stroke=\"black\" stroke-width=\"1\"/>\n";

    // Axis labels.
    if (!fig.x_label.empty())
        append_text(out, left + pw / 2, H - 12, "class=\"x-label\" font-size=\"13\" text-anchor=\"middle\"", fig.x_label);
    if (!fig.y_label.empty()) {
        const double yx = 18.0, yy = top + ph / 2;
        std::string extra = "class=\"y-label\" font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 ";
        extra += coord(yx);
        extra += " ";
        extra += coord(yy);
        extra += ")\"";
        append_text(out, yx, yy, extra, fig.y_label);
    }

    // Series.
    for (std::size_t k = 0; k < fig.data.size(); ++k) {
        const auto& s = fig.data[k];
        const char* colour = palette[k % palette.size()];
        const int shape = static_cast<int>(k % 4);
        out += "<g class=\"series\">\n";
        if (s.lines) {
            out += "<polyline fill=\"none\" stroke=\"";
            out += colour;
            out += "\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"";
            bool first = true;
            for (std::size_t i = 0; i < s.x.size(); ++i) {
                if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
                if (!first) out += " ";
                first = false;
                out += coord(px(s.x[i]));
                out += ",";
                out += coord(py(s.y[i]));
            }
            out += "\"/>\n";
        }
        for (std::size_t i = 0; i < s.x.size(); ++i) {
            if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
            append_marker(out, shape, px(s.x[i]), py(s.y[i]), colour, "marker");
        }
        out += "</g>\n";
    }

    // Legend, right of the plot area.
    if (any_label) {
        const double lx = left + pw + 14.0;
        double ly = top + 6.0;
        out += "<g class=\"legend\" font-size=\"12\">\n";
        for (std::size_t k = 0; k < fig.data.size(); ++k) {
            const auto& s = fig.data[k];
            if (s.label.empty()) continue;
            const char* colour = palette[k % palette.size()];
            if (s.lines) {
                out += "<line stroke=\"";
                out += colour;
                out += "\" stroke-width=\"2\" x1=\"";
                out += coord(lx);
                out += "\" y1=\"";
                out += coord(ly);
                out += "\" x2=\"";
                out += coord(lx + 24);
                out += "\" y2=\"";
                out += coord(ly);
                out += "\"/>\n";
            }
            append_marker(out, static_cast<int>(k % 4), lx + 12, ly, colour, "legend-marker");
            append_text(out, lx + 32, ly + 4, "", s.label);
            ly += 20.0;
        }
        out += "</g>\n";
    }
    out += "</svg>\n";
    return out;
}

/// Writes to_svg(fig) to `path`, atomically. io_error (E61) when the file cannot be written.
inline void write_svg(const figure& fig, const std::filesystem::path& path) {
    const std::string svg = to_svg(fig);
    hashee::detail::write_file_atomically(path, svg); // io_error E61 when it cannot be written
}

} // namespace hashee::plot
