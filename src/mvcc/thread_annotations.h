// Clang thread-safety annotations; no-ops on other compilers (g++ reads
// them as documentation).
//
// Thread safety: macros only.
#pragma once

#if defined(__clang__)
#define KEEL_MVCC_ANNOTATE(x) __attribute__((x))
#else
#define KEEL_MVCC_ANNOTATE(x)
#endif

#define GUARDED_BY(m) KEEL_MVCC_ANNOTATE(guarded_by(m))
#define REQUIRES(...) KEEL_MVCC_ANNOTATE(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) \
  KEEL_MVCC_ANNOTATE(requires_shared_capability(__VA_ARGS__))
#define EXCLUDES(...) KEEL_MVCC_ANNOTATE(locks_excluded(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) KEEL_MVCC_ANNOTATE(acquired_before(__VA_ARGS__))
