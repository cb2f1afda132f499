// loadgen: the WebSocket client: connect, the HTTP upgrade, frames in and out, failure and
// reconnection (see connection.hpp for why it is done by hand).
#include "connection.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include <netinet/in.h>

namespace loadgen {

void connection::start() {
  closed_ = false;
  retry_scheduled_ = false;
  rlen_ = 0;
  if (rbuf_.empty()) rbuf_.resize(opt_.idle ? 1024 : 16384);
  fragments_.clear();
  out_.clear();
  wbuf_.clear();
  writing_ = false;
  sock_ = tcp::socket(d_.io());
  boost::system::error_code ec;
  sock_.open(tcp::v4(), ec);
  if (!ec) {
    // Pick the port at connect time (per destination), not at bind time.
    int one = 1;
    ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sock_.bind(tcp::endpoint(g_.sources[index_ % g_.sources.size()], 0), ec);
  }
  if (ec) {
    st().connect_failed.inc();
    return retry_later();
  }
  connecting_ = true;
  connecting_since_ = now_ns();
  ops_ = 1;
  sock_.async_connect(g_.server, [this](boost::system::error_code ec) {
    --ops_;
    if (closed_) return fail();
    if (ec) {
      st().connect_failed.inc();
      if (error_lines_left.fetch_sub(1) > 0) std::fprintf(stderr, "loadgen: connect failed: %s\n", ec.message().c_str());
      return fail();
    }
    on_connected();
  });
}

// Gives up on a request (or a connection attempt) that is too old.
void connection::check_timeout(std::uint64_t now, std::uint64_t limit_ns) {
  if (connecting_ && !closed_ && now - connecting_since_ > 30'000'000'000ull) {
    st().handshake_failed.inc();
    fail();  // the pending operations complete with an error, then it reconnects
    return;
  }
  if (!open_ || !outstanding_ || now - outstanding_since_ < limit_ns) return;
  st().timeouts.inc();
  outstanding_ = false;
  next();
  flush();
}

// Sends the next request (announce / native action) now; used by the pacer.
bool connection::release() {
  if (!open_ || outstanding_) return false;
  send_request();
  flush();
  return true;
}

// The load starts (parked until every connection was open).
void connection::begin() {
  if (!open_) return;
  if (opt_.protocol == proto::native) native_join();
  else start_loop();
  flush();
}

// ---------------------------------------------------------------- handshake
void connection::on_connected() {
  boost::system::error_code ec;
  sock_.set_option(tcp::no_delay(true), ec);
  // The RFC 6455 sample key: any key will do for a load generator; the answer is checked.
  wbuf_ = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + g_.host_header +
          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          "Sec-WebSocket-Version: 13\r\nUser-Agent: swarmcoord-loadgen\r\n\r\n";
  ops_ = 1;
  writing_ = true;
  asio::async_write(sock_, asio::buffer(wbuf_), [this](boost::system::error_code ec, std::size_t) {
    --ops_;
    writing_ = false;
    wbuf_.clear();
    if (closed_) return fail();
    if (ec) {
      st().handshake_failed.inc();
      return fail();
    }
    wait_readable();
  });
}

// The 101 response is at the start of rbuf_ (possibly followed by frames): check it and
// return its length, or 0 while it is incomplete.
std::size_t connection::on_handshake_bytes() {
  std::string_view got(rbuf_.data(), rlen_);
  auto end = got.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (rlen_ > 16384) {
      st().handshake_failed.inc();
      fail();
    }
    return 0;
  }
  std::string_view head = got.substr(0, end);
  const bool ok = head.starts_with("HTTP/1.1 101") &&
                  find(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != std::string_view::npos;
  if (!ok) {
    st().handshake_failed.inc();
    if (error_lines_left.fetch_sub(1) > 0)
      std::fprintf(stderr, "loadgen: upgrade refused: %.*s\n", static_cast<int>(std::min<std::size_t>(head.size(), 200)),
                   head.data());
    fail();
    return 0;
  }
  connecting_ = false;
  open_ = true;
  st().connected.inc();
  st().open_now.inc();
  if (ever_open_) st().reconnects.inc();
  ever_open_ = true;
  if (opt_.protocol == proto::native) {
    send_text(R"({"type":"hello","v":1,"max_neighbors":8})");
    st().sent_other.inc();
    mark_outstanding();
  } else if (opt_.idle) {
    send_idle_announce();
  } else if (!g_.started.load(std::memory_order_relaxed)) {
    d_.park(this);
  } else {
    start_loop();
  }
  return end + 4;
}

// ---------------------------------------------------------------- reading
// rbuf_[0, rlen_) holds bytes not handled yet: the 101 response, then partial frames.
void connection::wait_readable() {
  if (rbuf_.size() - rlen_ < 512) rbuf_.resize(std::max<std::size_t>(rbuf_.size() * 2, 1024));
  ++ops_;
  sock_.async_read_some(asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_),
                        [this](boost::system::error_code ec, std::size_t n) {
                          --ops_;
                          if (ec || closed_) {
                            if (ec && ec != asio::error::eof && ec != asio::error::connection_reset &&
                                ec != asio::error::operation_aborted && error_lines_left.fetch_sub(1) > 0)
                              std::fprintf(stderr, "loadgen: read: %s\n", ec.message().c_str());
                            return fail();
                          }
                          rlen_ += n;
                          on_readable();
                        });
}

