// Waiter: whoever waits for one proposal of this member to be applied.
//
// A blocking caller takes a future (get_future); an asynchronous request
// gives a callback and a deadline instead, so that no thread is parked per
// request in flight. set_value is called exactly once, on the Raft loop
// thread (applied), on the reaper thread (timed out) or on Stop.
//
// Thread safety: none of its own; Server guards its waiters with wait_mu_.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>

namespace keel::server {

struct ApplyResult;

class Waiter {
 public:
  using Callback = std::function<void(std::shared_ptr<ApplyResult>)>;
  using Clock = std::chrono::steady_clock;

  Waiter() = default;
  Waiter(Callback cb, Clock::time_point deadline)
      : cb_(std::move(cb)), deadline_(deadline) {}

  std::future<std::shared_ptr<ApplyResult>> get_future() {
    promise_.emplace();
    return promise_->get_future();
  }
  void set_value(std::shared_ptr<ApplyResult> r) {
    if (cb_) {
      cb_(std::move(r));
    } else if (promise_) {
      promise_->set_value(std::move(r));
    }
  }
  // Asynchronous waiters time out on the server's reaper; blocking ones
  // apply their own deadline.
  bool is_async() const { return static_cast<bool>(cb_); }
  Clock::time_point deadline() const { return deadline_; }

 private:
  std::optional<std::promise<std::shared_ptr<ApplyResult>>> promise_;
  Callback cb_;
  Clock::time_point deadline_ = Clock::time_point::max();
};

}  // namespace keel::server
