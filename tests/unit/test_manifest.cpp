// Block manifests: one SHA-256 per block_size bytes, the last block short, whatever chunks
// the input stream hands out.
#include <catch2/catch.hpp>

#include <sstream>
#include <streambuf>

#include <nlohmann/json.hpp>

#include "server/manifest/manifest.hpp"

namespace {

using nlohmann::json;
namespace mf = swarmcoord::manifest;

// A stream buffer that yields at most `chunk` bytes per underflow, like a pipe.
class trickle_buf : public std::streambuf {
 public:
  trickle_buf(std::string data, std::size_t chunk) : data_(std::move(data)), chunk_(chunk) {}

 protected:
  int_type underflow() override {
    if (pos_ >= data_.size()) return traits_type::eof();
    const std::size_t n = std::min(chunk_, data_.size() - pos_);
    char* p = data_.data() + pos_;
    setg(p, p, p + n);
    pos_ += n;
    return traits_type::to_int_type(*p);
  }

 private:
  std::string data_;
  std::size_t chunk_;
  std::size_t pos_ = 0;
};

json manifest_of(const std::string& data, std::uint32_t block_size, std::size_t chunk = 1 << 20) {
  trickle_buf buf(data, chunk);
  std::istream in(&buf);
  return json::parse(mf::make(in, block_size));
}

}  // namespace

TEST_CASE("manifest: known SHA-256 values, base64", "[manifest]") {
  // FIPS 180-2 test vectors.
  auto j = manifest_of("abc", 1024);
  CHECK(j.at("size") == 3);
  CHECK(j.at("block_size") == 1024);
  CHECK(j.at("algorithm") == "sha-256");
  CHECK(j.at("version") == 1);
  REQUIRE(j.at("blocks").size() == 1);
  CHECK(j.at("blocks")[0] == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");

  // An empty resource has no blocks.
  auto empty = manifest_of("", 1024);
  CHECK(empty.at("size") == 0);
  CHECK(empty.at("blocks").empty());
}

TEST_CASE("manifest: blocks are cut at block_size whatever the stream's chunks", "[manifest]") {
  // 1,000,000 'a' hash to the FIPS 180-2 vector; cut in 1024-byte blocks, the blocks of
  // identical content hash the same and the short last block differently.
  const std::string million(1'000'000, 'a');
  for (std::size_t chunk : {1u, 7u, 1000u, 4096u, 1u << 20}) {
    INFO("chunk " << chunk);
    auto j = manifest_of(million, 1024, chunk);
    CHECK(j.at("size") == 1'000'000);
    const auto& blocks = j.at("blocks");
    REQUIRE(blocks.size() == (1'000'000 + 1023) / 1024);
    for (std::size_t i = 1; i + 1 < blocks.size(); ++i) REQUIRE(blocks[i] == blocks[0]);
    CHECK(blocks.back() != blocks[0]);  // 1,000,000 % 1024 = 576 bytes
  }
  // One block of the whole million: the published digest.
  auto whole = manifest_of(million, 1u << 20, 333);
  REQUIRE(whole.at("blocks").size() == 1);
  CHECK(whole.at("blocks")[0] == "zcduXJkU+5KBocfihNc+Z/GAmkiklyAOBG05zMcRLNA=");
}

TEST_CASE("manifest: block size bounds and the url", "[manifest]") {
  std::istringstream in("x");
  CHECK_THROWS_WITH(mf::make(in, 1023), Catch::Contains("block-size"));
  std::istringstream in2("x");
  CHECK_THROWS_WITH(mf::make(in2, (64u << 20) + 1), Catch::Contains("block-size"));
  std::istringstream in3("x");
  // ordered_json keeps the document's key order: the url comes first, for people reading it.
  auto j = nlohmann::ordered_json::parse(mf::make(in3, 1024, std::string("https://cdn.example/x")));
  CHECK(j.at("url") == "https://cdn.example/x");
  CHECK(j.begin().key() == "url");
}
