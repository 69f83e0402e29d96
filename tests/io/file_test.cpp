// write_file_atomic: content, replacement, and failure leaving the existing file intact.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>

#include <quantsim/io/file.hpp>

namespace quantsim {
namespace {

namespace fs = std::filesystem;

class atomic_write : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("quantsim_file_test_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::size_t file_count() const {
        std::size_t n = 0;
        for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++n;
        return n;
    }
    fs::path dir_;
};

TEST_F(atomic_write, writes_and_replaces) {
    const fs::path p = dir_ / "a.bin";
    write_file_atomic(p, std::string_view("first"));
    EXPECT_EQ(read_file_string(p), "first");
    write_file_atomic(p, std::string_view("second, longer"));
    EXPECT_EQ(read_file_string(p), "second, longer");
    write_file_atomic(p, [](std::ostream& os) { os << "streamed " << 42; });
    EXPECT_EQ(read_file_string(p), "streamed 42");
    EXPECT_EQ(file_count(), 1u);
}

TEST_F(atomic_write, a_failing_writer_leaves_the_old_file) {
    const fs::path p = dir_ / "a.bin";
    write_file_atomic(p, std::string_view("keep me"));
    EXPECT_THROW(write_file_atomic(p, [](std::ostream& os) {
                     os << "partial";
                     throw io_error("simulated failure");
                 }),
                 io_error);
    EXPECT_EQ(read_file_string(p), "keep me");
    EXPECT_EQ(file_count(), 1u) << "the temporary file is removed";
}

TEST_F(atomic_write, bad_targets_are_io_errors) {
    EXPECT_THROW(write_file_atomic(dir_ / "missing" / "a.bin", std::string_view("x")), io_error);
    EXPECT_THROW(write_file_atomic(dir_, std::string_view("x")), io_error);
    EXPECT_THROW(write_file_atomic(fs::path(), std::string_view("x")), io_error);
    EXPECT_THROW(read_file_bytes(dir_ / "nothing"), io_error);
    write_file_atomic(dir_ / "big", std::string(100, 'x'));
    EXPECT_THROW(read_file_bytes(dir_ / "big", 10), resource_error);
}

TEST_F(atomic_write, several_files_are_written_as_one_unit) {
    const std::pair<fs::path, std::string> first[] = {{dir_ / "a.onnx", "model 1"}, {dir_ / "a.json", "encodings 1"}};
    write_files_atomic(first);
    EXPECT_EQ(read_file_string(dir_ / "a.onnx"), "model 1");
    EXPECT_EQ(read_file_string(dir_ / "a.json"), "encodings 1");

    // The last target cannot be written (it is a folder): nothing is replaced, no temporary file remains.
    fs::create_directories(dir_ / "a_qdq.onnx");
    const std::pair<fs::path, std::string> second[] = {
        {dir_ / "a.onnx", "model 2"}, {dir_ / "a.json", "encodings 2"}, {dir_ / "a_qdq.onnx", "qdq 2"}};
    EXPECT_THROW(write_files_atomic(second), io_error);
    EXPECT_EQ(read_file_string(dir_ / "a.onnx"), "model 1");
    EXPECT_EQ(read_file_string(dir_ / "a.json"), "encodings 1");
    EXPECT_EQ(file_count(), 3u) << "only a.onnx, a.json and the folder a_qdq.onnx";

    // Same with a target in a folder that does not exist.
    const std::pair<fs::path, std::string> third[] = {{dir_ / "a.onnx", "model 3"}, {dir_ / "nowhere" / "b", "x"}};
    EXPECT_THROW(write_files_atomic(third), io_error);
    EXPECT_EQ(read_file_string(dir_ / "a.onnx"), "model 1");
    EXPECT_EQ(file_count(), 3u);
}

TEST(memory_bound, sizes_above_physical_memory_are_resource_errors) {
    const std::uint64_t physical = physical_memory_bytes();
    ASSERT_GT(physical, 0u) << "sysconf reports no physical memory on this system";
    EXPECT_NO_THROW(check_fits_in_memory(1 << 20, "small"));
    try {
        check_fits_in_memory(physical + 1, "'big.npy'");
        ADD_FAILURE() << "no error for " << physical + 1 << " bytes";
    } catch (const resource_error& e) {
        EXPECT_NE(std::string(e.what()).find("'big.npy'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("memory"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace quantsim
