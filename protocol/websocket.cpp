#include "protocol/websocket.hpp"

#include <cstring>

#include <openssl/evp.h>
#include <simdjson.h>

namespace swarmcoord::protocol::websocket {
namespace {

constexpr std::string_view handshake_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool is_base64(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

event fail(close_code code, const char* reason) {
  event e;
  e.what = event::kind::fail;
  e.code = code;
  e.reason = reason;
  return e;
}

// Codes a client may send (RFC 6455 7.4 and the IANA registry): 1004-1006 and 1015 are
// reserved for reporting, never sent; 3000-4999 belong to libraries and applications.
bool valid_close_code(std::uint16_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

// XOR with the 4-byte key, eight bytes at a time.
void unmask(char* p, std::size_t n, const unsigned char key[4]) {
  std::uint64_t key8;
  unsigned char k8[8];
  for (int i = 0; i < 8; ++i) k8[i] = key[i % 4];
  std::memcpy(&key8, k8, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, p + i, 8);
    v ^= key8;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(p[i] ^ key[i % 4]);
}

}  // namespace

std::optional<std::string> accept_key(std::string_view key) {
  // 16 bytes in base64: 22 characters and "==" (RFC 6455 4.2.1, item 5).
  if (key.size() != 24 || key.substr(22) != "==") return std::nullopt;
  for (char c : key.substr(0, 22))
    if (!is_base64(c)) return std::nullopt;
  std::string input(key);
  input += handshake_guid;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_size, EVP_sha1(), nullptr) != 1) return std::nullopt;
  std::string out(4 * ((digest_size + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), digest, static_cast<int>(digest_size));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool valid_utf8(std::string_view text) { return simdjson::validate_utf8(text.data(), text.size()); }

event decoder::next(char* in, std::size_t size) {
  if (release_fragments_) {
    // The previous event handed out the joined fragments; a large one is not kept around.
    release_fragments_ = false;
    if (fragments_.capacity() > 4096) fragments_ = std::string();
    else fragments_.clear();
  }
  if (size < 2) return {};
  const auto* b = reinterpret_cast<const unsigned char*>(in);
  const bool fin = b[0] & 0x80;
  if (b[0] & 0x70) return fail(close_code::protocol_error, "reserved bits set without an extension");
  const auto op = static_cast<opcode>(b[0] & 0x0F);
  const bool control = (b[0] & 0x08) != 0;
  switch (op) {
    case opcode::continuation: case opcode::text: case opcode::binary:
    case opcode::close: case opcode::ping: case opcode::pong: break;
    default: return fail(close_code::protocol_error, "reserved opcode");
  }
  if (!(b[1] & 0x80)) return fail(close_code::protocol_error, "unmasked client frame");
  std::uint64_t length = b[1] & 0x7F;
  std::size_t header = 2;
  if (control && (!fin || length > 125))
    return fail(close_code::protocol_error, "fragmented or oversized control frame");
  if (length == 126) {
    if (size < 4) return {};
    length = (std::uint64_t{b[2]} << 8) | b[3];
    if (length < 126) return fail(close_code::protocol_error, "payload length not in its shortest form");
    header = 4;
  } else if (length == 127) {
    if (size < 10) return {};
    length = 0;
    for (int i = 2; i < 10; ++i) length = (length << 8) | b[i];
    if (length >> 63) return fail(close_code::protocol_error, "payload length over 2^63");
    if (length <= 0xFFFF) return fail(close_code::protocol_error, "payload length not in its shortest form");
    header = 10;
  }
  if (!control) {
    if (op == opcode::continuation && !in_message_) return fail(close_code::protocol_error, "continuation of no message");
    if (op != opcode::continuation && in_message_) return fail(close_code::protocol_error, "new message inside a fragmented one");
    // Known from the header alone: refused before the payload is waited for.
    if (length > max_message_bytes_ - fragments_.size()) return fail(close_code::too_big, "message over the size limit");
  }
  header += 4;
  if (size < header || size - header < length) return {};
  unsigned char key[4];
  std::memcpy(key, b + header - 4, 4);
  char* payload = in + header;
  const auto n = static_cast<std::size_t>(length);
  unmask(payload, n, key);

  event e;
  e.consumed = header + n;
  e.payload = std::string_view(payload, n);
  switch (op) {
    case opcode::ping: e.what = event::kind::ping; return e;
    case opcode::pong: e.what = event::kind::pong; return e;
    case opcode::close: {
      e.what = event::kind::close;
      if (n == 0) {
        e.code = close_code::no_status;
        return e;
      }
      if (n == 1) return fail(close_code::protocol_error, "close frame with a one-byte payload");
      e.raw_code = static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]));
      if (!valid_close_code(e.raw_code)) return fail(close_code::protocol_error, "invalid close code");
      e.payload.remove_prefix(2);
      if (!valid_utf8(e.payload)) return fail(close_code::invalid_payload, "close reason is not UTF-8");
      return e;
    }
    default: break;
  }
  if (op != opcode::continuation) binary_ = op == opcode::binary;
  if (!fin) {
    in_message_ = true;
    fragments_.append(payload, n);
    e.what = event::kind::fragment;
    e.payload = {};
    return e;
  }
  if (in_message_) {
    fragments_.append(payload, n);
    in_message_ = false;
    release_fragments_ = true;
    e.payload = fragments_;
  }
  e.what = event::kind::message;
  e.binary = binary_;
  if (!e.binary && !valid_utf8(e.payload)) {
    auto f = fail(close_code::invalid_payload, "text message is not UTF-8");
    f.consumed = e.consumed;
    return f;
  }
  return e;
}

std::size_t write_header(char* out, opcode op, std::size_t payload_size) {
  auto* o = reinterpret_cast<unsigned char*>(out);
  o[0] = static_cast<unsigned char>(0x80 | static_cast<unsigned>(op));
  if (payload_size < 126) {
    o[1] = static_cast<unsigned char>(payload_size);
    return 2;
  }
  if (payload_size <= 0xFFFF) {
    o[1] = 126;
    o[2] = static_cast<unsigned char>(payload_size >> 8);
    o[3] = static_cast<unsigned char>(payload_size);
    return 4;
  }
  o[1] = 127;
  for (int i = 0; i < 8; ++i) o[2 + i] = static_cast<unsigned char>(static_cast<std::uint64_t>(payload_size) >> (56 - 8 * i));
  return 10;
}

std::string close_payload(close_code code, std::string_view reason) {
  std::string out;
  const auto c = static_cast<std::uint16_t>(code);
  out.push_back(static_cast<char>(c >> 8));
  out.push_back(static_cast<char>(c & 0xFF));
  out.append(reason.substr(0, 123));
  return out;
}

}  // namespace swarmcoord::protocol::websocket
