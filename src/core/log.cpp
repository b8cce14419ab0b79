#include "core/log.hpp"

#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/log/utility/setup/console.hpp>

#include <boost/date_time/posix_time/posix_time.hpp>
#include <boost/json.hpp>
#include <boost/log/attributes/clock.hpp>
#include <boost/log/attributes/value_extraction.hpp>

#include <iostream>
#include <stdexcept>

namespace kv::log {

namespace logging = boost::log;
namespace expr = boost::log::expressions;

namespace {
// {"ts":"2026-11-26T05:46:46.123456Z","level":"info","msg":"..."}: one object per line.
void format_json(const logging::record_view& rec, logging::formatting_ostream& out) {
  boost::json::object o;
  if (auto ts = logging::extract<boost::posix_time::ptime>("TimeStamp", rec)) {
    o["ts"] = boost::posix_time::to_iso_extended_string(*ts) + "Z";
  }
  if (auto sev = logging::extract<logging::trivial::severity_level>("Severity", rec)) {
    o["level"] = logging::trivial::to_string(*sev);
  }
  if (auto msg = logging::extract<std::string>("Message", rec)) o["msg"] = *msg;
  out << boost::json::serialize(o);
}
}  // namespace

void init(const std::string& level, const std::string& format) {
  logging::trivial::severity_level sev;
  if (!logging::trivial::from_string(level.data(), level.size(), sev)) {
    throw std::invalid_argument("unknown log level '" + level +
                                "' (use trace, debug, info, warning or error)");
  }
  if (format != "text" && format != "json") {
    throw std::invalid_argument("unknown log format '" + format + "' (use text or json)");
  }
  // UTC timestamps; registered before the common attributes, which then keep it.
  logging::core::get()->add_global_attribute("TimeStamp", logging::attributes::utc_clock());
  logging::add_common_attributes();
  auto sink = logging::add_console_log(std::clog, logging::keywords::auto_flush = true);
  if (format == "json") {
    sink->set_formatter(&format_json);
  } else {
    sink->set_formatter(
        expr::stream << expr::format_date_time<boost::posix_time::ptime>("TimeStamp", "%H:%M:%S.%f")
                     << " " << std::left << std::setw(7) << logging::trivial::severity << " "
                     << expr::smessage);
  }
  logging::core::get()->set_filter(logging::trivial::severity >= sev);
}

}  // namespace kv::log
