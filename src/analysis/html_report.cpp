#include <quantsim/analysis/html_report.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include <quantsim/io/file.hpp>

namespace quantsim {

namespace {

std::string esc(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o += c;
        }
    }
    return o;
}

std::string num(double v, int precision = 2) {
    if (std::isnan(v)) return "–";
    if (std::isinf(v)) return v > 0 ? "∞" : "−∞";
    std::ostringstream os;
    os << std::fixed << std::setprecision(precision) << v;
    return os.str();
}

// Finite value for plotting.
double finite(double v, double cap) {
    if (std::isnan(v)) return 0;
    return std::clamp(v, -cap, cap);
}

const char* const palette[] = {"#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#e53e3e"};

struct series {
    std::string name;
    std::vector<double> values;
};

// Grouped vertical bars, one group per label, with rotated labels under the axis.
std::string bar_chart(const std::string& title, const std::vector<std::string>& labels, const std::vector<series>& ss,
                      const std::string& y_label) {
    const double bar_w = ss.size() > 1 ? 6 : 8, group_w = bar_w * static_cast<double>(ss.size()) + 4;
    const double left = 56, top = 28, plot_h = 220, bottom = 130;
    const double plot_w = std::max(200.0, group_w * static_cast<double>(labels.size()));
    const double width = left + plot_w + 16, height = top + plot_h + bottom;
    double lo = 0, hi = 0;
    for (const auto& s : ss)
        for (double v : s.values) {
            lo = std::min(lo, finite(v, 1e6));
            hi = std::max(hi, finite(v, 1e6));
        }
    if (hi == lo) hi = lo + 1;
    const auto y = [&](double v) { return top + plot_h * (hi - finite(v, 1e6)) / (hi - lo); };
    std::ostringstream o;
    o << std::fixed << std::setprecision(1);
    o << "<figure><svg class=\"chart\" role=\"img\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 "
      << width << ' ' << height << "\" xmlns=\"http://www.w3.org/2000/svg\"><title>" << esc(title) << "</title>";
    for (int t = 0; t <= 4; ++t) {
        const double v = lo + (hi - lo) * t / 4.0;
        o << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y(v) << "\" y2=\"" << y(v)
          << "\" stroke=\"#e2e8f0\"/><text x=\"" << left - 4 << "\" y=\"" << y(v) + 4
          << "\" text-anchor=\"end\" font-size=\"10\">" << num(v, std::abs(hi - lo) < 5 ? 2 : 0) << "</text>";
    }
    o << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y(0) << "\" y2=\"" << y(0)
      << "\" stroke=\"#4a5568\"/>";
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const double gx = left + group_w * static_cast<double>(i) + 2;
        for (std::size_t k = 0; k < ss.size(); ++k) {
            const double v = i < ss[k].values.size() ? ss[k].values[i] : std::nan("");
            const double y0 = y(0), y1 = y(v);
            o << "<rect class=\"bar\" x=\"" << gx + bar_w * static_cast<double>(k) << "\" y=\"" << std::min(y0, y1)
              << "\" width=\"" << bar_w - 1 << "\" height=\"" << std::max(0.5, std::abs(y1 - y0)) << "\" fill=\""
              << palette[k % 5] << "\"><title>" << esc(labels[i]) << " — " << esc(ss[k].name) << ": " << num(v, 3)
              << "</title></rect>";
        }
        const double lx = gx + group_w / 2, ly = top + plot_h + 6;
        o << "<text x=\"" << lx << "\" y=\"" << ly << "\" font-size=\"8\" transform=\"rotate(60 " << lx << ' ' << ly
          << ")\">" << esc(labels[i].size() > 22 ? labels[i].substr(0, 21) + "…" : labels[i]) << "</text>";
    }
    o << "<text x=\"12\" y=\"" << top + plot_h / 2 << "\" font-size=\"11\" transform=\"rotate(-90 12 " << top + plot_h / 2
      << ")\" text-anchor=\"middle\">" << esc(y_label) << "</text>";
    for (std::size_t k = 0; k < ss.size(); ++k)
        o << "<rect x=\"" << left + 150 * static_cast<double>(k) << "\" y=\"6\" width=\"10\" height=\"10\" fill=\""
          << palette[k % 5] << "\"/><text x=\"" << left + 14 + 150 * static_cast<double>(k)
          << "\" y=\"15\" font-size=\"11\">" << esc(ss[k].name) << "</text>";
    o << "</svg><figcaption>" << esc(title) << "</figcaption></figure>\n";
    return o.str();
}

