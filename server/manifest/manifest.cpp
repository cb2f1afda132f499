#include "server/manifest/manifest.hpp"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/bitfield.hpp"

namespace swarmcoord::manifest {
namespace {

std::string sha256(const char* data, std::size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data, size, digest, &length, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 failed");
  return std::string(reinterpret_cast<const char*>(digest), length);
}

}  // namespace

std::string make(std::istream& in, std::uint32_t block_size, const std::optional<std::string>& url) {
  if (block_size < min_block_size || block_size > max_block_size)
    throw std::runtime_error("--block-size must be between " + std::to_string(min_block_size) + " and " +
                             std::to_string(max_block_size));
  nlohmann::ordered_json j;
  if (url) j["url"] = *url;
  j["version"] = 1;
  auto blocks = nlohmann::json::array();
  std::vector<char> buffer(block_size);
  std::uint64_t size = 0;
  while (in) {
    // A block is exactly block_size bytes (the last one may be shorter), however the stream
    // hands them out.
    std::size_t filled = 0;
    while (filled < block_size && in.read(buffer.data() + filled, block_size - filled))
      filled += static_cast<std::size_t>(in.gcount());
    filled += in ? 0 : static_cast<std::size_t>(in.gcount());
    if (in.bad()) throw std::runtime_error("read error");
    if (filled == 0) break;
    size += filled;
    blocks.push_back(protocol::base64_encode(sha256(buffer.data(), filled)));
  }
  j["size"] = size;
  j["block_size"] = block_size;
  j["algorithm"] = "sha-256";
  j["blocks"] = std::move(blocks);
  return j.dump();
}

}  // namespace swarmcoord::manifest
