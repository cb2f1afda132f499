// Block bitfields of the native protocol (bit i = block i, MSB of byte 0 first, ceil(n/8) bytes)
// and the strict base64 they travel in.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "protocol/bitfield.hpp"

namespace {

using swarmcoord::protocol::base64_decode;
using swarmcoord::protocol::base64_encode;
using swarmcoord::protocol::bitfield;

// The wire bytes of a set of block indices, written straight from the contract.
std::string wire_bytes(std::uint32_t size, const std::vector<bool>& bits) {
  std::string out((size + 7) / 8, '\0');
  for (std::uint32_t i = 0; i < size; ++i)
    if (bits[i]) out[i / 8] = static_cast<char>(static_cast<unsigned char>(out[i / 8]) | (0x80u >> (i % 8)));
  return out;
}

std::vector<bool> random_bits(std::uint32_t size, std::mt19937& rng, double density = 0.5) {
  std::bernoulli_distribution d(density);
  std::vector<bool> bits(size);
  for (std::uint32_t i = 0; i < size; ++i) bits[i] = d(rng);
  return bits;
}

std::string random_bytes(std::size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(byte(rng));
  return s;
}

bool is_alphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

TEST_CASE("bitfield: bit i is block i, most significant bit of byte 0 first", "[bitfield]") {
  SECTION("single bytes") {
    auto f = bitfield::from_bytes(std::string("\x80", 1), 8);
    REQUIRE(f);
    CHECK(f->test(0));
    for (std::uint32_t i = 1; i < 8; ++i) CHECK_FALSE(f->test(i));

    auto g = bitfield::from_bytes(std::string("\x01", 1), 8);
    REQUIRE(g);
    CHECK(g->test(7));
    for (std::uint32_t i = 0; i < 7; ++i) CHECK_FALSE(g->test(i));

    auto h = bitfield::from_bytes(std::string("\x40\x00\x01", 3), 24);
    REQUIRE(h);
    CHECK(h->test(1));
    CHECK(h->test(23));
    CHECK(h->count() == 2);
  }
  SECTION("every single bit, across 64-bit word boundaries") {
    for (std::uint32_t size : {1u, 7u, 8u, 9u, 63u, 64u, 65u, 130u, 200u}) {
      for (std::uint32_t i = 0; i < size; ++i) {
        INFO("size " << size << " bit " << i);
        std::vector<bool> bits(size);
        bits[i] = true;
        const auto bytes = wire_bytes(size, bits);
        auto f = bitfield::from_bytes(bytes, size);
        REQUIRE(f);
        CHECK(f->count() == 1);
        for (std::uint32_t j = 0; j < size; ++j) CHECK(f->test(j) == (j == i));

        bitfield g(size);
        CHECK(g.set(i));
        CHECK(g.to_bytes() == bytes);
        CHECK(g == *f);
      }
    }
  }
}

TEST_CASE("bitfield: from_bytes wants exactly ceil(size/8) bytes", "[bitfield]") {
  for (std::uint32_t size = 0; size <= 70; ++size) {
    const std::size_t want = (size + 7) / 8;
    INFO("size " << size);
    CHECK(bitfield::from_bytes(std::string(want, '\0'), size));
    CHECK_FALSE(bitfield::from_bytes(std::string(want + 1, '\0'), size));
    if (want > 0) CHECK_FALSE(bitfield::from_bytes(std::string(want - 1, '\0'), size));
  }
  auto empty = bitfield::from_bytes("", 0);
  REQUIRE(empty);
  CHECK(empty->size() == 0);
  CHECK(empty->to_bytes().empty());
}

TEST_CASE("bitfield: the unused trailing bits must be clear", "[bitfield]") {
  for (std::uint32_t size = 1; size <= 40; ++size) {
    if (size % 8 == 0) continue;
    const std::size_t n = (size + 7) / 8;
    for (std::uint32_t pad = size; pad < n * 8; ++pad) {
      INFO("size " << size << " padding bit " << pad);
      std::string bytes(n, '\0');
      bytes[pad / 8] = static_cast<char>(0x80u >> (pad % 8));
      CHECK_FALSE(bitfield::from_bytes(bytes, size));
      // The same with every real bit set too.
      std::vector<bool> all(size, true);
      std::string full = wire_bytes(size, all);
      full[pad / 8] = static_cast<char>(static_cast<unsigned char>(full[pad / 8]) | (0x80u >> (pad % 8)));
      CHECK_FALSE(bitfield::from_bytes(full, size));
    }
    // The last real bit is fine.
    std::string last(n, '\0');
    last[(size - 1) / 8] = static_cast<char>(0x80u >> ((size - 1) % 8));
    auto f = bitfield::from_bytes(last, size);
    REQUIRE(f);
    CHECK(f->test(size - 1));
  }
}

TEST_CASE("bitfield: to_bytes round trip of random fields", "[bitfield]") {
  std::mt19937 rng(1234);
  for (std::uint32_t size = 0; size <= 300; ++size) {
    for (double density : {0.05, 0.5, 0.95}) {
      const auto bits = random_bits(size, rng, density);
      const auto bytes = wire_bytes(size, bits);
      INFO("size " << size << " density " << density);
      auto f = bitfield::from_bytes(bytes, size);
      REQUIRE(f);
      CHECK(f->size() == size);
      CHECK(f->to_bytes() == bytes);
      std::uint32_t expected_count = 0;
      bool same = true;
      for (std::uint32_t i = 0; i < size; ++i) {
        expected_count += bits[i];
        same = same && f->test(i) == bits[i];
      }
      CHECK(same);
      CHECK(f->count() == expected_count);
      CHECK(f->complete() == (expected_count == size));
      CHECK(f->empty() == (expected_count == 0));
      // for_each_set lists exactly the set bits, ascending.
      std::vector<std::uint32_t> listed, expected;
      f->for_each_set([&](std::uint32_t i) { listed.push_back(i); });
      for (std::uint32_t i = 0; i < size; ++i)
        if (bits[i]) expected.push_back(i);
      CHECK(listed == expected);
    }
  }
}

TEST_CASE("bitfield: construction, set, count and complete", "[bitfield]") {
  for (std::uint32_t size : {1u, 5u, 64u, 65u, 4096u, 4097u}) {
    INFO("size " << size);
    bitfield none(size);
    CHECK(none.size() == size);
    CHECK(none.count() == 0);
    CHECK(none.empty());
    CHECK_FALSE(none.complete());
    CHECK(none.to_bytes() == std::string((size + 7) / 8, '\0'));

    bitfield all(size, true);
    CHECK(all.count() == size);
    CHECK(all.complete());
    CHECK_FALSE(all.empty());
    CHECK(all.to_bytes() == wire_bytes(size, std::vector<bool>(size, true)));

    // Setting every bit one by one makes it complete exactly at the end; re-setting is a no-op.
    bitfield f(size);
    for (std::uint32_t i = size; i-- > 0;) {
      CHECK_FALSE(f.complete());
      REQUIRE(f.set(i));
      CHECK_FALSE(f.set(i));
      CHECK(f.count() == size - i);
    }
    CHECK(f.complete());
    CHECK(f == all);
  }
}

TEST_CASE("bitfield: count_missing_from counts blocks this has that the other lacks", "[bitfield]") {
  std::mt19937 rng(99);
  for (std::uint32_t size : {1u, 9u, 63u, 64u, 65u, 127u, 128u, 129u, 1000u, 4096u}) {
    for (int round = 0; round < 20; ++round) {
      const auto a = random_bits(size, rng, round % 5 * 0.25);
      const auto b = random_bits(size, rng, round % 3 * 0.5);
      auto fa = bitfield::from_bytes(wire_bytes(size, a), size);
      auto fb = bitfield::from_bytes(wire_bytes(size, b), size);
      REQUIRE(fa);
      REQUIRE(fb);
      std::uint32_t a_not_b = 0, b_not_a = 0;
      for (std::uint32_t i = 0; i < size; ++i) {
        a_not_b += a[i] && !b[i];
        b_not_a += b[i] && !a[i];
      }
      INFO("size " << size << " round " << round);
      CHECK(fa->count_missing_from(*fb) == a_not_b);
      CHECK(fb->count_missing_from(*fa) == b_not_a);
      CHECK(fa->any_missing_from(*fb) == (a_not_b > 0));
      CHECK(fb->any_missing_from(*fa) == (b_not_a > 0));
      CHECK(fa->count_missing_from(*fa) == 0);
      CHECK(bitfield(size, true).count_missing_from(*fa) == size - fa->count());
      CHECK(fa->count_missing_from(bitfield(size)) == fa->count());
    }
  }
}

TEST_CASE("bitfield: any_missing_from finds a single block anywhere", "[bitfield]") {
  for (std::uint32_t size : {1u, 64u, 65u, 200u, 4096u}) {
    const bitfield none(size);
    CHECK_FALSE(none.any_missing_from(none));
    CHECK_FALSE(none.any_missing_from(bitfield(size, true)));
    CHECK_FALSE(bitfield(size, true).any_missing_from(bitfield(size, true)));
    for (std::uint32_t i = 0; i < size; i += 1 + size / 50) {
      INFO("size " << size << " block " << i);
      bitfield one(size);
      one.set(i);
      CHECK(one.any_missing_from(none));
      CHECK_FALSE(none.any_missing_from(one));
      bitfield all_but(size, true);
      bitfield other(size);
      for (std::uint32_t j = 0; j < size; ++j)
        if (j != i) other.set(j);
      CHECK(all_but.any_missing_from(other));
      CHECK_FALSE(other.any_missing_from(all_but));
    }
  }
}

TEST_CASE("base64: RFC 4648 test vectors", "[bitfield][base64]") {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
      {std::string("\xfb\xff\xbf", 3), "+/+/"}, {std::string("\0\0\0", 3), "AAAA"},
  };
  for (const auto& [plain, encoded] : vectors) {
    INFO(encoded);
    CHECK(base64_encode(plain) == encoded);
    auto back = base64_decode(encoded);
    REQUIRE(back);
    CHECK(*back == plain);
  }
}