// A histogram (log-scaled counts) with the clipping range shaded.
std::string histogram_chart(const activation_analysis& a) {
    const double w = 260, h = 120, left = 4, top = 4, plot_w = w - 8, plot_h = h - 24;
    std::ostringstream o;
    o << std::fixed << std::setprecision(1);
    o << "<figure class=\"small\"><svg class=\"chart hist\" role=\"img\" width=\"" << w << "\" height=\"" << h
      << "\" viewBox=\"0 0 " << w << ' ' << h << "\" xmlns=\"http://www.w3.org/2000/svg\"><title>" << esc(a.name)
      << "</title>";
    const double span = static_cast<double>(a.max) - a.min;
    const auto x = [&](double v) { return left + (span > 0 ? (v - a.min) / span : 0.5) * plot_w; };
    const double c0 = std::clamp(x(a.clip_min), left, left + plot_w), c1 = std::clamp(x(a.clip_max), left, left + plot_w);
    o << "<rect x=\"" << c0 << "\" y=\"" << top << "\" width=\"" << std::max(0.0, c1 - c0) << "\" height=\"" << plot_h
      << "\" fill=\"#c6f6d5\"/>";
    double peak = 0;
    for (auto c : a.histogram) peak = std::max(peak, std::log1p(static_cast<double>(c)));
    const double bw = plot_w / static_cast<double>(std::max<std::size_t>(1, a.histogram.size()));
    for (std::size_t i = 0; i < a.histogram.size(); ++i) {
        const double v = peak > 0 ? std::log1p(static_cast<double>(a.histogram[i])) / peak : 0;
        o << "<rect class=\"bar\" x=\"" << left + bw * static_cast<double>(i) << "\" y=\"" << top + plot_h * (1 - v)
          << "\" width=\"" << std::max(0.5, bw - 0.3) << "\" height=\"" << plot_h * v << "\" fill=\"#2b6cb0\"/>";
    }
    for (double c : {c0, c1})
        o << "<line x1=\"" << c << "\" x2=\"" << c << "\" y1=\"" << top << "\" y2=\"" << top + plot_h
          << "\" stroke=\"#276749\" stroke-dasharray=\"3 2\"/>";
    o << "<text x=\"" << left << "\" y=\"" << h - 6 << "\" font-size=\"9\">" << num(a.min, 3) << "</text><text x=\""
      << left + plot_w << "\" y=\"" << h - 6 << "\" font-size=\"9\" text-anchor=\"end\">" << num(a.max, 3) << "</text>";
    o << "</svg><figcaption>" << esc(a.name) << " (" << esc(a.op_type) << ", " << a.bitwidth << " bits): clip ["
      << num(a.clip_min, 3) << ", " << num(a.clip_max, 3) << "], " << num(100 * a.clipped_fraction, 3)
      << "% clipped, SQNR " << num(a.sqnr_db, 1) << " dB</figcaption></figure>\n";
    return o.str();
}

