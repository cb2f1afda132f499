// The daemon's allocator. Built with SWARMCOORD_JEMALLOC (the default), the process links
// jemalloc with background threads, which give the pages of freed memory back to the system
// within seconds, off the workers' threads. Swarms come and go in bulk (an event ends, a
// filling client leaves); with glibc's allocator the memory they held stayed resident, and
// malloc_trim(0) gave it back only by stalling the calling worker for as long as the kernel
// takes to unmap it all (bench/memory-fill.md has the figures of each choice).
#include "server/allocator.hpp"

#include <cstddef>

#ifdef SWARMCOORD_JEMALLOC
extern "C" {
// Read once, when jemalloc initialises; the MALLOC_CONF environment variable is applied after
// it and can change it.
const char* malloc_conf = "background_thread:true";
int mallctl(const char* name, void* oldp, std::size_t* oldlenp, void* newp, std::size_t newlen);
}
#endif

namespace swarmcoord {

std::string allocator_description() {
#ifdef SWARMCOORD_JEMALLOC
  const char* version = nullptr;
  std::size_t size = sizeof version;
  if (mallctl("version", &version, &size, nullptr, 0) != 0 || version == nullptr) return "jemalloc (unknown version)";
  bool background = false;
  size = sizeof background;
  const bool known = mallctl("background_thread", &background, &size, nullptr, 0) == 0;
  return std::string("jemalloc ") + version + (known && background ? " (background threads)" : " (no background threads)");
#else
  return "glibc";
#endif
}

}  // namespace swarmcoord
