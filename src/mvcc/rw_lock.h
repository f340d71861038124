// RwLock: a reader-writer lock that prefers writers.
//
// std::shared_mutex on glibc prefers readers, so a steady stream of reads
// (gRPC threads) could starve the apply thread forever. This wraps
// pthread_rwlock with PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP: once a
// writer waits, new readers queue behind it. Not recursive. Meets the
// Lockable/SharedLockable requirements (std::unique_lock, std::shared_lock).
//
// Thread safety: it is the synchronization.
#pragma once

#include <pthread.h>

#include "common/check.h"

namespace keel::mvcc {

class RwLock {
 public:
  RwLock() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    KEEL_CHECK_EQ(pthread_rwlock_init(&rw_, &attr), 0);
    pthread_rwlockattr_destroy(&attr);
  }
  ~RwLock() { pthread_rwlock_destroy(&rw_); }
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;

  void lock() { KEEL_CHECK_EQ(pthread_rwlock_wrlock(&rw_), 0); }
  void unlock() { KEEL_CHECK_EQ(pthread_rwlock_unlock(&rw_), 0); }
  void lock_shared() { KEEL_CHECK_EQ(pthread_rwlock_rdlock(&rw_), 0); }
  void unlock_shared() { KEEL_CHECK_EQ(pthread_rwlock_unlock(&rw_), 0); }

 private:
  pthread_rwlock_t rw_;
};

}  // namespace keel::mvcc
