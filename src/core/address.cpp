#include "core/address.hpp"

#include <charconv>
#include <stdexcept>

namespace kv {

std::pair<std::string, std::uint16_t> parse_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw std::invalid_argument("'" + text + "' is not host:port");
  }
  unsigned port = 0;
  const char* b = text.data() + colon + 1;
  const char* e = text.data() + text.size();
  auto [end, ec] = std::from_chars(b, e, port);
  if (ec != std::errc{} || end != e || port == 0 || port > 65535) {
    throw std::invalid_argument("'" + text + "' does not end in a port number (1-65535)");
  }
  return {text.substr(0, colon), static_cast<std::uint16_t>(port)};
}

}  // namespace kv
