#pragma once
// Prometheus exposition of swarmcoord's numbers. Workers count in plain integers
// (counters.hpp: single-threaded, no atomics on the hot path); at scrape time the admin side
// sums every worker's figures and `exporter::render` turns the sum into the text format
// through prometheus-cpp. Every metric is one row of the table in metrics.cpp: its name, its
// help, its labels and the field it reads.
// exporter: render() from one thread at a time.
#include <memory>
#include <string>
#include <string_view>

#include "server/metrics/counters.hpp"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace swarmcoord::metrics {

class exporter {
 public:
  explicit exporter(std::string_view version);
  ~exporter();
  exporter(const exporter&) = delete;
  exporter& operator=(const exporter&) = delete;

  // Sets every metric from the summed figures and returns the Prometheus text format.
  std::string render(const worker_figures& total);

 private:
  struct table;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<table> table_;
};

}  // namespace swarmcoord::metrics