// Per-channel [min, max] as vertical segments, with the per-tensor range as dashed lines.
std::string channel_range_chart(const weight_analysis& wa) {
    const std::size_t c = wa.channel_min.size();
    const double w = 260, h = 120, left = 4, top = 4, plot_w = w - 8, plot_h = h - 16;
    double lo = std::min(0.0, static_cast<double>(wa.min)), hi = std::max(0.0, static_cast<double>(wa.max));
    if (hi == lo) hi = lo + 1;
    const auto y = [&](double v) { return top + plot_h * (hi - v) / (hi - lo); };
    std::ostringstream o;
    o << std::fixed << std::setprecision(1);
    o << "<figure class=\"small\"><svg class=\"chart ranges\" role=\"img\" width=\"" << w << "\" height=\"" << h
      << "\" viewBox=\"0 0 " << w << ' ' << h << "\" xmlns=\"http://www.w3.org/2000/svg\"><title>" << esc(wa.name)
      << "</title>";
    o << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y(0) << "\" y2=\"" << y(0)
      << "\" stroke=\"#a0aec0\"/>";
    const double step = plot_w / static_cast<double>(std::max<std::size_t>(1, c));
    for (std::size_t i = 0; i < c; ++i) {
        const double xm = left + step * (static_cast<double>(i) + 0.5);
        o << "<line x1=\"" << xm << "\" x2=\"" << xm << "\" y1=\"" << y(wa.channel_max[i]) << "\" y2=\""
          << y(wa.channel_min[i]) << "\" stroke=\"#dd6b20\" stroke-width=\"" << std::max(0.6, step * 0.6) << "\"/>";
    }
    for (double v : {static_cast<double>(wa.min), static_cast<double>(wa.max)})
        o << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y(v) << "\" y2=\"" << y(v)
          << "\" stroke=\"#2d3748\" stroke-dasharray=\"3 2\"/>";
    o << "</svg><figcaption>" << esc(wa.name) << " (" << c << " channels, spread " << num(wa.channel_spread, 1)
      << "x, " << wa.bitwidth << " bits " << (wa.per_channel ? "per channel" : "per tensor") << ", SQNR "
      << num(wa.sqnr_db, 1) << " dB)</figcaption></figure>\n";
    return o.str();
}

// Accuracy against relative BitOps for the mixed-precision walk, the chosen point ringed.
std::string curve_chart(const mp_search_result& mp) {
    const double w = 560, h = 300, left = 56, top = 16, plot_w = w - 80, plot_h = h - 60;
    double lo = mp.target_accuracy, hi = mp.target_accuracy;
    for (const auto& p : mp.curve) {
        lo = std::min(lo, p.accuracy);
        hi = std::max(hi, p.accuracy);
    }
    if (hi == lo) hi = lo + 1e-3;
    const double full = mp.curve.empty() ? 1 : mp.curve.front().bitops;
    double xmin = 1;
    for (const auto& p : mp.curve) xmin = std::min(xmin, p.bitops / full);
    xmin = std::max(0.0, xmin - 0.05);
    const auto x = [&](double v) { return left + plot_w * (v - xmin) / (1.0 - xmin + 1e-12); };
    const auto y = [&](double v) { return top + plot_h * (hi - v) / (hi - lo); };
    std::ostringstream o;
    o << std::fixed << std::setprecision(1);
    o << "<figure><svg class=\"chart curve\" role=\"img\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 "
      << w << ' ' << h << "\" xmlns=\"http://www.w3.org/2000/svg\"><title>accuracy against BitOps</title>";
    o << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y(mp.target_accuracy) << "\" y2=\""
      << y(mp.target_accuracy) << "\" stroke=\"#e53e3e\" stroke-dasharray=\"4 3\"/>";
    o << "<polyline fill=\"none\" stroke=\"#2b6cb0\" points=\"";
    for (const auto& p : mp.curve) o << x(p.bitops / full) << ',' << y(p.accuracy) << ' ';
    o << "\"/>";
    for (std::size_t i = 0; i < mp.curve.size(); ++i) {
        const auto& p = mp.curve[i];
        o << "<circle class=\"point\" cx=\"" << x(p.bitops / full) << "\" cy=\"" << y(p.accuracy) << "\" r=\""
          << (i == mp.chosen ? 6 : 2.5) << "\" fill=\"" << (i == mp.chosen ? "none" : "#2b6cb0")
          << "\" stroke=\"#2b6cb0\"><title>BitOps " << num(p.bitops / full, 3) << ", accuracy " << num(p.accuracy, 4)
          << "</title></circle>";
    }
    for (int t = 0; t <= 4; ++t) {
        const double v = lo + (hi - lo) * t / 4.0, u = xmin + (1 - xmin) * t / 4.0;
        o << "<text x=\"" << left - 4 << "\" y=\"" << y(v) + 4 << "\" font-size=\"10\" text-anchor=\"end\">" << num(v, 3)
          << "</text><text x=\"" << x(u) << "\" y=\"" << top + plot_h + 16 << "\" font-size=\"10\" text-anchor=\"middle\">"
          << num(u, 2) << "</text>";
    }
    o << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << h - 8
      << "\" font-size=\"11\" text-anchor=\"middle\">BitOps relative to the baseline</text>";
    o << "</svg><figcaption>Accuracy along the mixed-precision walk; dashed: the target; ringed: the chosen point"
      << "</figcaption></figure>\n";
    return o.str();
}

