#pragma once
// The allocator that serves malloc in this process, named for the start-up log.
#include <string>

namespace swarmcoord {

// "jemalloc 5.3.0-0-g… (background threads)", or "glibc" when jemalloc is not linked.
std::string allocator_description();

}  // namespace swarmcoord
