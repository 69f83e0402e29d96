// Progress reporting for long CLI steps: on a terminal one redrawn line with a bar and the ETA; otherwise (a log
// file, CI) a plain line at every 10% so logs stay readable; nothing with --quiet.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

namespace quantsim::cli {

class progress {
public:
    progress(std::string label, bool quiet) : label_(std::move(label)), quiet_(quiet), tty_(isatty(2) != 0) {}
    progress(const progress&) = delete;
    progress& operator=(const progress&) = delete;
    ~progress() { finish(); }

    /// `total` 0 = unknown (no bar, no ETA). `what` names the phase (a new phase starts a new plain line); `detail`
    /// (e.g. the current loss) is shown but never triggers a line of its own.
    void update(std::size_t done, std::size_t total, const std::string& what = {}, const std::string& detail = {}) {
        if (quiet_) return;
        const auto now = std::chrono::steady_clock::now();
        if (done < last_done_) {  // counting started over (e.g. a second calibration): a new run
            started_ = false;
            last_decile_ = -2;
        }
        last_done_ = done;
        if (!started_) {
            start_ = now;
            started_ = true;
        }
        const double elapsed = std::chrono::duration<double>(now - start_).count();
        std::string eta;
        if (total && done && done < total) eta = ", ETA " + format_seconds(elapsed / static_cast<double>(done) *
                                                                          static_cast<double>(total - done));
        const std::string name = what.empty() ? label_ : label_ + " " + what;
        if (tty_) {
            std::string bar;
            if (total) {
                const std::size_t width = 24, fill = done * width / total;
                bar = " [" + std::string(fill, '#') + std::string(width - fill, '.') + "]";
            }
            std::cerr << "\r\033[K" << name << bar << " " << done << (total ? "/" + std::to_string(total) : "")
                      << eta << (detail.empty() ? "" : ", " + detail) << std::flush;
            open_ = true;
            return;
        }
        // Plain lines: the first update, every further 10%, and the end.
        const int decile = total ? static_cast<int>(done * 10 / total) : -1;
        if (what != last_what_ || decile != last_decile_ || (!total && done % 100 == 0)) {
            std::cerr << name << ": " << done << (total ? "/" + std::to_string(total) : "") << eta
                      << (detail.empty() ? "" : ", " + detail) << "\n";
            last_decile_ = decile;
            last_what_ = what;
        }
    }
    /// Ends the redrawn line (called by the destructor too).
    void finish() {
        if (open_) std::cerr << "\n";
        open_ = false;
    }

private:
    static std::string format_seconds(double s) {
        char buf[32];
        const long v = static_cast<long>(s + 0.5);
        if (v >= 60) std::snprintf(buf, sizeof buf, "%ld:%02ld", v / 60, v % 60);
        else std::snprintf(buf, sizeof buf, "%ld s", v);
        return buf;
    }

    std::string label_;
    bool quiet_, tty_;
    bool started_ = false, open_ = false;
    std::chrono::steady_clock::time_point start_;
    int last_decile_ = -2;
    std::size_t last_done_ = 0;
    std::string last_what_ = "\x01";
};

}  // namespace quantsim::cli
