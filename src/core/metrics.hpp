// Process metrics in the Prometheus text exposition format (version 0.0.4), served on /metrics.
// Pure code: counters and histograms are plain numbers updated by the one thread that owns the
// registry; gauges are read through callbacks when the page is rendered.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kv::metrics {

// Labels as `key="value"` pairs, in order: {{"type", "create"}, {"outcome", "ok"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

struct Counter {
  double value = 0;
  void inc(double by = 1) { value += by; }
};

// Latency histogram in seconds with fixed buckets from 25 us to 10 s.
struct Histogram {
  static constexpr std::array<double, 16> kBounds{0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                  0.0025,   0.005,   0.01,   0.025,   0.05,   0.1,
                                                  0.25,     0.5,     1,      10};
  std::array<std::uint64_t, kBounds.size()> buckets{};  // not cumulative; rendered cumulative
  std::uint64_t count = 0;
  double sum = 0;
  void observe(double seconds);
};

class Registry {
 public:
  // The same name and labels return the same series. Names follow Prometheus rules
  // ([a-zA-Z_:][a-zA-Z0-9_:]*); counters should end in _total.
  Counter& counter(std::string_view name, std::string_view help, Labels labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, Labels labels = {});
  // A gauge read when rendering. Registering the same name and labels again replaces it.
  void gauge(std::string_view name, std::string_view help, Labels labels,
             std::function<double()> read);
  // Gauges with labels known only at render time (e.g. one per node): `read` adds series.
  void gauge_family(std::string_view name, std::string_view help,
                    std::function<void(std::vector<std::pair<Labels, double>>&)> read);
  // The same for counters kept elsewhere (e.g. per node link).
  void counter_family(std::string_view name, std::string_view help,
                      std::function<void(std::vector<std::pair<Labels, double>>&)> read);

  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    std::string labels;  // rendered `{k="v",...}` or empty
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> gauge;
  };
  struct Family {
    Type type = Type::kCounter;
    std::string help;
    std::deque<Series> series;
    std::function<void(std::vector<std::pair<Labels, double>>&)> dynamic;
  };
  Family& family(std::string_view name, std::string_view help, Type type);
  Series& series(Family& f, const Labels& labels);
  std::map<std::string, Family, std::less<>> families_;
};

// `{k="v",...}` with values escaped as the format requires; empty for no labels.
std::string render_labels(const Labels& labels);
// A sample value as Prometheus prints it (integers without a fraction, +Inf, NaN).
std::string format_value(double v);

}  // namespace kv::metrics
