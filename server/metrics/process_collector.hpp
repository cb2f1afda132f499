#pragma once
// process_* metrics of the standard Prometheus client conventions, read from /proc/self at
// collection time. Thread-safe (reads only).
#include <vector>

#include <prometheus/collectable.h>

namespace swarmcoord::metrics {

class process_collector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace swarmcoord::metrics
