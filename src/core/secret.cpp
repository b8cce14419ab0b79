#include "core/secret.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace kv::secret {

namespace {
std::string trimmed(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::string checked(std::string s, const std::string& where) {
  if (s.size() < kMinBytes || s.size() > kMaxBytes) {
    throw std::invalid_argument("the cluster secret in " + where + " must be " +
                                std::to_string(kMinBytes) + " to " + std::to_string(kMaxBytes) +
                                " characters (scripts/cluster.sh generates one)");
  }
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      throw std::invalid_argument("the cluster secret in " + where +
                                  " may hold printable characters only");
    }
  }
  return s;
}
}  // namespace

std::string load(const std::string& file) {
  if (!file.empty()) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      throw std::invalid_argument("cannot read the secret file " + file);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
      throw std::invalid_argument("the secret file " + file +
                                  " is readable by others; chmod 600 it");
    }
    std::ifstream in(file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      throw std::invalid_argument("cannot read the secret file " + file);
    }
    return checked(trimmed(line), file);
  }
  if (const char* env = std::getenv("KV_SECRET"); env && *env) {
    return checked(trimmed(env), "KV_SECRET");
  }
  return {};
}

bool equal(std::string_view presented, std::string_view expected) {
  unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    diff |= static_cast<unsigned char>(p ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

}  // namespace kv::secret
