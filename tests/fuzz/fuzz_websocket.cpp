// The RFC 6455 frame decoder (protocol/websocket.cpp), fed a byte stream whole and again in
// chunks cut at points the input chooses, as TCP may deliver it: both must yield the same
// events. Every message is within the size limit, and text is valid UTF-8.
//
// Input: the stream first; from the end (FuzzedDataProvider takes numbers from there) the
// size limit's choice, then the cut points.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "protocol/json_writer.hpp"
#include "protocol/websocket.hpp"

namespace ws = swarmcoord::protocol::websocket;

namespace {

struct recorded {
  ws::event::kind what;
  std::size_t consumed;
  std::string payload;
  bool binary;
  ws::close_code code;
  std::uint16_t raw_code;
  std::string reason;
  friend bool operator==(const recorded&, const recorded&) = default;
};

bool utf8_by_steps(std::string_view s) {
  for (std::size_t at = 0; at < s.size();) {
    const int n = swarmcoord::protocol::json_writer_detail::utf8_step(s, at);
    if (n <= 0) return false;
    at += static_cast<std::size_t>(n);
  }
  return true;
}

class feeder {
 public:
  explicit feeder(std::size_t max_message_bytes) : decoder_(max_message_bytes), max_(max_message_bytes) {}

  // Appends bytes to what is pending and decodes every whole frame; false once the stream ended
  // (a close or a failure).
  bool feed(std::string_view bytes) {
    if (ended_) return false;
    pending_.append(bytes);
    std::size_t used = 0;
    for (;;) {
      const auto e = decoder_.next(pending_.data() + used, pending_.size() - used);
      if (e.what == ws::event::kind::need_more) break;
      FUZZ_REQUIRE(e.consumed <= pending_.size() - used);
      used += e.consumed;
      events_.push_back({e.what, e.consumed, std::string(e.payload), e.binary, e.code, e.raw_code, e.reason});
      check(e);
      if (e.what == ws::event::kind::close || e.what == ws::event::kind::fail) {
        ended_ = true;
        return false;
      }
    }
    pending_.erase(0, used);
    return true;
  }

  const std::vector<recorded>& events() const { return events_; }

 private:
  void check(const ws::event& e) {
    FUZZ_REQUIRE(decoder_.buffered() <= max_);
    if (e.what == ws::event::kind::message) {
      FUZZ_REQUIRE(e.payload.size() <= max_);
      if (!e.binary) FUZZ_REQUIRE(utf8_by_steps(e.payload));
    }
    if (e.what == ws::event::kind::ping || e.what == ws::event::kind::pong) FUZZ_REQUIRE(e.payload.size() <= 125);
    if (e.what == ws::event::kind::close) FUZZ_REQUIRE(utf8_by_steps(e.payload));
    if (e.what == ws::event::kind::fail) FUZZ_REQUIRE(std::strlen(e.reason) > 0);
  }

  ws::decoder decoder_;
  std::size_t max_;
  std::string pending_;
  std::vector<recorded> events_;
  bool ended_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  static constexpr std::size_t limits[] = {1, 7, 125, 126, 127, 1000, 65535, 65536, 1 << 20};
  const std::size_t max_message_bytes = in.PickValueInArray(limits);
  const std::size_t cut_count = in.ConsumeIntegralInRange<std::size_t>(0, 16);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < cut_count && in.remaining_bytes() > 0; ++i) cuts.push_back(in.ConsumeIntegral<std::uint16_t>());
  const std::string stream = in.ConsumeRemainingBytesAsString();
  for (auto& c : cuts) c = stream.empty() ? 0 : c % (stream.size() + 1);
  std::sort(cuts.begin(), cuts.end());

  feeder whole(max_message_bytes);
  whole.feed(stream);

  feeder chunked(max_message_bytes);
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    if (!chunked.feed(std::string_view(stream).substr(from, cut - from))) break;
    from = cut;
  }
  chunked.feed(std::string_view(stream).substr(from));

  FUZZ_REQUIRE(whole.events() == chunked.events());
  return 0;
}