TEST_CASE("base64: round trip of random bytes of every length 0..64", "[bitfield][base64]") {
  std::mt19937 rng(7);
  for (std::size_t len = 0; len <= 64; ++len) {
    for (int round = 0; round < 50; ++round) {
      const auto bytes = random_bytes(len, rng);
      const auto text = base64_encode(bytes);
      INFO("length " << len << " text " << text);
      CHECK(text.size() == (len + 2) / 3 * 4);
      const std::size_t pad = (3 - len % 3) % 3;
      for (std::size_t i = 0; i < text.size(); ++i) {
        if (i >= text.size() - pad) CHECK(text[i] == '=');
        else CHECK(is_alphabet(text[i]));
      }
      auto back = base64_decode(text);
      REQUIRE(back);
      CHECK(*back == bytes);
    }
  }
  // Bytes with every value, so that every sextet value occurs.
  std::string every;
  for (int b = 0; b < 256; ++b) every += static_cast<char>(b);
  auto back = base64_decode(base64_encode(every));
  REQUIRE(back);
  CHECK(*back == every);
}

TEST_CASE("base64: characters outside the standard alphabet are rejected", "[bitfield][base64]") {
  // Every byte value in every position of a quantum.
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    if (is_alphabet(ch)) continue;
    for (int pos = 0; pos < 4; ++pos) {
      std::string text = "QUJD";
      text[static_cast<std::size_t>(pos)] = ch;
      if (ch == '=' && pos >= 2) continue;  // padding: its own test
      INFO("byte " << c << " at " << pos);
      CHECK_FALSE(base64_decode(text));
      CHECK_FALSE(base64_decode("QUJD" + text));
    }
  }
  // URL-safe alphabet, whitespace, line breaks.
  for (const char* bad : {"Zm9-", "Zm9_", "Zm9v Zm9v", "Zm9v\nZm9v", " Zm9v", "Zm9v\r\n", "Zm9v\t"}) {
    INFO(bad);
    CHECK_FALSE(base64_decode(bad));
  }
  CHECK_FALSE(base64_decode(std::string("Zm\0v", 4)));
}

