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

#include <unistd.h>

#include <cerrno>
#include <ostream>
#include <stdexcept>
#include <streambuf>

namespace kv::log {

namespace logging = boost::log;
namespace expr = boost::log::expressions;

namespace {
// Standard error with a buffer of its own: a record and its newline leave in one write(2) when
// the sink flushes it (std::clog, synced with stdio, wrote each piece on its own: two system
// calls per line, which a syncer logging every change it syncs paid for 2,000 times a second).
class StderrBuf : public std::streambuf {
 public:
  StderrBuf() { setp(buf_, buf_ + sizeof buf_); }

 protected:
  int_type overflow(int_type c) override {
    if (sync() != 0) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override {
    const char* p = pbase();
    while (p < pptr()) {
      const ssize_t n = ::write(STDERR_FILENO, p, static_cast<std::size_t>(pptr() - p));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // nowhere to log to: the line is dropped, the process goes on
      p += n;
    }
    setp(buf_, buf_ + sizeof buf_);
    return 0;
  }

 private:
  char buf_[16 * 1024];
};

std::ostream& log_stream() {
  static auto* buf = new StderrBuf;  // never destroyed: records may come until the very end
  static auto* out = new std::ostream(buf);
  return *out;
}

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
  auto sink = logging::add_console_log(log_stream(), logging::keywords::auto_flush = true);
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
