// Helpers for the transport tests: a recording Handler, an in-memory
// SnapshotStore that generates and checks payloads without holding them,
// WaitFor (poll with a deadline; no bare sleeps) and a log capture.
//
// Thread safety: Recorder and TestStore are called from the transport's
// threads while the test thread reads them: every field is under mu_.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/crc32c.h"
#include "transport/transport.h"

namespace keel::transport::testing {

using namespace std::chrono_literals;

// Polls pred every 2 ms until it holds or the deadline passes.
inline bool WaitFor(const std::function<bool()>& pred,
                    std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(2ms);  // poll interval, under the deadline
  }
  return true;
}

class Recorder : public Handler {
 public:
  // Runs on the io thread at each message, before it is recorded.
  std::function<void(const raft::Message&)> on_message;

  void OnMessage(raft::Message m) override {
    if (on_message) on_message(m);
    std::lock_guard l(mu_);
    msgs_.push_back(std::move(m));
  }
  void OnUnreachable(NodeId peer) override {
    std::lock_guard l(mu_);
    unreachable_[peer]++;
  }
  void OnSnapshotStatus(NodeId peer, bool ok) override {
    std::lock_guard l(mu_);
    snap_status_.emplace_back(peer, ok);
  }

  size_t Count() {
    std::lock_guard l(mu_);
    return msgs_.size();
  }
  size_t CountFrom(NodeId from) {
    std::lock_guard l(mu_);
    size_t n = 0;
    for (auto& m : msgs_) n += m.from == from;
    return n;
  }
  std::vector<raft::Message> Messages() {
    std::lock_guard l(mu_);
    return msgs_;
  }
  int Unreachable(NodeId peer) {
    std::lock_guard l(mu_);
    return unreachable_[peer];
  }
  std::vector<std::pair<NodeId, bool>> SnapStatus() {
    std::lock_guard l(mu_);
    return snap_status_;
  }

 private:
  std::mutex mu_;
  std::vector<raft::Message> msgs_;
  std::map<NodeId, int> unreachable_;
  std::vector<std::pair<NodeId, bool>> snap_status_;
};

// Payload byte i of a snapshot: cheap, position-dependent, not constant.
inline char PayloadByte(uint64_t i) {
  return static_cast<char>((i * 2654435761u) >> 13);
}

// The snapshot descriptor (snapshot->data) is the payload size in decimal.
class TestStore : public SnapshotStore {
 public:
  // Failure injection, set before use.
  bool fail_open = false;
  int fail_write_at = -1;  // index of the Write() call that fails
  bool fail_finish = false;
  // Blocks the first Write() until Release() (to test concurrency).
  bool gate_first_write = false;

  Result<std::unique_ptr<ByteSource>> OpenForSend(
      const raft::Snapshot& snap) override {
    if (fail_open) return Status::IOError("injected open failure");
    return std::unique_ptr<ByteSource>(
        std::make_unique<Source>(std::stoull(snap.data)));
  }

  Result<std::unique_ptr<ByteSink>> CreateForReceive(
      const raft::SnapshotMetadata& md, NodeId from) override {
    return std::unique_ptr<ByteSink>(std::make_unique<Sink>(this));
  }

  void Release() {
    std::lock_guard l(mu_);
    released_ = true;
    cv_.notify_all();
  }
  uint64_t bytes() {
    std::lock_guard l(mu_);
    return bytes_;
  }
  int writes() {
    std::lock_guard l(mu_);
    return writes_;
  }
  int finished() {
    std::lock_guard l(mu_);
    return finished_;
  }
  int abandoned() {
    std::lock_guard l(mu_);
    return abandoned_;
  }
  uint32_t crc() {
    std::lock_guard l(mu_);
    return crc_;
  }

  static uint32_t ExpectedCrc(uint64_t size) {
    uint32_t crc = 0;
    std::string buf;
    for (uint64_t pos = 0; pos < size; pos += buf.size()) {
      buf.resize(std::min<uint64_t>(1 << 20, size - pos));
      for (size_t i = 0; i < buf.size(); i++) buf[i] = PayloadByte(pos + i);
      crc = crc32c::Extend(crc, buf.data(), buf.size());
    }
    return crc;
  }

 private:
  class Source : public ByteSource {
   public:
    explicit Source(uint64_t size) : size_(size) {}
    Result<size_t> Read(char* buf, size_t n) override {
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, size_ - pos_));
      for (size_t i = 0; i < k; i++) buf[i] = PayloadByte(pos_ + i);
      pos_ += k;
      return k;
    }

   private:
    const uint64_t size_;
    uint64_t pos_ = 0;
  };

  class Sink : public ByteSink {
   public:
    explicit Sink(TestStore* s) : s_(s) {}
    ~Sink() override {
      std::lock_guard l(s_->mu_);
      if (!done_) s_->abandoned_++;
    }
    Status Write(std::string_view data) override {
      std::unique_lock l(s_->mu_);
      if (s_->gate_first_write) {
        s_->cv_.wait(l, [this] { return s_->released_; });
      }
      if (s_->writes_++ == s_->fail_write_at) {
        return Status::NoSpace("injected write failure");
      }
      s_->bytes_ += data.size();
      s_->crc_ = crc32c::Extend(s_->crc_, data.data(), data.size());
      return Status::OK();
    }
    Status Finish() override {
      std::lock_guard l(s_->mu_);
      if (s_->fail_finish) return Status::IOError("injected fsync failure");
      done_ = true;
      s_->finished_++;
      return Status::OK();
    }

   private:
    TestStore* const s_;
    bool done_ = false;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  uint64_t bytes_ = 0;
  int writes_ = 0;
  int finished_ = 0;
  int abandoned_ = 0;
  uint32_t crc_ = 0;
};

// Captures log lines for the lifetime of the object.
class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    std::erase(sinks, sink_);
  }
  bool Contains(const std::string& needle) {
    for (auto& line : sink_->last_formatted()) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

// A member on loopback with its handler and store.
struct Member {
  Member(NodeId id, uint64_t cluster = 0xc1, uint16_t port = 0,
         std::function<void(Options&)> tweak = nullptr) {
    Options o;
    o.cluster_id = cluster;
    o.local_id = id;
    o.listen_url = "http://127.0.0.1:" + std::to_string(port);
    o.jitter_seed = id;
    if (tweak) tweak(o);
    t = std::make_unique<Transport>(std::move(o), &handler, &store);
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(t->port());
  }

  Recorder handler;
  TestStore store;
  std::unique_ptr<Transport> t;  // last: stopped before the others go
};

inline raft::Message App(NodeId from, NodeId to, uint64_t index,
                         size_t payload = 16) {
  raft::Message m;
  m.type = raft::MessageType::kApp;
  m.from = from;
  m.to = to;
  m.term = 1;
  m.index = index;
  m.entries.push_back(
      {1, index + 1, raft::EntryType::kNormal, std::string(payload, 'x')});
  return m;
}

}  // namespace keel::transport::testing
