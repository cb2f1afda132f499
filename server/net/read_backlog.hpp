#pragma once
// Received bytes a connection has not decoded yet: an unfinished frame, or what a pause of
// reading left. Most reads hold whole frames and are decoded straight from the read buffer;
// only a rest is copied here, and the copy is given back once decoded, so that an idle
// connection holds no buffer.
// Not thread-safe: one per connection, on its home thread.
#include <cstddef>
#include <string>
#include <string_view>

namespace swarmcoord::net {

class read_backlog {
 public:
  void assign(std::string_view bytes) {
    bytes_.assign(bytes);
    head_ = 0;
  }

  // Decodes what was read, after what is held; keeps what `decode` (bytes -> bytes used)
  // leaves. Bytes read into a shared buffer are decoded there when nothing is held.
  template <class Decode>
  void feed(char* data, std::size_t n, Decode&& decode) {
    if (head_ == bytes_.size()) {
      const std::size_t used = decode(data, n);
      if (used < n) assign(std::string_view(data + used, n - used));
    } else {
      bytes_.append(data, n);
      resume(decode);
    }
  }

  // Decodes what is held (after a pause).
  template <class Decode>
  void resume(Decode&& decode) {
    head_ += decode(bytes_.data() + head_, bytes_.size() - head_);
  }

  // After decoding: gives back what is no longer needed (all of it when `drop` is set).
  void compact(bool drop) {
    if (drop || head_ == bytes_.size()) {
      // Most messages fit one read: give back whatever an unfinished one needed.
      if (bytes_.capacity() > 256) bytes_ = std::string();
      else bytes_.clear();
      head_ = 0;
    } else if (head_ * 2 >= bytes_.size()) {
      // Decoded bytes go once they are the larger part: a paused backlog is not moved for
      // every message taken from it, and an unfinished frame keeps no more than it needs.
      bytes_.erase(0, head_);
      head_ = 0;
      if (bytes_.capacity() > 2 * bytes_.size() + 4096) bytes_.shrink_to_fit();
    }
  }

 private:
  std::string bytes_;
  std::size_t head_ = 0;  // bytes_ before this offset are decoded
};

}  // namespace swarmcoord::net
