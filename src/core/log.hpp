// Logging for every binary: Boost.Log to stderr, one line per record (text or JSON), with a
// level filter.
#pragma once

#include <boost/log/trivial.hpp>

#include <string>

namespace kv::log {

// Sets up the stderr sink. `level` is trace|debug|info|warning|error; `format` is text (a
// readable line) or json (one object per line: ts, level, msg). Throws on anything else.
void init(const std::string& level, const std::string& format = "text");

}  // namespace kv::log

#define KV_LOG(sev) BOOST_LOG_TRIVIAL(sev)
