// A self-contained HTML report (inline SVG charts and CSS, no script, no network): model summary, per-layer
// sensitivity, SQNR of weights and activations, activation histograms with their clipping ranges, per-channel weight
// ranges, and, when given, the PTQ steps and the mixed-precision results. `quantsim analyze` and `quantsim ptq`
// write it as DIR/report.html.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <quantsim/analysis/quant_analysis.hpp>
#include <quantsim/ptq/mixed_precision.hpp>
#include <quantsim/ptq/mixquant.hpp>

namespace quantsim {

struct report_table {
    std::string title;
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
};

struct report_content {
    std::string title = "quantsim report";
    std::vector<std::pair<std::string, std::string>> summary;  ///< key / value lines at the top
    std::vector<report_table> tables;                          ///< e.g. the PTQ steps
    const quant_analysis* analysis = nullptr;
    const mp_search_result* mixed_precision = nullptr;
    const mixquant_result* mixquant = nullptr;
    /// Histograms and channel-range charts are drawn for at most this many quantizers each (the rest are listed).
    std::size_t max_small_charts = 48;
};

std::string render_html_report(const report_content& content);
/// Renders and writes atomically (temporary file, then rename).
void write_html_report(const std::filesystem::path& path, const report_content& content);

}  // namespace quantsim
