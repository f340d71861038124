// The connection of keel's HTTP/2 front (h2_front.h), shared by its parts:
// h2_front.cc (the connection's io, native unary calls, H2Front itself),
// h2_keepalive.cc (the native LeaseKeepAlive stream) and h2_relay.cc (the
// streams relayed to gRPC C++). Internal to src/api.
#pragma once

#include <grpcpp/server_posix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "api/call_meta.h"
#include "api/grpc_metrics.h"
#include "api/h2_front.h"
#include "api/kv_call.h"
#include "etcdserverpb/rpc.pb.h"
#include "server/server.h"

namespace keel::api::h2 {

using Clock = std::chrono::steady_clock;
using Socket = asio::generic::stream_protocol::socket;

// Per-stream and per-connection receive windows: a request or a relayed
// response of this size flows without waiting for a WINDOW_UPDATE.
constexpr int32_t kStreamWindow = 1 << 20;
constexpr int32_t kConnWindow = 16 << 20;
constexpr size_t kReadBuffer = 64 << 10;
// Bytes for a client not yet taken by its socket above which its
// connection is not read.
constexpr size_t kMaxUnsent = 8 << 20;
// Answers of one keepalive stream not yet taken by the client above which
// its next request waits.
constexpr size_t kKeepAliveUnsent = 64 << 10;

enum class Method { kNone, kRange, kPut, kDeleteRange, kTxn, kKeepAlive };

inline Method NativeMethod(std::string_view path) {
  if (path == "/etcdserverpb.KV/Range") return Method::kRange;
  if (path == "/etcdserverpb.KV/Put") return Method::kPut;
  if (path == "/etcdserverpb.KV/DeleteRange") return Method::kDeleteRange;
  if (path == "/etcdserverpb.KV/Txn") return Method::kTxn;
  if (path == "/etcdserverpb.Lease/LeaseKeepAlive") return Method::kKeepAlive;
  return Method::kNone;
}

// gRPC's grpc-message: printable ASCII but '%' as is, the rest %XX; a
// space at either end too (an HTTP/2 field value may not start or end
// with one).
inline std::string PercentEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    const auto c = static_cast<unsigned char>(s[i]);
    const bool edge = i == 0 || i + 1 == s.size();
    if (c >= 0x20 && c <= 0x7e && c != '%' && !(edge && c == ' ')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// grpc-timeout: at most 8 digits and a unit (H M S m u n).
inline bool ParseGrpcTimeout(std::string_view v, Clock::duration* out) {
  if (v.size() < 2 || v.size() > 9) return false;
  int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  using namespace std::chrono;
  switch (v.back()) {
    case 'H':
      *out = hours(n);
      return true;
    case 'M':
      *out = minutes(n);
      return true;
    case 'S':
      *out = seconds(n);
      return true;
    case 'm':
      *out = milliseconds(n);
      return true;
    case 'u':
      *out = microseconds(n);
      return true;
    case 'n':
      *out = duration_cast<Clock::duration>(nanoseconds(n));
      return true;
    default:
      return false;
  }
}

// Moves up to len bytes of *from (from *off on) to dst; returns how many.
inline size_t Take(std::string* from, size_t* off, uint8_t* dst, size_t len) {
  const size_t n = std::min(len, from->size() - *off);
  std::memcpy(dst, from->data() + *off, n);
  *off += n;
  if (*off == from->size()) {
    from->clear();
    *off = 0;
  } else if (*off >= (64 << 10) && 2 * *off >= from->size()) {
    // A reader always a little behind never empties it: drop what it took.
    from->erase(0, *off);
    *off = 0;
  }
  return n;
}

// Appends msg to *out in gRPC's framing (uncompressed, 4-byte length).
inline void AppendFramed(const google::protobuf::MessageLite& msg,
                         std::string* out) {
  const size_t n = msg.ByteSizeLong();
  const size_t at = out->size();
  out->resize(at + 5 + n);
  auto* p = reinterpret_cast<uint8_t*>(out->data()) + at;
  p[0] = 0;
  p[1] = static_cast<uint8_t>(n >> 24);
  p[2] = static_cast<uint8_t>(n >> 16);
  p[3] = static_cast<uint8_t>(n >> 8);
  p[4] = static_cast<uint8_t>(n);
  msg.SerializeWithCachedSizesToArray(p + 5);
}

inline bool Extensive(const server::Server* s) {
  return s->config().metrics == "extensive";
}

// The credentials of a natively served call: the three request headers the
// checks read (call_meta.h). Plaintext only, so no certificate.
class H2CallMeta final : public CallMeta {
 public:
  std::string_view Metadata(std::string_view key) const override {
    if (key == "token") return token;
    if (key == "authorization") return authorization;
    if (key == "hasleader") return hasleader;
    return {};
  }
  std::string PeerCommonName() const override { return ""; }

  std::string token, authorization, hasleader;
};

// A natively served call while the Server works on it.
struct NativeCall {
  virtual ~NativeCall() {
    if (in_flight != nullptr) in_flight->fetch_sub(1);
  }
  // Parses the request message; false: not one.
  virtual bool Parse(const char* data, size_t n) = 0;
  // Starts it on the Server; done(this) once, from any thread.
  virtual void Start(server::Server* s,
                     std::function<void(NativeCall*)> done) = 0;
  // The response message, gRPC-framed (after an OK status).
  virtual void Frame(std::string* out) = 0;
  virtual std::string ParseError() const = 0;

  int32_t stream_id = 0;
  // The front's count of calls on the Server (H2Front::Stop waits for it).
  std::atomic<int>* in_flight = nullptr;
  grpc::Status status;
  const UnaryMethodMetrics* metrics = nullptr;
  Clock::time_point start = Clock::now();
  H2CallMeta meta;
};

template <typename Req, typename Resp>
struct TypedCall final : NativeCall {
  bool Parse(const char* data, size_t n) override {
    return req.ParseFromArray(data, static_cast<int>(n));
  }
  void Start(server::Server* s,
             std::function<void(NativeCall*)> done) override {
    StartKv(&meta, s, req, &resp,
            [this, done = std::move(done)](const grpc::Status& st) {
              status = st;
              done(this);
            });
  }
  void Frame(std::string* out) override { AppendFramed(resp, out); }
  std::string ParseError() const override {
    return req.InitializationErrorString();
  }

  Req req;
  Resp resp;
};

inline const UnaryMethodMetrics* MetricsFor(Method m, bool extensive) {
  static const UnaryMethodMetrics range("/etcdserverpb.KV/Range", extensive);
  static const UnaryMethodMetrics put("/etcdserverpb.KV/Put", extensive);
  static const UnaryMethodMetrics del("/etcdserverpb.KV/DeleteRange",
                                      extensive);
  static const UnaryMethodMetrics txn("/etcdserverpb.KV/Txn", extensive);
  switch (m) {
    case Method::kRange:
      return &range;
    case Method::kPut:
      return &put;
    case Method::kDeleteRange:
      return &del;
    case Method::kTxn:
      return &txn;
    default:
      return nullptr;
  }
}

inline const StreamMethodMetrics& KeepAliveMetrics(bool extensive) {
  static const StreamMethodMetrics m("/etcdserverpb.Lease/LeaseKeepAlive",
                                     "bidi_stream", extensive);
  return m;
}

inline NativeCall* NewCall(Method m) {
  using namespace etcdserverpb;
  switch (m) {
    case Method::kRange:
      return new TypedCall<RangeRequest, RangeResponse>;
    case Method::kPut:
      return new TypedCall<PutRequest, PutResponse>;
    case Method::kDeleteRange:
      return new TypedCall<DeleteRangeRequest, DeleteRangeResponse>;
    case Method::kTxn:
      return new TypedCall<TxnRequest, TxnResponse>;
    default:
      return nullptr;
  }
}

struct Header {
  std::string name, value;
};

inline std::vector<nghttp2_nv> Nv(const std::vector<Header>& hs) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(hs.size());
  for (const Header& h : hs) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(h.name.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(h.value.data())),
                  h.name.size(), h.value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

// One client stream.
struct Stream {
  int32_t id = 0;
  std::vector<Header> headers;  // as received (relayed streams)
  std::string path, http_method, content_type, encoding, timeout;
  H2CallMeta meta;
  Method method = Method::kNone;
  bool relayed = false;
  bool front_closed = false;
  // Native: the request's bytes until it ends; whether it was answered.
  std::string body;
  bool answered = false;
  std::unique_ptr<asio::steady_timer> deadline;
  // Response bytes not yet taken by the client's session (native: the one
  // message; relayed: what gRPC sent), and the trailers after them.
  std::string out;
  size_t out_off = 0;
  bool out_done = false;
  std::vector<Header> trailers;
  // LeaseKeepAlive (native stream): requests are answered one at a time,
  // in order, as etcd's keepalive loop; body_off: where the next starts.
  bool keepalive = false;
  bool renewing = false;
  bool pump_when_sent = false;
  bool client_done = false;
  size_t body_off = 0;
  Clock::time_point started = Clock::now();
  etcdserverpb::LeaseKeepAliveResponse ka;
  // Relayed: the stream to gRPC, the request bytes not yet taken by it.
  int32_t back_id = 0;
  uint64_t back_gen = 0;  // of the backend connection it went to
  bool back_closed = false;
  std::vector<Header> response_headers;
  bool response_submitted = false;
  std::string up;
  size_t up_off = 0;
  bool up_done = false;
};

struct Loop;
class H2Conn;
// The connection whose state this thread holds (its io_mu_), if any.
inline thread_local H2Conn* tls_conn = nullptr;

// One io thread and its connections.
struct Loop {
  asio::io_context io{1};
  std::atomic<bool> stopping{false};
  // Native calls started on the Server and not yet deleted, all loops'.
  std::shared_ptr<std::atomic<int>> in_flight;
  std::thread thread;
  // io thread only.
  std::unordered_map<H2Conn*, std::shared_ptr<H2Conn>> conns;
};

class H2Conn : public std::enable_shared_from_this<H2Conn> {
 public:
  H2Conn(std::shared_ptr<Loop> loop, const H2FrontOptions& o)
      : loop_(std::move(loop)), opts_(o), extensive_(Extensive(o.server)) {}
  ~H2Conn() {
    for (NativeCall* c : pending_) delete c;
  }

  // With io_mu_ held (Hold), normally on the io thread.
  bool Open(int fd);
  void GoAway();
  void Close();
  // Any thread: a native call finished on the Server.
  void Complete(NativeCall* call);

  // Holds the connection's state for this thread (io_mu_), and marks it
  // held so that a completion on this thread does not lock it again.
  class Hold {
   public:
    explicit Hold(H2Conn* c) : c_(c), prev_(tls_conn) {
      c_->io_mu_.lock();
      tls_conn = c_;
    }
    ~Hold() {
      if (c_ == nullptr) return;
      tls_conn = prev_;
      c_->io_mu_.unlock();
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    H2Conn* c_;
    H2Conn* const prev_;
  };

 private:
  // ---- the client's side (server session) ----
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* f,
                            void* user);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* f,
                      const uint8_t* name, size_t namelen, const uint8_t* value,
                      size_t valuelen, uint8_t, void* user);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* user);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t id,
                         const uint8_t* data, size_t len, void* user);
  static int OnStreamClose(nghttp2_session*, int32_t id, uint32_t code,
                           void* user);
  static ssize_t ReadOut(nghttp2_session*, int32_t id, uint8_t* buf, size_t len,
                         uint32_t* flags, nghttp2_data_source* src, void* user);
  // ---- gRPC C++'s side (client session) ----
  static int BackOnHeader(nghttp2_session*, const nghttp2_frame* f,
                          const uint8_t* name, size_t namelen,
                          const uint8_t* value, size_t valuelen, uint8_t,
                          void* user);
  static int BackOnFrameRecv(nghttp2_session*, const nghttp2_frame* f,
                             void* user);
  static int BackOnDataChunk(nghttp2_session*, uint8_t, int32_t id,
                             const uint8_t* data, size_t len, void* user);
  static int BackOnStreamClose(nghttp2_session*, int32_t id, uint32_t code,
                               void* user);
  static ssize_t ReadUp(nghttp2_session*, int32_t id, uint8_t* buf, size_t len,
                        uint32_t* flags, nghttp2_data_source* src, void* user);

  Stream* Find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void HeadersDone(Stream* s);
  void RequestDone(Stream* s);
  void StartNative(Stream* s);
  // LeaseKeepAlive: starts the next renewal if none is running, or ends
  // the stream once the client is done.
  void PumpKeepAlive(Stream* s);
  void KeepAliveRenewed(int32_t id, const Status& st, int64_t ttl);
  void EndKeepAlive(Stream* s, const grpc::Status& st);
  // Runs fn on the io thread, holding the connection (any thread).
  void Post(std::function<void()> fn);
  // Answers a native stream that never reached the Server (counted).
  void Refuse(Stream* s, const grpc::Status& st);
  void Answer(Stream* s, const grpc::Status& st);
  // A response whose body (s->out) and trailers follow through ReadOut.
  void SubmitResponse(Stream* s, const std::vector<Header>& headers);
  static const std::vector<Header>& GrpcHeaders();
  void Finish(NativeCall* call);
  void DrainCompletions();
  bool StartRelay(Stream* s);
  void ResumeOut(Stream* s);
  void ResumeUp(Stream* s);
  void MaybeErase(Stream* s);
  bool OpenBackend();
  void CloseBackend();

  void ReadFront();
  void ReadBack();
  // Moves what both sessions have to send to the sockets; closes the
  // connection when the client's session is over.
  void Flush();
  // false: the socket failed.
  bool Write(Socket* sock, std::string* pending, std::string* inflight,
             bool* writing, bool back);
  void WriteMore(Socket* sock, std::string* inflight, bool* writing, bool back);

  const std::shared_ptr<Loop> loop_;
  const H2FrontOptions opts_;
  const bool extensive_;

  std::unique_ptr<Socket> front_sock_;
  nghttp2_session* front_ = nullptr;
  std::string front_pending_, front_inflight_;
  bool front_writing_ = false;
  std::vector<char> front_rbuf_;

  std::unique_ptr<Socket> back_sock_;
  nghttp2_session* back_ = nullptr;
  std::string back_pending_, back_inflight_;
  bool back_writing_ = false;
  std::vector<char> back_rbuf_;

  // Everything below but mu_'s part is the connection's state: touched
  // with io_mu_ held (Hold), on the io thread. (Answering a lone client's
  // call on the thread that completed it, without the io thread's wake-up,
  // was tried: no change in put 1/1 latency, bench/README.md.)
  std::mutex io_mu_;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  bool closed_ = false;
  bool read_paused_ = false;  // no read in flight: too much unsent
  // In a session's callbacks or in Flush: no Flush from inside.
  bool busy_ = false;
  // Inside a native call's Start, and the calls it answered meanwhile.
  bool starting_ = false;
  std::vector<NativeCall*> answered_inline_;
  // Which backend connection an io handler was started for.
  uint64_t back_gen_ = 0;

  std::mutex mu_;
  bool accepting_ = true;                     // guarded by mu_
  std::vector<NativeCall*> pending_;          // guarded by mu_
  std::vector<std::function<void()>> tasks_;  // guarded by mu_
};

// A connected socket's fd as a non-blocking asio socket (h2_front.cc);
// null, and fd closed, if it cannot be.
std::unique_ptr<Socket> AdoptSocket(asio::io_context& io, int fd);
// A server or client session with keel's windows and settings; takes cbs.
nghttp2_session* NewSession(bool server, void* user,
                            nghttp2_session_callbacks* cbs);

}  // namespace keel::api::h2
