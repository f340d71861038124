// keel-bench: a load generator for the etcd v3 gRPC API, so that one tool
// drives etcd and keel alike.
//
//   keel-bench put   --endpoints=127.0.0.1:2379 --conns=100 --clients=1000
//                    --total=100000 --key-size=8 --val-size=256
//   keel-bench range --consistency=s ...      (l = linearizable, default)
//   keel-bench txn-put ...
//   keel-bench watch --watchers=10000 --watch-streams=100 --put-total=100
//   keel-bench lease-keepalive --clients=100 --total=100000
//
// put, range and txn-put go over keel-bench's own HTTP/2 client by default
// (h2_unary.h: the same requests for a fraction of gRPC C++'s CPU);
// `--transport grpc`, watch and lease-keepalive use gRPC C++'s
// completion-queue client below.
//
// "Connections" are distinct TCP connections (for gRPC, distinct channels,
// each with its own subchannel); "clients" are closed-loop callers, each
// with one request outstanding at a time, spread round-robin over the
// connections. --rate caps the total request rate. Connections are spread
// over the endpoints in turn.
//
// Threads: --threads workers (default 1), each polling one completion queue
// (or running one HTTP/2 event loop) that serves its share of the
// connections; the main thread only sets up, shows a progress bar on a
// terminal and prints the report (JSON with --json). One worker is the default
// because gRPC's poller (epoll1) is shared by every completion queue of the
// process: a second worker mostly adds hand-offs between the two (kicks, futex
// wakeups), and on the 2-core machine the benchmark shares with the servers it
// cost ~20% more CPU per request.
#include <absl/synchronization/mutex.h>
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "h2_unary.h"
#include "stats.h"

namespace keel::bench {

std::string StatusText(int code, const std::string& message) {
  std::string name;
  switch (code) {
    case grpc::DEADLINE_EXCEEDED:
      name = "DeadlineExceeded";
      break;
    case grpc::UNAVAILABLE:
      name = "Unavailable";
      break;
    case grpc::RESOURCE_EXHAUSTED:
      name = "ResourceExhausted";
      break;
    case grpc::UNIMPLEMENTED:
      name = "Unimplemented";
      break;
    case grpc::CANCELLED:
      name = "Cancelled";
      break;
    default:
      name = "code " + std::to_string(code);
  }
  return name + ": " + message;
}

namespace {

using etcdserverpb::KV;
using etcdserverpb::Lease;
using etcdserverpb::Watch;

// Random bytes: incompressible, as etcd's benchmark uses, so a store that
// compresses gains nothing from the value's shape.
std::string RandomBytes(size_t n, std::mt19937_64* rng) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>((*rng)() & 0xff);
  return s;
}

std::string StatusText(const grpc::Status& st) {
  return keel::bench::StatusText(st.error_code(), st.error_message());
}

gpr_timespec Deadline(double seconds) {
  return gpr_time_add(
      gpr_now(GPR_CLOCK_MONOTONIC),
      gpr_time_from_nanos(static_cast<int64_t>(seconds * 1e9), GPR_TIMESPAN));
}

// ---------------------------------------------------------------------------
// The event loop: a completion-queue tag calls back its owner.

class Handler {
 public:
  virtual ~Handler() = default;
  virtual void OnEvent(int kind, bool ok) = 0;
};

struct Tag {
  Handler* h;
  int kind;
};

class Worker {
 public:
  Worker() = default;
  grpc::CompletionQueue* cq() { return &cq_; }
  Recorder& rec() { return rec_; }
  void AddClient() { active_++; }
  // A client will issue nothing more; the last one shuts the queue down.
  void ClientDone() {
    if (--active_ == 0) cq_.Shutdown();
  }
  void Run() {
    void* t;
    bool ok;
    while (cq_.Next(&t, &ok)) {
      auto* tag = static_cast<Tag*>(t);
      tag->h->OnEvent(tag->kind, ok);
    }
  }
  void ShutdownIfIdle() {
    if (active_ == 0) cq_.Shutdown();
  }

 private:
  grpc::CompletionQueue cq_;
  Recorder rec_;
  std::atomic<int> active_{0};
};

// A closed-loop client: one request outstanding, the next issued when it
// completes, until the run's total or duration is reached. A rate cap
// schedules request n at start + n/rate.
class LoopClient : public Handler {
 public:
  LoopClient(Shared* s, Worker* w, uint64_t seed) : s_(s), w_(w), rng_(seed) {}

