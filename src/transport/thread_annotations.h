// Clang thread-safety annotations and an annotated Mutex for the transport.
//
// With clang -Wthread-safety the compiler checks that fields marked
// GUARDED_BY(mu_) are only touched with mu_ held; with g++ the macros are
// empty and serve as documentation. Each macro is defined only if nobody
// defined it before, so a project-wide header can take over later.
//
// Mutex is std::mutex with the capability attribute; MutexLock holds it for
// a scope (the only way we lock: no unlocking in mid-function).
//
// Thread safety: Mutex is a mutex.
#pragma once

#include <mutex>

#if defined(__clang__)
#define KEEL_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define KEEL_THREAD_ANNOTATION_(x)
#endif

#ifndef CAPABILITY
#define CAPABILITY(x) KEEL_THREAD_ANNOTATION_(capability(x))
#endif
#ifndef SCOPED_CAPABILITY
#define SCOPED_CAPABILITY KEEL_THREAD_ANNOTATION_(scoped_lockable)
#endif
#ifndef GUARDED_BY
#define GUARDED_BY(x) KEEL_THREAD_ANNOTATION_(guarded_by(x))
#endif
#ifndef PT_GUARDED_BY
#define PT_GUARDED_BY(x) KEEL_THREAD_ANNOTATION_(pt_guarded_by(x))
#endif
#ifndef ACQUIRE
#define ACQUIRE(...) KEEL_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#endif
#ifndef RELEASE
#define RELEASE(...) KEEL_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#endif
#ifndef EXCLUSIVE_LOCKS_REQUIRED
#define EXCLUSIVE_LOCKS_REQUIRED(...) \
  KEEL_THREAD_ANNOTATION_(exclusive_locks_required(__VA_ARGS__))
#endif
#ifndef LOCKS_EXCLUDED
#define LOCKS_EXCLUDED(...) KEEL_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
#endif

namespace keel::transport {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace keel::transport
