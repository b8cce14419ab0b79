// Node addresses as people type them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace kv {

// "host:port" -> (host, port); throws std::invalid_argument with a clear message.
std::pair<std::string, std::uint16_t> parse_host_port(const std::string& text);

}  // namespace kv