  void Begin() {
    w_->AddClient();
    Next();
  }

  void OnEvent(int kind, bool ok) override {
    if (kind == kAlarm) {
      Send();
      return;
    }
    OnReply(kind, ok);
  }

 protected:
  static constexpr int kAlarm = 100;

  virtual void Send() = 0;
  virtual void OnReply(int kind, bool ok) = 0;
  // Called when the client will issue nothing more.
  virtual void Finish() { w_->ClientDone(); }

  // Records a completed request and issues the next.
  void Complete(const grpc::Status& st) {
    if (st.ok()) {
      w_->rec().Ok((Clock::now() - sent_).count());
    } else {
      w_->rec().Error(StatusText(st));
    }
    s_->completed++;
    Next();
  }

  void Next() {
    auto now = Clock::now();
    Clock::time_point at;
    if (!s_->Claim(now, &n_, &at)) return Finish();
    if (at > now) {
      alarm_.Set(
          w_->cq(),
          gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                       gpr_time_from_nanos((at - now).count(), GPR_TIMESPAN)),
          &alarm_tag_);
      return;
    }
    Send();
  }

  std::string NextKey() { return keel::bench::NextKey(*s_->opt, n_, &rng_); }

  Shared* const s_;
  Worker* const w_;
  std::mt19937_64 rng_;
  int64_t n_ = 0;
  Clock::time_point sent_;
  grpc::Alarm alarm_;
  Tag alarm_tag_{this, kAlarm};
};

// Put, Range and Txn: one unary call per request.
class UnaryClient : public LoopClient {
 public:
  UnaryClient(Shared* s, Worker* w, uint64_t seed, KV::Stub* stub)
      : LoopClient(s, w, seed), stub_(stub) {}

 protected:
  void Send() override {
    const Options& o = *s_->opt;
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(Deadline(o.timeout_s));
    sent_ = Clock::now();
    if (o.workload == "put") {
      etcdserverpb::PutRequest req;
      req.set_key(NextKey());
      req.set_value(s_->value);
      put_ = stub_->AsyncPut(ctx_.get(), req, w_->cq());
      put_->Finish(&put_resp_, &status_, &done_);
    } else if (o.workload == "range") {
      etcdserverpb::RangeRequest req;
      req.set_key(NextKey());
      req.set_serializable(o.consistency == "s");
      range_ = stub_->AsyncRange(ctx_.get(), req, w_->cq());
      range_->Finish(&range_resp_, &status_, &done_);
    } else {  // txn-put
      etcdserverpb::TxnRequest req;
      auto* put = req.add_success()->mutable_request_put();
      put->set_key(NextKey());
      put->set_value(s_->value);
      txn_ = stub_->AsyncTxn(ctx_.get(), req, w_->cq());
      txn_->Finish(&txn_resp_, &status_, &done_);
    }
  }
  void OnReply(int, bool) override { Complete(status_); }

 private:
  KV::Stub* const stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  grpc::Status status_;
  Tag done_{this, 0};
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>>
      put_;
  etcdserverpb::PutResponse put_resp_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::RangeResponse>>
      range_;
  etcdserverpb::RangeResponse range_resp_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::TxnResponse>>
      txn_;
  etcdserverpb::TxnResponse txn_resp_;
};

// Lease keepalive: each client keeps one LeaseKeepAlive stream and renews
// its own lease over it, one request in flight; latency is write to reply.
class KeepAliveClient : public LoopClient {
 public:
  KeepAliveClient(Shared* s, Worker* w, uint64_t seed, Lease::Stub* stub,
                  int64_t lease_id)
      : LoopClient(s, w, seed), stub_(stub), lease_id_(lease_id) {}

  void Open() {
    w_->AddClient();
    stream_ = stub_->PrepareAsyncLeaseKeepAlive(&ctx_, w_->cq());
    stream_->StartCall(&start_);
  }

 protected:
  enum { kStart = 1, kWrite, kRead, kWritesDone, kFinish };

  void Send() override {
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(lease_id_);
    sent_ = Clock::now();
    stream_->Write(req, &write_);
  }

