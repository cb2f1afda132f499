#pragma once
// The server side of RFC 6455 framing, without sockets: the opening handshake's accept key,
// a frame decoder for what clients send, and the headers of what the server sends.
//
// The daemon frames WebSocket itself rather than through Boost.Beast's websocket::stream:
// Beast writes one message per write call (one sendmsg each) and holds ~4 KiB per idle
// connection, where a tracker wants every frame queued for a socket in one write and nothing
// but a few hundred bytes per idle connection. Decoding happens in the caller's buffer: the
// payload is unmasked in place and handed out as a view, so a message costs no copy unless
// it arrives in fragments.
// Pure; one decoder per connection, not thread-safe.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace swarmcoord::protocol::websocket {

enum class opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

// The close codes the server sends.
enum class close_code : std::uint16_t {
  normal = 1000,
  going_away = 1001,
  protocol_error = 1002,
  no_status = 1005,  // never on the wire: a close frame without a code
  invalid_payload = 1007,
  policy_error = 1008,
  too_big = 1009,
};

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key, or nothing when the key is not the
// base64 of 16 bytes.
std::optional<std::string> accept_key(std::string_view client_key);

// True for text that is valid UTF-8 (RFC 3629: no overlongs, surrogates or code points past
// U+10FFFF).
bool valid_utf8(std::string_view text);

struct event {
  enum class kind : std::uint8_t {
    need_more,  // the next frame is incomplete: call again with more bytes after these
    fragment,   // a frame of an unfinished message was taken in; call again
    message,    // a whole message in payload (text unless binary)
    ping,
    pong,
    close,      // the client's close frame: code (no_status without one) and reason in payload
    fail,       // the client broke the protocol: send code, then end the connection
  };
  kind what = kind::need_more;
  std::size_t consumed = 0;  // bytes of the input this event used
  std::string_view payload;  // valid until the next call
  bool binary = false;
  close_code code = close_code::normal;
  std::uint16_t raw_code = 0;  // close: the code as received
  const char* reason = "";     // fail: why, for the log
};

class decoder {
 public:
  explicit decoder(std::size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Decodes the frame at the start of `in`, unmasking its payload in place.
  event next(char* in, std::size_t size);

  // Bytes a message in progress holds (its earlier fragments).
  std::size_t buffered() const { return fragments_.size(); }

 private:
  event finish_message(event e);

  std::size_t max_message_bytes_;
  std::string fragments_;  // the fragments of an unfinished message, joined
  bool in_message_ = false;
  bool binary_ = false;
  bool release_fragments_ = false;  // the last event's payload lives in fragments_
};

// The header of an unmasked, final server frame carrying `payload_size` bytes; returns its
// length (2, 4 or 10 bytes written to out).
std::size_t write_header(char* out, opcode op, std::size_t payload_size);
inline constexpr std::size_t max_header_bytes = 10;
// The length write_header gives: 2 bytes up to 125 bytes of payload, 4 up to 65535, else 10.
constexpr std::size_t header_size(std::size_t payload_size) {
  return payload_size < 126 ? 2 : payload_size <= 0xFFFF ? 4 : 10;
}

// The payload of a close frame: the code, then at most 123 bytes of reason.
std::string close_payload(close_code code, std::string_view reason = {});

}  // namespace swarmcoord::protocol::websocket
