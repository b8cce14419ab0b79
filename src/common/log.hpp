// Logging for every binary: Boost.Log to stderr, one line per record, with a level filter.
#pragma once

#include <boost/log/trivial.hpp>

#include <string>

namespace kv::log {

// Sets up the stderr sink. `level` is trace|debug|info|warning|error; throws on anything else.
void init(const std::string& level);

}  // namespace kv::log

#define KV_LOG(sev) BOOST_LOG_TRIVIAL(sev)
