// Annotated locking and thread primitives (STYLE.md §7: no unannotated std::mutex, no raw
// std::thread). Under clang, -Wthread-safety checks that every WEFT_GUARDED_BY member is only
// touched with its mutex held; under GCC the annotations compile to nothing.
#pragma once

#include <mutex>
#include <string>
#include <thread>
#include <utility>

#if defined(__clang__)
#define WEFT_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define WEFT_THREAD_ANNOTATION(x)
#endif

#define WEFT_CAPABILITY(x) WEFT_THREAD_ANNOTATION(capability(x))
#define WEFT_SCOPED_CAPABILITY WEFT_THREAD_ANNOTATION(scoped_lockable)
#define WEFT_GUARDED_BY(x) WEFT_THREAD_ANNOTATION(guarded_by(x))
#define WEFT_ACQUIRE(...) WEFT_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define WEFT_RELEASE(...) WEFT_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define WEFT_REQUIRES(...) WEFT_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))

namespace weft {

class WEFT_CAPABILITY("mutex") Mutex {
 public:
  void lock() WEFT_ACQUIRE() { mu_.lock(); }
  void unlock() WEFT_RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class WEFT_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) WEFT_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() WEFT_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// A named thread that is always joined: std::jthread plus a name visible in top/gdb.
class Thread {
 public:
  template <typename F>
  Thread(std::string name, F&& body)
      : thread_([name = std::move(name), body = std::forward<F>(body)]() mutable {
          pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
          body();
        }) {}

 private:
  std::jthread thread_;
};

}  // namespace weft