void connection::on_readable() {
  std::size_t start = 0;
  if (!open_) {
    start = on_handshake_bytes();
    if (closed_) return fail();
    if (!open_) return wait_readable();
  }
  batching_ = true;
  const std::size_t used = start + parse_frames(rbuf_.data() + start, rlen_ - start);
  batching_ = false;
  if (closed_) return fail();
  if (used > 0) {
    std::memmove(rbuf_.data(), rbuf_.data() + used, rlen_ - used);
    rlen_ -= used;
  }
  // A frame bigger than the buffer: make room for all of it.
  if (rlen_ >= 2 && rlen_ == rbuf_.size()) rbuf_.resize(rbuf_.size() * 2);
  flush();
  wait_readable();
}

// Handles every complete frame in [p, p + n); returns the bytes consumed.
std::size_t connection::parse_frames(const char* p, std::size_t n) {
  std::size_t pos = 0;
  while (!closed_ && n - pos >= 2) {
    const auto b0 = static_cast<unsigned char>(p[pos]);
    const auto b1 = static_cast<unsigned char>(p[pos + 1]);
    std::size_t hdr = 2;
    std::uint64_t len = b1 & 0x7F;
    if (len == 126) {
      if (n - pos < 4) break;
      len = (std::uint64_t{static_cast<unsigned char>(p[pos + 2])} << 8) | static_cast<unsigned char>(p[pos + 3]);
      hdr = 4;
    } else if (len == 127) {
      if (n - pos < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(p[pos + 2 + static_cast<std::size_t>(i)]);
      hdr = 10;
    }
    if ((b1 & 0x80) || len > (64u << 20)) {  // servers never mask; nothing here is that big
      st().parse_errors.inc();
      fail();
      break;
    }
    if (n - pos - hdr < len) break;
    std::string_view payload(p + pos + hdr, static_cast<std::size_t>(len));
    pos += hdr + static_cast<std::size_t>(len);
    const bool fin = b0 & 0x80;
    switch (b0 & 0x0F) {
      case 0x1:
      case 0x2:
        if (fin) on_message(payload);
        else fragments_.assign(payload);
        break;
      case 0x0:
        fragments_.append(payload);
        if (fin) {
          on_message(fragments_);
          fragments_.clear();
        }
        break;
      case 0x8:  // close: the server is done with us
        fail();
        break;
      case 0x9:  // ping: pong with the same payload
        send_frame(payload, 0xA);
        break;
      default:  // pong, reserved
        break;
    }
  }
  return pos;
}

void connection::on_message(std::string_view m) {
  st().responses.inc();
  if (opt_.protocol == proto::webtorrent) on_webtorrent(m);
  else on_native(m);
}

// ---------------------------------------------------------------- writing
// Appends one masked frame; it goes out with the next flush (at once outside a read batch).
void connection::send_frame(std::string_view payload, unsigned opcode) {
  if (closed_ || !open_) return;
  const std::size_t n = payload.size();
  char hdr[14];
  std::size_t h = 0;
  hdr[h++] = static_cast<char>(0x80 | opcode);
  if (n < 126) {
    hdr[h++] = static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    hdr[h++] = static_cast<char>(0x80 | 126);
    hdr[h++] = static_cast<char>(n >> 8);
    hdr[h++] = static_cast<char>(n & 0xFF);
  } else {
    hdr[h++] = static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) hdr[h++] = static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xFF);
  }
  const std::uint32_t key = d_.mask_key();
  std::memcpy(hdr + h, &key, 4);
  unsigned char k[4];
  std::memcpy(k, &key, 4);
  h += 4;
  const std::size_t at = out_.size();
  out_.resize(at + h + n);
  char* dst = out_.data() + at;
  std::memcpy(dst, hdr, h);
  dst += h;
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<char>(static_cast<unsigned char>(payload[i]) ^ k[i & 3]);
  if (!batching_) flush();
}

void connection::flush() {
  if (writing_ || out_.empty() || closed_) return;
  std::swap(out_, wbuf_);
  writing_ = true;
  ++ops_;
  asio::async_write(sock_, asio::buffer(wbuf_), [this](boost::system::error_code ec, std::size_t) {
    --ops_;
    writing_ = false;
    wbuf_.clear();
    if (ec || closed_) {
      if (ec && !closed_) st().write_errors.inc();
      return fail();
    }
    flush();
  });
}

// ---------------------------------------------------------------- failure
// The connection failed or the server closed it: close, then reopen once no operation is
// left in flight.
void connection::fail() {
  if (!closed_) {
    closed_ = true;
    connecting_ = false;
    if (open_) {
      open_ = false;
      st().closed.inc();
      st().open_now.v.fetch_sub(1, std::memory_order_relaxed);
    }
    outstanding_ = false;
    boost::system::error_code ec;
    sock_.close(ec);
  }
  if (ops_ == 0 && !retry_scheduled_) {
    retry_scheduled_ = true;
    retry_later();
  }
}

void connection::retry_later() {
  if (!opt_.reconnect || opt_.idle || g_.stop.load(std::memory_order_relaxed)) return;
  if (!timer_) timer_ = std::make_unique<asio::steady_timer>(d_.io());
  timer_->expires_after(std::chrono::seconds(1));
  timer_->async_wait([this](boost::system::error_code ec) {
    if (!ec && !g_.stop.load(std::memory_order_relaxed)) start();
  });
}

}  // namespace loadgen