void table(std::ostringstream& o, const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
    o << "<table><thead><tr>";
    for (const auto& h : header) o << "<th>" << esc(h) << "</th>";
    o << "</tr></thead><tbody>";
    for (const auto& r : rows) {
        o << "<tr>";
        for (const auto& c : r) o << "<td>" << esc(c) << "</td>";
        o << "</tr>";
    }
    o << "</tbody></table>\n";
}

}  // namespace

std::string render_html_report(const report_content& rc) {
    std::ostringstream o;
    o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << esc(rc.title)
      << "</title><style>"
         "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1a202c;max-width:1400px}"
         "h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #e2e8f0}"
         "table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #e2e8f0;padding:3px 8px;"
         "text-align:left}th{background:#f7fafc}figure{margin:8px 0;overflow-x:auto}figcaption{font-size:11px;"
         "color:#4a5568}.grid{display:flex;flex-wrap:wrap;gap:8px}.small{width:270px}.note{font-size:12px;"
         "color:#4a5568}</style></head><body>\n";
    o << "<h1>" << esc(rc.title) << "</h1>\n";
    if (!rc.summary.empty()) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& [k, v] : rc.summary) rows.push_back({k, v});
        o << "<h2 id=\"summary\">Summary</h2>";
        table(o, {"", ""}, rows);
    }
    for (const auto& t : rc.tables) {
        o << "<h2>" << esc(t.title) << "</h2>";
        table(o, t.header, t.rows);
    }
    if (const quant_analysis* a = rc.analysis) {
        o << "<h2 id=\"sensitivity\">Per-layer sensitivity</h2><p class=\"note\">" << esc(a->metric_name) << " on "
          << a->samples << " samples: FP32 " << num(a->fp32_metric, 3) << ", quantized " << num(a->quantized_metric, 3)
          << ". <b>Only this layer</b>: every other quantizer off (the layer's own cost). <b>All but this layer</b>: "
             "this layer's quantizers off (what keeping it in float would recover).</p>";
        if (!a->sensitivity.empty()) {
            std::vector<std::string> labels;
            series only{"only this layer quantized", {}}, but{"all but this layer quantized", {}};
            for (const auto& s : a->sensitivity) {
                labels.push_back(s.layer);
                only.values.push_back(s.only_this);
                but.values.push_back(s.all_but_this);
            }
            o << bar_chart("Per-layer sensitivity (" + a->metric_name + ")", labels, {only, but}, a->metric_name);
            std::vector<std::vector<std::string>> rows;
            std::vector<const layer_sensitivity*> sorted;
            for (const auto& s : a->sensitivity) sorted.push_back(&s);
            std::sort(sorted.begin(), sorted.end(),
                      [](auto* x, auto* y) { return x->only_this < y->only_this; });
            for (std::size_t i = 0; i < std::min<std::size_t>(10, sorted.size()); ++i)
                rows.push_back({sorted[i]->layer, sorted[i]->op_type, std::to_string(sorted[i]->quantizers.size()),
                                num(sorted[i]->only_this, 3), num(sorted[i]->all_but_this, 3)});
            o << "<p class=\"note\">The ten layers that hurt most on their own:</p>";
            table(o, {"layer", "op", "quantizers", "only this", "all but this"}, rows);
        }
        o << "<h2 id=\"sqnr\">SQNR per quantizer</h2>";
        {
            std::vector<std::string> labels;
            series s{"weight SQNR (dB)", {}};
            for (const auto& w : a->weights) {
                labels.push_back(w.name);
                s.values.push_back(finite(w.sqnr_db, 200));
            }
            if (!labels.empty()) o << bar_chart("Weight SQNR per layer", labels, {s}, "dB");
            labels.clear();
            series t{"activation SQNR (dB)", {}};
            for (const auto& x : a->activations) {
                labels.push_back(x.name);
                t.values.push_back(finite(x.sqnr_db, 200));
            }
            if (!labels.empty()) o << bar_chart("Activation SQNR per quantizer (each alone, on FP32 values)", labels, {t}, "dB");
        }
        o << "<h2 id=\"histograms\">Activation histograms and clipping ranges</h2><p class=\"note\">Counts on a log "
             "scale over the observed range; green: the encoding's representable range. Lowest SQNR first.</p>"
             "<div class=\"grid\">";
        std::vector<const activation_analysis*> acts;
        for (const auto& x : a->activations) acts.push_back(&x);
        std::stable_sort(acts.begin(), acts.end(), [](auto* x, auto* y) { return x->sqnr_db < y->sqnr_db; });
        for (std::size_t i = 0; i < acts.size() && i < rc.max_small_charts; ++i) o << histogram_chart(*acts[i]);
        o << "</div>";
        if (acts.size() > rc.max_small_charts)
            o << "<p class=\"note\">" << acts.size() - rc.max_small_charts << " more quantizers not drawn.</p>";
        o << "<h2 id=\"ranges\">Per-channel weight ranges</h2><p class=\"note\">Each bar is one output channel's "
             "[min, max]; dashed: the whole tensor's. A large spread (largest channel range / median) is what makes "
             "per-tensor weight quantization fail. Largest spread first.</p><div class=\"grid\">";
        std::vector<const weight_analysis*> ws;
        for (const auto& w : a->weights)
            if (!w.channel_min.empty()) ws.push_back(&w);
        std::stable_sort(ws.begin(), ws.end(), [](auto* x, auto* y) { return x->channel_spread > y->channel_spread; });
        for (std::size_t i = 0; i < ws.size() && i < rc.max_small_charts; ++i) o << channel_range_chart(*ws[i]);
        o << "</div>";
    }
    if (const mp_search_result* mp = rc.mixed_precision) {
        o << "<h2 id=\"mixed-precision\">Mixed precision search</h2><p class=\"note\">" << mp->groups.size()
          << " groups, " << mp->evaluations << " evaluations; reference " << num(mp->reference_accuracy, 4)
          << ", target " << num(mp->target_accuracy, 4) << "; " << (mp->met_target ? "target met" : "target not met")
          << ".</p>" << curve_chart(*mp);
        std::vector<std::vector<std::string>> rows;
        const auto& p = mp->curve[mp->chosen];
        for (std::size_t g = 0; g < mp->groups.size(); ++g)
            rows.push_back({mp->groups[g].weights.empty() ? mp->groups[g].activation : mp->groups[g].weights[0],
                            std::to_string(mp->groups[g].layers.size()), std::to_string(mp->groups[g].macs),
                            to_string(mp->candidates[p.choice[g]])});
        table(o, {"group", "layers", "MACs", "chosen"}, rows);
    }
    if (const mixquant_result* mq = rc.mixquant) {
        o << "<h2 id=\"mixquant\">MixQuant</h2><p class=\"note\">Each layer gets the fewest weight bits whose weight "
             "SQNR reaches "
          << num(mq->min_sqnr_db, 1) << " dB; mean " << num(mq->mean_bitwidth(), 2) << " bits.</p>";
        std::vector<std::string> labels;
        series s{"weight bits", {}};
        for (const auto& l : mq->layers) {
            labels.push_back(l.weight);
            s.values.push_back(l.bitwidth);
        }
        if (!labels.empty()) o << bar_chart("MixQuant bit width per layer", labels, {s}, "bits");
    }
    o << "<p class=\"note\">Written by quantsim.</p></body></html>\n";
    return o.str();
}

void write_html_report(const std::filesystem::path& path, const report_content& content) {
    write_file_atomic(path, render_html_report(content));
}

}  // namespace quantsim