  void OnReply(int kind, bool ok) override {
    switch (kind) {
      case kStart:
        if (!ok) return Fail();
        Next();
        return;
      case kWrite:
        if (!ok) return Fail();
        stream_->Read(&resp_, &read_);
        return;
      case kRead:
        if (!ok) return Fail();
        if (resp_.ttl() <= 0) {
          w_->rec().Error("lease keepalive answered TTL " +
                          std::to_string(resp_.ttl()));
          s_->completed++;
          Next();
          return;
        }
        Complete(grpc::Status::OK);
        return;
      case kWritesDone:
        stream_->Finish(&status_, &finish_);
        return;
      case kFinish:
        if (failed_ && !status_.ok()) w_->rec().Error(StatusText(status_));
        w_->ClientDone();
        return;
    }
  }

  void Finish() override {
    if (finished_) return;
    finished_ = true;
    stream_->WritesDone(&writes_done_);
  }

 private:
  // The stream broke: Finish() reports why.
  void Fail() {
    failed_ = true;
    finished_ = true;
    s_->completed++;
    stream_->Finish(&status_, &finish_);
  }

  Lease::Stub* const stub_;
  const int64_t lease_id_;
  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<etcdserverpb::LeaseKeepAliveRequest,
                                    etcdserverpb::LeaseKeepAliveResponse>>
      stream_;
  etcdserverpb::LeaseKeepAliveResponse resp_;
  grpc::Status status_;
  bool finished_ = false;
  bool failed_ = false;
  Tag start_{this, kStart}, write_{this, kWrite}, read_{this, kRead},
      writes_done_{this, kWritesDone}, finish_{this, kFinish};
};

// One Watch stream carrying several watchers of the same key. Every event's
// value starts with the put's send time (steady clock, ns); the delay from
// that to the event's arrival is the sample.
class WatchStream : public Handler {
 public:
  WatchStream(Shared* s, Worker* w, Watch::Stub* stub, std::string key,
              int watchers, std::atomic<int>* created,
              std::atomic<int64_t>* events, std::atomic<int64_t>* responses)
      : s_(s),
        w_(w),
        stub_(stub),
        key_(std::move(key)),
        watchers_(watchers),
        created_(created),
        events_(events),
        responses_(responses) {}

  void Open() {
    w_->AddClient();
    stream_ = stub_->PrepareAsyncWatch(&ctx_, w_->cq());
    stream_->StartCall(&start_);
  }
  void Cancel() { ctx_.TryCancel(); }

  void OnEvent(int kind, bool ok) override {
    switch (kind) {
      case kStart:
        if (!ok) return Finish();
        stream_->Read(&resp_, &read_);
        WriteCreate();
        return;
      case kWrite:
        if (!ok) return;  // the read fails too and finishes
        WriteCreate();
        return;
      case kRead:
        if (!ok) return Finish();
        OnResponse();
        stream_->Read(&resp_, &read_);
        return;
      case kFinish:
        if (!status_.ok() && status_.error_code() != grpc::CANCELLED) {
          w_->rec().Error(StatusText(status_));
        }
        w_->ClientDone();
        return;
    }
  }

 private:
  enum { kStart = 1, kWrite, kRead, kFinish };

  void WriteCreate() {
    if (sent_creates_ == watchers_) return;
    sent_creates_++;
    etcdserverpb::WatchRequest req;
    req.mutable_create_request()->set_key(key_);
    stream_->Write(req, &write_);
  }

  void OnResponse() {
    auto now = Clock::now().time_since_epoch().count();
    if (resp_.created()) (*created_)++;
    if (resp_.canceled()) {
      w_->rec().Error("watch canceled: " + resp_.cancel_reason());
    }
    if (resp_.events_size() > 0) (*responses_)++;
    for (const auto& ev : resp_.events()) {
      const std::string& v = ev.kv().value();
      if (v.size() < 8) continue;
      int64_t ts;
      std::memcpy(&ts, v.data(), 8);
      w_->rec().Ok(now - ts);
      (*events_)++;
    }
  }

  void Finish() {
    if (finishing_) return;
    finishing_ = true;
    stream_->Finish(&status_, &finish_);
  }

