// Invariant checks (STYLE.md §3). Untrusted bytes must never reach any of these.
//
//  WEFT_ASSERT(cond, why)          debug builds only.
//  WEFT_BUG(why)                   a "can't happen" path: aborts in debug, logs + counts in release.
//  WEFT_RELEASE_ASSERT(cond, why)  always fatal.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace weft {

// Times WEFT_BUG fired in this process; exported as the `weft_bug_total` metric.
inline std::atomic<uint64_t>& bugCounter() {
  static std::atomic<uint64_t> counter{0};
  return counter;
}

[[noreturn]] inline void assertFailed(const char* cond, const char* why, const char* file, int line) {
  std::fprintf(stderr, "weft: assertion failed at %s:%d: %s (%s)\n", file, line, cond, why);
  std::abort();
}

}  // namespace weft

#define WEFT_RELEASE_ASSERT(cond, why) \
  do {                                 \
    if (!(cond)) [[unlikely]]          \
      ::weft::assertFailed(#cond, why, __FILE__, __LINE__); \
  } while (0)

#ifdef WEFT_NDEBUG
#define WEFT_ASSERT(cond, why) \
  do {                         \
  } while (0)
#define WEFT_BUG(why)                                                           \
  do {                                                                          \
    ::weft::bugCounter().fetch_add(1, std::memory_order_relaxed);               \
    std::fprintf(stderr, "weft: bug at %s:%d: %s\n", __FILE__, __LINE__, why);  \
  } while (0)
#else
#define WEFT_ASSERT(cond, why) WEFT_RELEASE_ASSERT(cond, why)
#define WEFT_BUG(why) ::weft::assertFailed("bug", why, __FILE__, __LINE__)
#endif
