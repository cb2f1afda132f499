#pragma once
// The frames waiting to be written to one WebSocket connection, and what each costs against
// server.max_write_queue_bytes.
// Not thread-safe: one per connection, on its home thread.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/websocket.hpp"

namespace swarmcoord::net {

// One frame waiting to be written: a message shared with the other receivers of a fan-out,
// or a control frame. The handshake response rides the same queue, without a frame header.
struct frame {
  std::shared_ptr<const std::string> payload;
  protocol::websocket::opcode op = protocol::websocket::opcode::text;
  bool raw = false;

  // Bytes on the wire.
  std::size_t wire_size() const {
    return (raw ? 0 : protocol::websocket::header_size(payload->size())) + payload->size();
  }
  // What the frame costs besides its bytes (its slot and the string's heap block), charged
  // against server.max_write_queue_bytes so that a flood of empty frames is bounded too.
  static constexpr std::size_t overhead = 64;
  std::size_t cost() const { return wire_size() + overhead; }
};

// A vector with a moving head, allocated only while frames wait (an empty std::deque already
// holds a 512-byte block), and given back once drained.
class frame_queue {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  frame& at(std::size_t i) { return items_[head_ + i]; }
  frame& back() { return items_.back(); }
  void push_back(frame&& f) { items_.push_back(std::move(f)); }
  void pop_front() {
    items_[head_++] = frame{};
    if (head_ == items_.size()) clear();
  }
  void clear() {
    items_.clear();
    head_ = 0;
    if (items_.capacity() > 4) items_.shrink_to_fit();
  }

 private:
  std::vector<frame> items_;
  std::size_t head_ = 0;
};

}  // namespace swarmcoord::net
