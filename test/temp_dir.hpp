// A directory under the system temp dir, removed with everything in it when the test ends.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

namespace kv::test {

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("kvtest-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    if (std::getenv("KV_KEEP_TEST_DIRS")) return;  // for reading the logs after a failure
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& sub) const { return path_ / sub; }

 private:
  std::filesystem::path path_;
};

}  // namespace kv::test
