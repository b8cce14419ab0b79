#include "core/metrics.hpp"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace kv::metrics {

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  if (i < kBounds.size()) ++buckets[i];
  ++count;
  sum += seconds;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

std::string render_labels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    out += labels[i].first;
    out += "=\"";
    for (char c : labels[i].second) {
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '"') {
        out += "\\\"";
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    out += '"';
  }
  out += '}';
  return out;
}

namespace {
bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}
}  // namespace

Registry::Family& Registry::family(std::string_view name, std::string_view help, Type type) {
  if (!valid_name(name)) throw std::invalid_argument("bad metric name: " + std::string(name));
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{}).first;
    it->second.type = type;
    it->second.help = std::string(help);
  } else if (it->second.type != type) {
    throw std::invalid_argument("metric registered with two types: " + std::string(name));
  }
  return it->second;
}

Registry::Series& Registry::series(Family& f, const Labels& labels) {
  std::string rendered = render_labels(labels);
  for (auto& s : f.series) {
    if (s.labels == rendered) return s;
  }
  f.series.push_back(Series{std::move(rendered), nullptr, nullptr, nullptr});
  return f.series.back();
}

Counter& Registry::counter(std::string_view name, std::string_view help, Labels labels) {
  Series& s = series(family(name, help, Type::kCounter), labels);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help, Labels labels) {
  Series& s = series(family(name, help, Type::kHistogram), labels);
  if (!s.histogram) s.histogram = std::make_unique<Histogram>();
  return *s.histogram;
}

void Registry::gauge(std::string_view name, std::string_view help, Labels labels,
                     std::function<double()> read) {
  series(family(name, help, Type::kGauge), labels).gauge = std::move(read);
}

void Registry::gauge_family(std::string_view name, std::string_view help,
                            std::function<void(std::vector<std::pair<Labels, double>>&)> read) {
  family(name, help, Type::kGauge).dynamic = std::move(read);
}

void Registry::counter_family(std::string_view name, std::string_view help,
                              std::function<void(std::vector<std::pair<Labels, double>>&)> read) {
  family(name, help, Type::kCounter).dynamic = std::move(read);
}

std::string Registry::render() const {
  std::string out;
  const auto line = [&out](const std::string& name, const std::string& labels, double v) {
    out += name;
    out += labels;
    out += ' ';
    out += format_value(v);
    out += '\n';
  };
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + f.help + "\n";
    out += "# TYPE " + name + " " +
           (f.type == Type::kCounter ? "counter"
            : f.type == Type::kGauge ? "gauge"
                                     : "histogram") +
           "\n";
    for (const auto& s : f.series) {
      if (s.counter) line(name, s.labels, s.counter->value);
      if (s.gauge) line(name, s.labels, s.gauge());
      if (s.histogram) {
        const Histogram& h = *s.histogram;
        // Bucket labels go after the series' own labels.
        const std::string open =
            s.labels.empty() ? "{" : s.labels.substr(0, s.labels.size() - 1) + ",";
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
          cumulative += h.buckets[i];
          line(name + "_bucket", open + "le=\"" + format_value(Histogram::kBounds[i]) + "\"}",
               static_cast<double>(cumulative));
        }
        line(name + "_bucket", open + "le=\"+Inf\"}", static_cast<double>(h.count));
        line(name + "_sum", s.labels, h.sum);
        line(name + "_count", s.labels, static_cast<double>(h.count));
      }
    }
    if (f.dynamic) {
      std::vector<std::pair<Labels, double>> samples;
      f.dynamic(samples);
      for (const auto& [labels, v] : samples) line(name, render_labels(labels), v);
    }
  }
  return out;
}

}  // namespace kv::metrics
