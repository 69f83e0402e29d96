// Atomic file writes and bounded reads (include/quantsim/io/file.hpp).
#include <quantsim/io/file.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <system_error>

#include <quantsim/core/error.hpp>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#define QUANTSIM_POSIX_FILES 1
#else
#define QUANTSIM_POSIX_FILES 0
#endif

namespace quantsim {

namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) { return std::strerror(e); }

// A temporary name next to the target: same folder, so the final rename stays on one file system and is atomic.
fs::path temp_path_for(const fs::path& path) {
    static std::atomic<unsigned> counter{0};
    std::random_device rd;
    const auto stamp = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
    // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on one long chain of operator+.
    std::string tmp_name(".");
    tmp_name += path.filename().string();
    tmp_name += ".tmp-";
#if QUANTSIM_POSIX_FILES
    tmp_name += std::to_string(::getpid());
    tmp_name += '-';
#endif
    tmp_name += std::to_string(counter.fetch_add(1));
    tmp_name += '-';
    tmp_name += std::to_string(rd() ^ stamp);
    return path.parent_path() / tmp_name;
}

void check_target(const fs::path& path) {
    if (path.empty()) QUANTSIM_THROW(io_error, "cannot write a file with an empty path");
    std::error_code ec;
    if (fs::is_directory(path, ec)) QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': it is a directory");
    const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    if (!fs::is_directory(dir, ec))
        QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': folder '", dir.string(), "' does not exist");
}

// Flushes the file's data to disk and renames it over the target; removes the temporary file on failure.
void commit(const fs::path& tmp, const fs::path& path) {
#if QUANTSIM_POSIX_FILES
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd >= 0) {
        // fsync failures on exotic file systems are not fatal: the rename below still gives atomic replacement.
        (void)::fsync(fd);
        ::close(fd);
    }
#endif
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': renaming the temporary file failed");
    }
#if QUANTSIM_POSIX_FILES
    // Make the rename itself durable (best effort).
    const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
#endif
}

}  // namespace

namespace {

// Writes `bytes` into a new temporary file next to `path`, flushed to disk; returns its name. On failure the
// temporary file is removed and io_error names `path`.
fs::path write_temp(const fs::path& path, std::span<const std::byte> bytes) {
    check_target(path);
    const fs::path tmp = temp_path_for(path);
#if QUANTSIM_POSIX_FILES
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': ", errno_text(errno));
    auto fail = [&](int e, bool close_fd) {
        if (close_fd) ::close(fd);
        std::error_code ec;
        fs::remove(tmp, ec);
        QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': ", errno_text(e));
    };
    const auto* p = reinterpret_cast<const char*>(bytes.data());
    std::size_t left = bytes.size();
    while (left > 0) {
        const ssize_t w = ::write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            fail(errno, true);
        }
        p += w;
        left -= static_cast<std::size_t>(w);
    }
    if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) fail(errno, true);
    if (::close(fd) != 0) fail(errno, false);
#else
    std::error_code ec;
    try {
        std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
        if (!os) QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': cannot create a file in its folder");
        os.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        os.close();
        if (os.fail()) QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': write failed (disk full?)");
    } catch (...) {
        fs::remove(tmp, ec);
        throw;
    }
#endif
    return tmp;
}

}  // namespace

void write_file_atomic(const fs::path& path, std::span<const std::byte> bytes) { commit(write_temp(path, bytes), path); }

void write_files_atomic(std::span<const std::pair<fs::path, std::string>> files) {
    // Every temporary file first: a failure here (full disk, a target that is a directory, a missing folder) must
    // leave every target as it was.
    std::vector<fs::path> temps;
    temps.reserve(files.size());
    try {
        for (const auto& [path, bytes] : files)
            temps.push_back(write_temp(path, std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size())));
    } catch (...) {
        std::error_code ec;
        for (const auto& t : temps) fs::remove(t, ec);
        throw;
    }
    for (std::size_t i = 0; i < files.size(); ++i) {
        try {
            commit(temps[i], files[i].first);
        } catch (...) {
            std::error_code ec;
            for (std::size_t k = i + 1; k < temps.size(); ++k) fs::remove(temps[k], ec);
            throw;
        }
    }
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
    write_file_atomic(path, std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

void write_file_atomic(const fs::path& path, const std::function<void(std::ostream&)>& writer) {
    check_target(path);
    const fs::path tmp = temp_path_for(path);
    std::error_code ec;
    try {
        std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
        if (!os) QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': cannot create a file in its folder");
        writer(os);
        os.flush();
        if (!os) QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': write failed (disk full?)");
        os.close();
        if (os.fail()) QUANTSIM_THROW(io_error, "cannot write '", path.string(), "': closing the file failed");
    } catch (...) {
        fs::remove(tmp, ec);
        throw;
    }
    commit(tmp, path);
}

std::uint64_t physical_memory_bytes() noexcept {
#if QUANTSIM_POSIX_FILES && defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
#endif
    return 0;
}

void check_fits_in_memory(std::uint64_t bytes, const std::string& what) {
    static const std::uint64_t physical = physical_memory_bytes();
    if (physical != 0 && bytes > physical)
        QUANTSIM_THROW(resource_error, what, ": needs ", bytes >> 20, " MiB, more than this machine's ", physical >> 20,
                       " MiB of memory");
}

std::vector<std::byte> read_file_bytes(const fs::path& path, std::size_t max_bytes) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) QUANTSIM_THROW(io_error, "cannot read '", path.string(), "': it is a directory");
    std::ifstream is(path, std::ios::binary);
    if (!is) QUANTSIM_THROW(io_error, "cannot open '", path.string(), "': ", fs::exists(path, ec) ? "permission denied or unreadable" : "no such file");
    is.seekg(0, std::ios::end);
    const auto end = is.tellg();
    if (end < 0) QUANTSIM_THROW(io_error, "cannot read '", path.string(), "': cannot determine its size");
    const auto size = static_cast<std::uint64_t>(end);
    if (size > max_bytes)
        QUANTSIM_THROW(resource_error, "'", path.string(), "' is ", size, " bytes, above the limit of ", max_bytes, " bytes");
    check_fits_in_memory(size, "'" + path.string() + "'");
    is.seekg(0, std::ios::beg);
    std::vector<std::byte> data(static_cast<std::size_t>(size));
    if (size && !is.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size)))
        QUANTSIM_THROW(io_error, "cannot read '", path.string(), "': read failed");
    return data;
}

std::string read_file_string(const fs::path& path, std::size_t max_bytes) {
    auto b = read_file_bytes(path, max_bytes);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace quantsim
