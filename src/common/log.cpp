#include "common/log.hpp"

#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/log/utility/setup/console.hpp>

#include <iostream>
#include <stdexcept>

namespace kv::log {

namespace logging = boost::log;
namespace expr = boost::log::expressions;

void init(const std::string& level) {
  logging::trivial::severity_level sev;
  if (!logging::trivial::from_string(level.data(), level.size(), sev)) {
    throw std::invalid_argument("unknown log level '" + level +
                                "' (use trace, debug, info, warning or error)");
  }
  logging::add_common_attributes();
  logging::add_console_log(
      std::clog, logging::keywords::auto_flush = true,
      logging::keywords::format =
          (expr::stream << expr::format_date_time<boost::posix_time::ptime>("TimeStamp",
                                                                            "%H:%M:%S.%f")
                        << " " << std::left << std::setw(7) << logging::trivial::severity << " "
                        << expr::smessage));
  logging::core::get()->set_filter(logging::trivial::severity >= sev);
}

}  // namespace kv::log
