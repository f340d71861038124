// KEEL_CHECK: invariants that stay on in release builds.
//
// A failed check is a bug: it prints the condition, the place and any
// streamed context to stderr and aborts. Use Status for expected failures.
//
//   KEEL_CHECK(match < next) << "peer " << id;
//   KEEL_CHECK_EQ(a, b);
//
// Thread safety: safe from any thread.
#pragma once

#include <sstream>

namespace keel::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond);
  [[noreturn]] ~CheckFailure();
  template <typename T>
  CheckFailure& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  std::ostringstream os_;
};

// Lets `cond ? (void)0 : Voidify() & CheckFailure(...) << x` type-check.
struct Voidify {
  void operator&(const CheckFailure&) {}
};

}  // namespace keel::internal

#define KEEL_CHECK(cond)              \
  (__builtin_expect(!!(cond), 1))     \
      ? (void)0                       \
      : ::keel::internal::Voidify() & \
            ::keel::internal::CheckFailure(__FILE__, __LINE__, #cond)

#define KEEL_CHECK_OP(a, op, b)                                       \
  ((a)op(b)) ? (void)0                                                \
             : ::keel::internal::Voidify() &                          \
                   ::keel::internal::CheckFailure(__FILE__, __LINE__, \
                                                  #a " " #op " " #b)  \
                       << "(" << (a) << " vs " << (b) << ") "

#define KEEL_CHECK_EQ(a, b) KEEL_CHECK_OP(a, ==, b)
#define KEEL_CHECK_NE(a, b) KEEL_CHECK_OP(a, !=, b)
#define KEEL_CHECK_LE(a, b) KEEL_CHECK_OP(a, <=, b)
#define KEEL_CHECK_LT(a, b) KEEL_CHECK_OP(a, <, b)
#define KEEL_CHECK_GE(a, b) KEEL_CHECK_OP(a, >=, b)
#define KEEL_CHECK_GT(a, b) KEEL_CHECK_OP(a, >, b)
#define KEEL_UNREACHABLE() KEEL_CHECK(false) << "unreachable "