TEST_CASE("base64: bad length and bad padding are rejected", "[bitfield][base64]") {
  for (const char* bad : {"Z", "Zg", "Zg=", "Zm9", "Zm9vY", "Zm9vYg", "Zm9vYg=",  // not a multiple of 4
                          "====", "A===", "Z===", "=Zg=", "Zg=a", "Z=g=", "==Zg",       // misplaced '='
                          "Zg==Zm9v", "Zm8=Zm9v", "Zg==Zg==", "Zm8==",                 // padding not at the end
                          "Zm9vYmFy===="}) {
    INFO(bad);
    CHECK_FALSE(base64_decode(bad));
  }
}

TEST_CASE("base64: non-canonical trailing bits are rejected", "[bitfield][base64]") {
  // One byte: "XY==" carries 12 bits of which the low 4 are dropped; two bytes: "XYZ=" carries
  // 18 bits of which the low 2 are dropped. Exactly the canonical spellings decode: those that
  // the encoder itself produces.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  int one_accepted = 0, two_accepted = 0;
  for (char c : alphabet) {
    const std::string one = std::string("Q") + c + "==";
    const std::string two = std::string("QU") + c + "=";
    auto d1 = base64_decode(one);
    auto d2 = base64_decode(two);
    const int v = static_cast<int>(alphabet.find(c));
    INFO(one << " " << two);
    CHECK(d1.has_value() == ((v & 15) == 0));
    CHECK(d2.has_value() == ((v & 3) == 0));
    if (d1) {
      ++one_accepted;
      CHECK(d1->size() == 1);
      CHECK(base64_encode(*d1) == one);
    }
    if (d2) {
      ++two_accepted;
      CHECK(d2->size() == 2);
      CHECK(base64_encode(*d2) == two);
    }
  }
  CHECK(one_accepted == 4);
  CHECK(two_accepted == 16);
  CHECK_FALSE(base64_decode("Zh=="));  // 'f' is "Zg=="
  CHECK_FALSE(base64_decode("Zm9="));  // "fo" is "Zm8="
  CHECK_FALSE(base64_decode("Zm9vZh=="));
}

TEST_CASE("base64: a bitfield survives the wire", "[bitfield][base64]") {
  std::mt19937 rng(4242);
  for (std::uint32_t size : {1u, 8u, 13u, 64u, 100u, 4096u, 65536u}) {
    const auto bits = random_bits(size, rng, 0.3);
    const auto bytes = wire_bytes(size, bits);
    auto text = base64_encode(bytes);
    auto decoded = base64_decode(text);
    REQUIRE(decoded);
    auto f = bitfield::from_bytes(*decoded, size);
    REQUIRE(f);
    CHECK(f->to_bytes() == bytes);
  }
}