  Shared* const s_;
  Worker* const w_;
  Watch::Stub* const stub_;
  const std::string key_;
  const int watchers_;
  std::atomic<int>* const created_;
  std::atomic<int64_t>* const events_;
  std::atomic<int64_t>* const responses_;  // those with events
  int sent_creates_ = 0;
  bool finishing_ = false;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<etcdserverpb::WatchRequest,
                                                etcdserverpb::WatchResponse>>
      stream_;
  etcdserverpb::WatchResponse resp_;
  grpc::Status status_;
  Tag start_{this, kStart}, write_{this, kWrite}, read_{this, kRead},
      finish_{this, kFinish};
};

// ---------------------------------------------------------------------------

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {}

  int Run() {
    std::mt19937_64 rng(o_.seed);
    shared_.opt = &o_;
    shared_.value = RandomBytes(o_.val_size, &rng);
    h2_ = o_.transport == "h2" && IsUnary();
    if (!h2_ && !Connect()) return 2;
    int nthreads = std::clamp(o_.threads, 1, o_.conns);
    for (int i = 0; i < nthreads; i++) {
      workers_.push_back(std::make_unique<Worker>());
    }
    Summary sum;
    if (o_.workload == "watch") {
      if (!RunWatch(&sum)) return 2;
    } else if (o_.workload == "lease-keepalive") {
      if (!RunKeepAlive(&sum, &rng)) return 2;
    } else {
      if (!RunUnary(&sum, &rng)) return 2;
    }
    if (o_.json) {
      std::fputs(ToJson(sum).c_str(), stdout);
    } else {
      std::fputs(ToText(sum).c_str(), stdout);
    }
    std::fflush(stdout);
    return 0;
  }

 private:
  bool Connect() {
    for (int i = 0; i < o_.conns; i++) {
      grpc::ChannelArguments args;
      // A distinct argument keeps gRPC from sharing one subchannel (one
      // TCP connection) between channels to the same address.
      args.SetInt("keel.bench.connection", i);
      args.SetMaxReceiveMessageSize(-1);
      args.SetMaxSendMessageSize(-1);
      // The client's CPU competes with the servers under test for the same
      // cores, so its gRPC stack is kept lean: no retry filter (it buffers
      // every call's messages for a retry policy nobody configured), the
      // minimal filter stack (no client-side message-size, idle or census
      // filters) but deadlines still enforced here, and no BDP pings (the
      // messages are small). Together about a third less CPU per call.
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
      args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
      args.SetInt(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 1);
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      const std::string& ep = o_.endpoints[i % o_.endpoints.size()];
      auto ch = grpc::CreateCustomChannel(
          ep, grpc::InsecureChannelCredentials(), args);
      if (!ch->WaitForConnected(Deadline(10))) {
        std::fprintf(stderr, "keel-bench: cannot connect to %s\n", ep.c_str());
        return false;
      }
      channels_.push_back(ch);
      kv_.push_back(KV::NewStub(ch));
      lease_.push_back(Lease::NewStub(ch));
      watch_.push_back(Watch::NewStub(ch));
    }
    return true;
  }

  bool IsUnary() const {
    return o_.workload == "put" || o_.workload == "range" ||
           o_.workload == "txn-put";
  }

  Worker* WorkerFor(int conn) { return workers_[conn % workers_.size()].get(); }

  // The run's start, and its end when it lasts --duration.
  void StartClock() {
    shared_.start = Clock::now();
    if (o_.duration_s > 0) {
      shared_.stop_at =
          shared_.start +
          std::chrono::nanoseconds(static_cast<int64_t>(o_.duration_s * 1e9));
    }
  }

  // Runs the workers and the progress bar until every worker is done.
  double Drive() {
    StartClock();
    std::vector<std::thread> threads;
    for (auto& w : workers_) {
      threads.emplace_back([w = w.get()] { w->Run(); });
    }
    return WaitWorkers(&threads);
  }

  double WaitWorkers(std::vector<std::thread>* threads) {
    std::atomic<bool> done{false};
    std::thread bar;
    if (o_.progress && isatty(STDERR_FILENO)) {
      bar = std::thread([&] { ProgressBar(&done); });
    }
    for (auto& t : *threads) t.join();
    double secs =
        std::chrono::duration<double>(Clock::now() - shared_.start).count();
    done = true;
    if (bar.joinable()) bar.join();
    return secs;
  }

  void ProgressBar(std::atomic<bool>* done) {
    while (!done->load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // redraw
      double secs =
          std::chrono::duration<double>(Clock::now() - shared_.start).count();
      int64_t n = shared_.completed.load();
      double frac = 0;
      if (o_.total > 0) frac = static_cast<double>(n) / o_.total;
      if (o_.duration_s > 0) frac = std::max(frac, secs / o_.duration_s);
      frac = std::clamp(frac, 0.0, 1.0);
      constexpr int kWidth = 40;
      int fill = static_cast<int>(frac * kWidth);
      std::fprintf(stderr, "\r[%s%s] %3d%% %" PRId64 " ops %.0f ops/s ",
                   std::string(fill, '#').c_str(),
                   std::string(kWidth - fill, ' ').c_str(),
                   static_cast<int>(frac * 100), n, secs > 0 ? n / secs : 0);
    }
    std::fprintf(stderr, "\r%s\r", std::string(80, ' ').c_str());
  }

  bool RunUnary(Summary* sum, std::mt19937_64* rng) {
    std::string name = o_.workload;
    if (name == "range") {
      name += o_.consistency == "s" ? " (serializable)" : " (linearizable)";
    }
    if (h2_) {
      std::vector<uint64_t> seeds(o_.clients);
      for (auto& seed : seeds) seed = (*rng)();
      H2Unary engine(&shared_, seeds);
      if (!engine.Connect()) return false;
      StartClock();
      std::vector<std::thread> threads;
      for (int i = 0; i < engine.loops(); i++) {
        threads.emplace_back([&engine, i] { engine.Run(i); });
      }
      double secs = WaitWorkers(&threads);
      *sum = Summarize(name, engine.MergeAll().get(), secs);
      return true;
    }
    std::vector<std::unique_ptr<UnaryClient>> clients;
    for (int i = 0; i < o_.clients; i++) {
      int c = i % o_.conns;
      clients.push_back(std::make_unique<UnaryClient>(&shared_, WorkerFor(c),
                                                      (*rng)(), kv_[c].get()));
    }
    // Every client is registered before any can finish, so that no queue
    // shuts down early.
    for (auto& w : workers_) w->AddClient();
    for (auto& c : clients) c->Begin();
    for (auto& w : workers_) w->ClientDone();
    double secs = Drive();
    *sum = Summarize(name, MergeAll().get(), secs);
    return true;
  }

  bool RunKeepAlive(Summary* sum, std::mt19937_64* rng) {
    // One lease per client, granted before the clock starts.
    std::vector<int64_t> ids(o_.clients);
    std::vector<std::thread> granters;
    std::atomic<bool> failed{false};
    const int kGranters = std::min(16, o_.clients);
    for (int g = 0; g < kGranters; g++) {
      granters.emplace_back([&, g] {
        for (int i = g; i < o_.clients; i += kGranters) {
          grpc::ClientContext ctx;
          ctx.set_deadline(Deadline(o_.timeout_s));
          etcdserverpb::LeaseGrantRequest req;
          req.set_ttl(o_.lease_ttl);
          etcdserverpb::LeaseGrantResponse resp;
          auto st = lease_[i % o_.conns]->LeaseGrant(&ctx, req, &resp);
          if (!st.ok()) {
            if (!failed.exchange(true)) {
              std::fprintf(stderr, "keel-bench: LeaseGrant: %s\n",
                           StatusText(st).c_str());
            }
            return;
          }
          ids[i] = resp.id();
        }
      });
    }
    for (auto& t : granters) t.join();
    if (failed) return false;
    std::vector<std::unique_ptr<KeepAliveClient>> clients;
    for (int i = 0; i < o_.clients; i++) {
      int c = i % o_.conns;
      clients.push_back(std::make_unique<KeepAliveClient>(
          &shared_, WorkerFor(c), (*rng)(), lease_[c].get(), ids[i]));
    }
    for (auto& w : workers_) w->AddClient();
    for (auto& c : clients) c->Open();
    for (auto& w : workers_) w->ClientDone();
    double secs = Drive();
    *sum = Summarize("lease-keepalive", MergeAll().get(), secs);
    // Leave nothing behind: revoke the leases (not timed).
    for (size_t i = 0; i < ids.size(); i++) {
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(o_.timeout_s));
      etcdserverpb::LeaseRevokeRequest req;
      req.set_id(ids[i]);
      etcdserverpb::LeaseRevokeResponse resp;
      (void)lease_[i % o_.conns]->LeaseRevoke(&ctx, req, &resp);
    }
    return true;
  }

  bool RunWatch(Summary* sum) {
    const std::string key = MakeKey(0, o_.key_size) + "-watch";
    std::atomic<int> created{0};
    std::atomic<int64_t> events{0};
    std::atomic<int64_t> responses{0};
    std::vector<std::unique_ptr<WatchStream>> streams;
    int streams_n = std::max(1, std::min(o_.watch_streams, o_.watchers));
    for (int i = 0; i < streams_n; i++) {
      int per = o_.watchers / streams_n + (i < o_.watchers % streams_n);
      int c = i % o_.conns;
      streams.push_back(std::make_unique<WatchStream>(
          &shared_, WorkerFor(c), watch_[c].get(), key, per, &created, &events,
          &responses));
    }
    shared_.start = Clock::now();
    for (auto& w : workers_) w->AddClient();
    for (auto& s : streams) s->Open();
    for (auto& w : workers_) w->ClientDone();
    std::vector<std::thread> threads;
    for (auto& w : workers_) {
      threads.emplace_back([w = w.get()] { w->Run(); });
    }
    auto cancel_all = [&] {
      for (auto& s : streams) s->Cancel();
      for (auto& t : threads) t.join();
    };
    auto deadline =
        Clock::now() +
        std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(std::max(30.0, o_.timeout_s)));
    while (created.load() < o_.watchers && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll
    }
    if (created.load() < o_.watchers) {
      std::fprintf(stderr, "keel-bench: only %d of %d watchers created\n",
                   created.load(), o_.watchers);
      cancel_all();
      std::string err;
      auto all = MergeAll();
      for (const auto& [k, v] : all->errors()) err += " " + k;
      if (!err.empty()) std::fprintf(stderr, "keel-bench:%s\n", err.c_str());
      return false;
    }
    // The putter: put-total puts at put-rate, on the first connection.
    int64_t puts_ok = 0;
    Recorder put_rec;
    std::string value = shared_.value;
    if (value.size() < 8) value.resize(8);
    auto t0 = Clock::now();
    for (int64_t i = 0; i < o_.put_total; i++) {
      auto at = t0 + std::chrono::nanoseconds(
                         static_cast<int64_t>(i * 1e9 / o_.put_rate));
      std::this_thread::sleep_until(at);  // the put schedule (rate)
      int64_t ts = Clock::now().time_since_epoch().count();
      std::memcpy(value.data(), &ts, 8);
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(o_.timeout_s));
      etcdserverpb::PutRequest req;
      req.set_key(key);
      req.set_value(value);
      etcdserverpb::PutResponse resp;
      auto st = kv_[0]->Put(&ctx, req, &resp);
      if (st.ok()) {
        puts_ok++;
      } else {
        put_rec.Error("put: " + StatusText(st));
      }
    }
    const int64_t want = puts_ok * o_.watchers;
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(o_.timeout_s));
    while (events.load() < want && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    cancel_all();
    auto all = MergeAll();
    all->Merge(put_rec);
    if (events.load() < want) {
      for (int64_t i = events.load(); i < want; i++) {
        all->Error("event not delivered within the timeout");
      }
    }
    *sum = Summarize("watch (put-to-event delay)", all.get(), secs);
    sum->extra["watchers"] = o_.watchers;
    sum->extra["watch_streams"] = streams_n;
    sum->extra["puts"] = static_cast<double>(puts_ok);
    sum->extra["events_expected"] = static_cast<double>(want);
    // Responses that carried events: how the server batched them.
    sum->extra["event_responses"] = static_cast<double>(responses.load());
    return true;
  }

  std::unique_ptr<Recorder> MergeAll() {
    auto all = std::make_unique<Recorder>();
    for (auto& w : workers_) all->Merge(w->rec());
    return all;
  }

  const Options o_;
  bool h2_ = false;  // the unary workloads over H2Unary
  Shared shared_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<KV::Stub>> kv_;
  std::vector<std::unique_ptr<Lease::Stub>> lease_;
  std::vector<std::unique_ptr<Watch::Stub>> watch_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  using keel::bench::Options;
  // Debian builds Abseil without NDEBUG, so every absl::Mutex gRPC takes
  // feeds a deadlock-detection graph (~5% of the client's CPU); keel turns
  // it off for the same reason.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Options o;
  CLI::App app{
      "keel-bench: load generator for the etcd v3 API (drives etcd and keel "
      "alike)"};
  app.require_subcommand(1);
  // The common options may come after the workload's name too.
  app.fallthrough();
  std::string endpoints = "127.0.0.1:2379";
  app.add_option("--endpoints", endpoints,
                 "comma-separated host:port list; connections go to them in "
                 "turn");
  app.add_option("--conns", o.conns, "gRPC connections (channels)")
      ->check(CLI::PositiveNumber);
  app.add_option("--clients", o.clients,
                 "concurrent clients (one request in flight each)")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads,
                 "client threads, each with its own completion queue");
  app.add_option("--transport", o.transport,
                 "put, range, txn-put: h2 (keel-bench's own HTTP/2 client, "
                 "lean on CPU) or grpc (gRPC C++'s client)")
      ->check(CLI::IsMember({"h2", "grpc"}));
  app.add_option("--total", o.total, "requests in all (0: use --duration)");
  app.add_option("--duration", o.duration_s, "seconds to run");
  app.add_option("--key-size", o.key_size, "key size in bytes");
  app.add_option("--val-size", o.val_size, "value size in bytes");
  app.add_option("--key-space", o.key_space, "number of distinct keys")
      ->check(CLI::PositiveNumber);
  app.add_flag("--sequential", o.sequential,
               "keys in order (default: uniformly random)");
  app.add_option("--rate", o.rate, "requests per second in all (0: no cap)");
  app.add_option("--timeout", o.timeout_s, "per-request deadline, seconds");
  app.add_option("--seed", o.seed, "seed for keys and values");
  app.add_flag("--json", o.json, "print the report as one JSON object");
  bool no_progress = false;
  app.add_flag("--no-progress", no_progress, "no progress bar");

  auto* put = app.add_subcommand("put", "Put requests");
  auto* range = app.add_subcommand("range", "Range requests on single keys");
  range
      ->add_option("--consistency", o.consistency,
                   "l (linearizable) or s (serializable)")
      ->check(CLI::IsMember({"l", "s"}));
  auto* txn = app.add_subcommand("txn-put", "Txn requests with one put each");
  auto* watch = app.add_subcommand(
      "watch", "delay from a put to its event at many watchers of the key");
  watch->add_option("--watchers", o.watchers, "watchers in all")
      ->check(CLI::PositiveNumber);
  watch
      ->add_option("--watch-streams", o.watch_streams,
                   "Watch streams the watchers share")
      ->check(CLI::PositiveNumber);
  watch->add_option("--put-total", o.put_total, "puts to the watched key");
  watch->add_option("--put-rate", o.put_rate, "puts per second")
      ->check(CLI::PositiveNumber);
  auto* ka = app.add_subcommand(
      "lease-keepalive", "LeaseKeepAlive round trips, one lease per client");
  ka->add_option("--lease-ttl", o.lease_ttl, "TTL of the granted leases");
  CLI11_PARSE(app, argc, argv);
  for (auto* sc : {put, range, txn, watch, ka}) {
    if (sc->parsed()) o.workload = sc->get_name();
  }
  o.endpoints.clear();
  size_t pos = 0;
  while (pos <= endpoints.size()) {
    size_t comma = endpoints.find(',', pos);
    if (comma == std::string::npos) comma = endpoints.size();
    std::string ep = endpoints.substr(pos, comma - pos);
    if (ep.rfind("http://", 0) == 0) ep = ep.substr(7);
    if (!ep.empty()) o.endpoints.push_back(ep);
    pos = comma + 1;
  }
  if (o.endpoints.empty()) {
    std::fprintf(stderr, "keel-bench: --endpoints is empty\n");
    return 2;
  }
  o.progress = !no_progress;
  if (o.workload != "watch" && o.total <= 0 && o.duration_s <= 0) {
    o.total = 10000;
  }
  o.conns = std::min(o.conns, std::max(o.clients, 1));
  if (o.workload == "watch") o.conns = std::min(o.conns, o.watch_streams);
  return keel::bench::Bench(o).Run();
}
