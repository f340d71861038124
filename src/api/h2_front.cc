// H2Front (h2_front.h): one io_context per io thread; a Conn per client
// connection, with its nghttp2 server session and, once a stream needs
// relaying, an nghttp2 client session to gRPC C++ over a socketpair.
#include "api/h2_front.h"

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
#include "api/kv_call.h"
#include "etcdserverpb/rpc.pb.h"
#include "server/server.h"

namespace keel::api {
namespace {

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

Method NativeMethod(std::string_view path) {
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
std::string PercentEncode(std::string_view s) {
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
bool ParseGrpcTimeout(std::string_view v, Clock::duration* out) {
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
size_t Take(std::string* from, size_t* off, uint8_t* dst, size_t len) {
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
void AppendFramed(const google::protobuf::MessageLite& msg, std::string* out) {
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

bool Extensive(const server::Server* s) {
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

const UnaryMethodMetrics* MetricsFor(Method m, bool extensive) {
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

const StreamMethodMetrics& KeepAliveMetrics(bool extensive) {
  static const StreamMethodMetrics m("/etcdserverpb.Lease/LeaseKeepAlive",
                                     "bidi_stream", extensive);
  return m;
}

NativeCall* NewCall(Method m) {
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

std::vector<nghttp2_nv> Nv(const std::vector<Header>& hs) {
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
thread_local H2Conn* tls_conn = nullptr;

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

std::unique_ptr<Socket> AdoptSocket(asio::io_context& io, int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  int family = AF_INET;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    family = ss.ss_family;
  }
  asio::error_code ec;
  auto sock = std::make_unique<Socket>(io);
  sock->assign(asio::generic::stream_protocol(family, SOCK_STREAM), fd, ec);
  if (ec) {
    ::close(fd);
    return nullptr;
  }
  sock->non_blocking(true, ec);
  return sock;
}

nghttp2_session* NewSession(bool server, void* user,
                            nghttp2_session_callbacks* cbs) {
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  // Relayed bytes are acknowledged only once the other side took them.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // No HTTP semantics checks on the clients' requests: gRPC-Go's server
  // takes an :authority such as "http://127.0.0.1:2379" (etcdctl's, with
  // endpoints from the member list), which nghttp2 resets as malformed.
  if (server) nghttp2_option_set_no_http_messaging(opt, 1);
  nghttp2_session* s = nullptr;
  int rc = server ? nghttp2_session_server_new2(&s, cbs, user, opt)
                  : nghttp2_session_client_new2(&s, cbs, user, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) return nullptr;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  // A server sends no ENABLE_PUSH.
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, settings, server ? 1 : 2);
  nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, kConnWindow);
  return s;
}

bool H2Conn::Open(int fd) {
  // A client that vanished (its host gone, no FIN) is found by TCP
  // keepalive, as etcd's gRPC server finds it by pings with its default
  // --grpc-keepalive-interval (2h) and --grpc-keepalive-timeout (20s).
  int on = 1, idle = 7200, interval = 20, count = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  front_sock_ = AdoptSocket(loop_->io, fd);
  if (!front_sock_) return false;
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnStreamClose);
  front_ = NewSession(true, this, cbs);
  if (front_ == nullptr) return false;
  front_rbuf_.resize(kReadBuffer);
  ReadFront();
  Flush();
  return true;
}

void H2Conn::GoAway() {
  if (closed_ || front_ == nullptr) return;
  // Streams opened so far are still answered; the client opens no more.
  nghttp2_submit_goaway(front_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(front_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  Flush();
}

void H2Conn::Close() {
  if (closed_) return;
  closed_ = true;
  std::vector<NativeCall*> drop;
  {
    std::lock_guard lock(mu_);
    accepting_ = false;
    drop.swap(pending_);
  }
  for (NativeCall* c : drop) {
    c->metrics->Finished(c->status, c->start);
    delete c;
  }
  for (auto& [id, s] : streams_) {
    if (s->keepalive && !s->answered) {
      s->answered = true;
      KeepAliveMetrics(extensive_)
          .Finished(grpc::Status(grpc::StatusCode::CANCELLED, ""), s->started);
    }
  }
  streams_.clear();  // cancels deadline timers
  if (front_ != nullptr) nghttp2_session_del(front_);
  front_ = nullptr;
  if (back_ != nullptr) nghttp2_session_del(back_);
  back_ = nullptr;
  asio::error_code ec;
  if (front_sock_) front_sock_->close(ec);
  if (back_sock_) back_sock_->close(ec);
  // The sockets go when their pending handlers have run (they hold this).
  // The loop's list is the io thread's.
  std::shared_ptr<Loop> loop = loop_;
  asio::post(loop->io, [loop, self = shared_from_this()] {
    loop->conns.erase(self.get());
  });
}

// ---------------- reading and writing ----------------

void H2Conn::ReadFront() {
  front_sock_->async_read_some(
      asio::buffer(front_rbuf_),
      [self = shared_from_this()](const asio::error_code& ec, size_t n) {
        Hold hold(self.get());
        if (self->closed_) return;
        if (ec) return self->Close();
        self->busy_ = true;
        ssize_t rc = nghttp2_session_mem_recv(
            self->front_,
            reinterpret_cast<const uint8_t*>(self->front_rbuf_.data()), n);
        self->busy_ = false;
        if (rc < 0 || self->closed_) return self->Close();
        self->Flush();
        if (self->closed_) return;
        // A client that sends but does not read gets no more read from it
        // while its answers pile up (resumed in Flush).
        if (self->front_pending_.size() + self->front_inflight_.size() >
            kMaxUnsent) {
          self->read_paused_ = true;
          return;
        }
        self->ReadFront();
      });
}

void H2Conn::ReadBack() {
  back_sock_->async_read_some(
      asio::buffer(back_rbuf_), [self = shared_from_this(), gen = back_gen_](
                                    const asio::error_code& ec, size_t n) {
        Hold hold(self.get());
        if (self->closed_ || self->back_gen_ != gen || !self->back_) return;
        if (ec) {
          self->CloseBackend();
          self->Flush();
          return;
        }
        self->busy_ = true;
        ssize_t rc = nghttp2_session_mem_recv(
            self->back_,
            reinterpret_cast<const uint8_t*>(self->back_rbuf_.data()), n);
        self->busy_ = false;
        if (rc < 0) self->CloseBackend();
        self->Flush();
        if (!self->closed_ && self->back_gen_ == gen && self->back_) {
          self->ReadBack();
        }
      });
}

void H2Conn::Flush() {
  if (closed_ || busy_) return;
  busy_ = true;
  for (int round = 0; round < 2 && !closed_; round++) {
    // Sending on one session can queue frames on the other (a relayed
    // stream's bytes taken are acknowledged there, a closed stream resets
    // its twin) without sending anything itself: until two passes in a
    // row send nothing.
    for (int quiet = 0; quiet < 2 && !closed_;) {
      bool more = false;
      const uint8_t* data;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(front_, &data)) > 0) {
        front_pending_.append(reinterpret_cast<const char*>(data),
                              static_cast<size_t>(n));
        more = true;
      }
      if (n < 0) {
        busy_ = false;
        return Close();
      }
      while (back_ != nullptr &&
             (n = nghttp2_session_mem_send(back_, &data)) > 0) {
        back_pending_.append(reinterpret_cast<const char*>(data),
                             static_cast<size_t>(n));
        more = true;
      }
      if (back_ != nullptr && n < 0) CloseBackend();
      quiet = more ? 0 : quiet + 1;
    }
    if (!Write(front_sock_.get(), &front_pending_, &front_inflight_,
               &front_writing_, false)) {
      busy_ = false;
      return Close();
    }
    // A failed write to gRPC ends the relayed streams: send their resets.
    if (back_sock_ == nullptr || Write(back_sock_.get(), &back_pending_,
                                       &back_inflight_, &back_writing_, true)) {
      break;
    }
    CloseBackend();
  }
  busy_ = false;
  if (closed_) return;
  if (read_paused_ &&
      front_pending_.size() + front_inflight_.size() <= kMaxUnsent / 2) {
    read_paused_ = false;
    ReadFront();
  }
  if (!nghttp2_session_want_read(front_) &&
      !nghttp2_session_want_write(front_) && !front_writing_ &&
      front_pending_.empty()) {
    Close();
  }
}

// What the socket did not take: one write at a time, each completion
// taking the connection's state (no composed operation runs unlocked).
void H2Conn::WriteMore(Socket* sock, std::string* inflight, bool* writing,
                       bool back) {
  sock->async_write_some(
      asio::buffer(*inflight),
      [self = shared_from_this(), sock, back, gen = back_gen_, inflight,
       writing](const asio::error_code& ec, size_t n) {
        Hold hold(self.get());
        if (self->closed_) return;
        if (back && (self->back_gen_ != gen || !self->back_)) return;
        if (!ec) {
          inflight->erase(0, n);
          if (!inflight->empty()) {
            return self->WriteMore(sock, inflight, writing, back);
          }
        }
        *writing = false;
        inflight->clear();
        if (ec) {
          if (!back) return self->Close();
          self->CloseBackend();
        }
        self->Flush();
      });
}

bool H2Conn::Write(Socket* sock, std::string* pending, std::string* inflight,
                   bool* writing, bool back) {
  if (*writing || pending->empty()) return true;
  // Most writes go out at once; what the socket does not take waits for it.
  asio::error_code ec;
  size_t n = sock->write_some(asio::buffer(*pending), ec);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
    return false;
  }
  pending->erase(0, n);
  if (pending->empty()) return true;
  inflight->swap(*pending);
  *writing = true;
  WriteMore(sock, inflight, writing, back);
  return true;
}

// ---------------- the client's streams ----------------

int H2Conn::OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* f,
                           void* user) {
  auto* c = static_cast<H2Conn*>(user);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  auto s = std::make_unique<Stream>();
  s->id = f->hd.stream_id;
  nghttp2_session_set_stream_user_data(session, s->id, s.get());
  c->streams_[s->id] = std::move(s);
  return 0;
}

int H2Conn::OnHeader(nghttp2_session*, const nghttp2_frame* f,
                     const uint8_t* name, size_t namelen, const uint8_t* value,
                     size_t valuelen, uint8_t, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;  // request trailers: gRPC sends none
  }
  Stream* s = c->Find(f->hd.stream_id);
  if (s == nullptr) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  s->headers.push_back({std::string(n), std::string(v)});
  if (n == ":path") {
    s->path = v;
  } else if (n == ":method") {
    s->http_method = v;
  } else if (n == "content-type") {
    s->content_type = v;
  } else if (n == "grpc-encoding") {
    s->encoding = v;
  } else if (n == "grpc-timeout") {
    s->timeout = v;
  } else if (n == "token") {
    if (s->meta.token.empty()) s->meta.token = v;
  } else if (n == "authorization") {
    if (s->meta.authorization.empty()) s->meta.authorization = v;
  } else if (n == "hasleader") {
    if (s->meta.hasleader.empty()) s->meta.hasleader = v;
  }
  return 0;
}

int H2Conn::OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  Stream* s = c->Find(f->hd.stream_id);
  if (s == nullptr) return 0;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    c->HeadersDone(s);
  }
  if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) c->RequestDone(s);
  return 0;
}

int H2Conn::OnDataChunk(nghttp2_session* session, uint8_t, int32_t id,
                        const uint8_t* data, size_t len, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  Stream* s = c->Find(id);
  if (s != nullptr && s->relayed) {
    // The connection's window at once (so that one stream gRPC does not
    // read holds up no other), the stream's when gRPC takes the bytes.
    nghttp2_session_consume_connection(session, len);
    s->up.append(reinterpret_cast<const char*>(data), len);
    c->ResumeUp(s);
    return 0;
  }
  if (s != nullptr && s->keepalive) {
    nghttp2_session_consume_connection(session, len);
    if (s->answered) {
      nghttp2_session_consume_stream(session, id, len);
      return 0;
    }
    s->body.append(reinterpret_cast<const char*>(data), len);
    c->PumpKeepAlive(s);
    return 0;
  }
  // Native requests are buffered whole, up to the size they declare.
  nghttp2_session_consume(session, id, len);
  if (s == nullptr || s->answered) return 0;  // refused already
  s->body.append(reinterpret_cast<const char*>(data), len);
  if (s->body.size() >= 5) {
    const auto* p = reinterpret_cast<const uint8_t*>(s->body.data());
    const size_t n = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) |
                     (size_t{p[3]} << 8) | size_t{p[4]};
    if (n <= c->opts_.max_recv_message_bytes && s->body.size() > 5 + n) {
      std::string().swap(s->body);
      c->Refuse(s, grpc::Status(grpc::StatusCode::INTERNAL,
                                "grpc: more than one request message in a "
                                "unary call"));
    } else if (n > c->opts_.max_recv_message_bytes) {
      std::string().swap(s->body);
      c->Refuse(
          s, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "grpc: received message larger than max (" +
                              std::to_string(n) + " vs. " +
                              std::to_string(c->opts_.max_recv_message_bytes) +
                              ")"));
    }
  }
  return 0;
}

int H2Conn::OnStreamClose(nghttp2_session*, int32_t id, uint32_t, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  Stream* s = c->Find(id);
  if (s == nullptr) return 0;
  s->front_closed = true;
  if (s->keepalive && !s->answered) {
    s->answered = true;
    KeepAliveMetrics(c->extensive_)
        .Finished(grpc::Status(grpc::StatusCode::CANCELLED, ""), s->started);
  }
  if (s->relayed && s->back_id > 0 && !s->back_closed && c->back_ != nullptr) {
    nghttp2_submit_rst_stream(c->back_, NGHTTP2_FLAG_NONE, s->back_id,
                              NGHTTP2_CANCEL);
  }
  c->MaybeErase(s);
  return 0;
}

void H2Conn::MaybeErase(Stream* s) {
  if (!s->front_closed) return;
  if (s->relayed && s->back_id > 0 && !s->back_closed && back_ != nullptr) {
    return;
  }
  // (Bytes received and never passed on gave back both connections'
  // windows on receipt: nothing to return here.)
  streams_.erase(s->id);
}

void H2Conn::HeadersDone(Stream* s) {
  s->method = NativeMethod(s->path);
  if (s->method == Method::kKeepAlive) {
    if (s->http_method == "POST" &&
        (s->content_type == "application/grpc" ||
         s->content_type == "application/grpc+proto") &&
        (s->encoding.empty() || s->encoding == "identity")) {
      Clock::duration timeout{};
      const bool timed =
          !s->timeout.empty() && ParseGrpcTimeout(s->timeout, &timeout);
      if (!s->timeout.empty() && !timed) {
        s->method = Method::kNone;  // gRPC answers what it would refuse
        s->relayed = true;
        if (!StartRelay(s)) {
          nghttp2_submit_rst_stream(front_, NGHTTP2_FLAG_NONE, s->id,
                                    NGHTTP2_REFUSED_STREAM);
        }
        return;
      }
      s->keepalive = true;
      s->headers.clear();
      KeepAliveMetrics(extensive_).Started();
      if (timed) {
        s->deadline = std::make_unique<asio::steady_timer>(loop_->io, timeout);
        s->deadline->async_wait([self = shared_from_this(),
                                 id = s->id](const asio::error_code& ec) {
          if (ec) return;
          Hold hold(self.get());
          if (self->closed_) return;
          Stream* s = self->Find(id);
          if (s == nullptr || s->answered) return;
          self->EndKeepAlive(s,
                             grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                          "Deadline Exceeded"));
          self->Flush();
        });
      }
      // clientv3 opens its keepalive stream "requiring a leader".
      if (s->meta.hasleader == "true" && !opts_.server->HasLeader()) {
        EndKeepAlive(s, kErrNoLeader.ToStatus());
      }
      return;
    }
    s->method = Method::kNone;  // relayed
  }
  bool native = s->method != Method::kNone && s->http_method == "POST" &&
                (s->content_type == "application/grpc" ||
                 s->content_type == "application/grpc+proto") &&
                (s->encoding.empty() || s->encoding == "identity");
  Clock::duration unused;
  // A grpc-timeout gRPC would refuse: gRPC answers it.
  if (!s->timeout.empty() && !ParseGrpcTimeout(s->timeout, &unused)) {
    native = false;
  }
  if (native) {
    s->headers.clear();
    Clock::duration timeout{};
    if (!s->timeout.empty() && ParseGrpcTimeout(s->timeout, &timeout)) {
      s->deadline = std::make_unique<asio::steady_timer>(loop_->io, timeout);
      s->deadline->async_wait(
          [self = shared_from_this(), id = s->id](const asio::error_code& ec) {
            if (ec) return;
            Hold hold(self.get());
            if (self->closed_) return;
            Stream* s = self->Find(id);
            if (s == nullptr || s->answered) return;
            self->Answer(s, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                         "Deadline Exceeded"));
            self->Flush();
          });
    }
    return;
  }
  s->relayed = true;
  if (!StartRelay(s)) {
    nghttp2_submit_rst_stream(front_, NGHTTP2_FLAG_NONE, s->id,
                              NGHTTP2_REFUSED_STREAM);
  }
}

void H2Conn::RequestDone(Stream* s) {
  if (s->keepalive) {
    s->client_done = true;
    PumpKeepAlive(s);
    return;
  }
  if (s->relayed) {
    s->up_done = true;
    ResumeUp(s);
    return;
  }
  if (!s->answered) StartNative(s);
}

void H2Conn::Refuse(Stream* s, const grpc::Status& st) {
  const UnaryMethodMetrics* m = MetricsFor(s->method, extensive_);
  m->Started();
  m->Finished(st, Clock::now());
  Answer(s, st);
}

void H2Conn::StartNative(Stream* s) {
  auto fail = [&](grpc::StatusCode code, std::string msg) {
    Refuse(s, grpc::Status(code, std::move(msg)));
  };
  const std::string& b = s->body;
  if (b.size() < 5) {
    return fail(grpc::StatusCode::INTERNAL,
                "grpc: error unmarshalling request: no request message");
  }
  const auto* p = reinterpret_cast<const uint8_t*>(b.data());
  const size_t n = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) |
                   (size_t{p[3]} << 8) | size_t{p[4]};
  if (p[0] != 0) {
    return fail(grpc::StatusCode::INTERNAL,
                "grpc: compressed flag set with identity or empty encoding");
  }
  if (b.size() != 5 + n) {
    return fail(grpc::StatusCode::INTERNAL,
                b.size() < 5 + n
                    ? "grpc: error unmarshalling request: truncated message"
                    : "grpc: more than one request message in a unary call");
  }
  NativeCall* call = NewCall(s->method);
  if (!call->Parse(b.data() + 5, n)) {
    std::string why = call->ParseError();
    delete call;
    return Refuse(s, UnmarshalError(why));
  }
  std::string().swap(s->body);
  call->stream_id = s->id;
  call->in_flight = loop_->in_flight.get();
  call->in_flight->fetch_add(1);
  call->metrics = MetricsFor(s->method, extensive_);
  call->metrics->Started();
  call->meta = std::move(s->meta);
  // A call answered inside Start (a serializable read, an early error) is
  // finished once Start has returned: the Server may still be using it.
  starting_ = true;
  call->Start(opts_.server, [self = shared_from_this()](NativeCall* c) {
    self->Complete(c);
  });
  starting_ = false;
  std::vector<NativeCall*> done;
  done.swap(answered_inline_);
  for (NativeCall* c : done) Finish(c);
}

void H2Conn::Complete(NativeCall* call) {
  if (tls_conn == this) {
    // Answered while this thread holds the connection (a serializable
    // read, an early error): no hand-off. Inside the session's callbacks,
    // the Flush that follows them sends it.
    if (starting_) {
      answered_inline_.push_back(call);
      return;
    }
    Finish(call);
    if (!busy_) Flush();
    return;
  }
  bool post;
  {
    std::lock_guard lock(mu_);
    if (!accepting_) {
      call->metrics->Finished(call->status, call->start);
      delete call;
      return;
    }
    post = pending_.empty() && tasks_.empty();
    pending_.push_back(call);
  }
  if (post) {
    asio::post(loop_->io, [w = weak_from_this()] {
      if (auto self = w.lock()) self->DrainCompletions();
    });
  }
}

void H2Conn::DrainCompletions() {
  Hold hold(this);
  std::vector<NativeCall*> batch;
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
    tasks.swap(tasks_);
  }
  for (NativeCall* c : batch) {
    if (closed_) {
      c->metrics->Finished(c->status, c->start);
      delete c;
    } else {
      Finish(c);
    }
  }
  for (auto& fn : tasks) {
    if (!closed_) fn();
  }
  Flush();
}

void H2Conn::Post(std::function<void()> fn) {
  bool post;
  {
    std::lock_guard lock(mu_);
    if (!accepting_) return;
    post = pending_.empty() && tasks_.empty();
    tasks_.push_back(std::move(fn));
  }
  if (post) {
    asio::post(loop_->io, [w = weak_from_this()] {
      if (auto self = w.lock()) self->DrainCompletions();
    });
  }
}

// ---------------- LeaseKeepAlive ----------------

void H2Conn::PumpKeepAlive(Stream* s) {
  if (s->renewing || s->answered || s->front_closed) return;
  // A client that does not read its answers gets no more renewals (and so
  // no more window to send requests) until it does; ReadOut resumes.
  if (s->out.size() - s->out_off > kKeepAliveUnsent) {
    s->pump_when_sent = true;
    return;
  }
  const size_t avail = s->body.size() - s->body_off;
  const auto* p =
      reinterpret_cast<const uint8_t*>(s->body.data()) + s->body_off;
  size_t n = 0;
  if (avail >= 5) {
    n = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) | (size_t{p[3]} << 8) |
        size_t{p[4]};
    if (p[0] != 0) {
      return EndKeepAlive(
          s, grpc::Status(grpc::StatusCode::INTERNAL,
                          "grpc: compressed flag set with identity or empty "
                          "encoding"));
    }
    // A request must fit the stream's window: its bytes are given back
    // only once it is whole.
    const size_t max = std::min(opts_.max_recv_message_bytes,
                                static_cast<size_t>(kStreamWindow) - 5);
    if (n > max) {
      return EndKeepAlive(
          s, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "grpc: received message larger than max (" +
                              std::to_string(n) + " vs. " +
                              std::to_string(max) + ")"));
    }
  }
  if (avail < 5 || avail < 5 + n) {
    // No whole request: wait for it, or end when the client has ended
    // (etcd's loop returns nil at the client's EOF).
    if (s->client_done) EndKeepAlive(s, grpc::Status::OK);
    return;
  }
  etcdserverpb::LeaseKeepAliveRequest req;
  if (!req.ParseFromArray(p + 5, static_cast<int>(n))) {
    return EndKeepAlive(s, UnmarshalError(""));
  }
  s->body_off += 5 + n;
  if (s->body_off == s->body.size()) {
    s->body.clear();
    s->body_off = 0;
  } else if (s->body_off >= (64 << 10) && 2 * s->body_off >= s->body.size()) {
    s->body.erase(0, s->body_off);
    s->body_off = 0;
  }
  // The stream's window as its requests are taken (the connection's was
  // given back on receipt).
  nghttp2_session_consume_stream(front_, s->id, 5 + n);
  KeepAliveMetrics(extensive_).Received();
  s->renewing = true;
  s->ka.Clear();
  s->ka.set_id(req.id());
  // The header before the renewal, as etcd: its revision is never after a
  // revoke the renewal could miss.
  opts_.server->FillHeader(s->ka.mutable_header(),
                           opts_.server->CurrentRevision());
  opts_.server->LeaseRenew(req.id(), [self = shared_from_this(), id = s->id](
                                         Status st, int64_t ttl) {
    self->Post([self, id, st = std::move(st), ttl] {
      self->KeepAliveRenewed(id, st, ttl);
    });
  });
}

void H2Conn::KeepAliveRenewed(int32_t id, const Status& st, int64_t ttl) {
  Stream* s = Find(id);
  if (s == nullptr) return;
  s->renewing = false;
  if (s->answered || s->front_closed) return;
  if (!st.ok()) return EndKeepAlive(s, ToGrpc(st));
  s->ka.set_ttl(ttl);  // 0: not found (etcd does not fail the stream)
  AppendFramed(s->ka, &s->out);
  KeepAliveMetrics(extensive_).Sent();
  if (!s->response_submitted) {
    s->response_submitted = true;
    SubmitResponse(s, GrpcHeaders());
  } else {
    ResumeOut(s);
  }
  PumpKeepAlive(s);
}

void H2Conn::EndKeepAlive(Stream* s, const grpc::Status& st) {
  KeepAliveMetrics(extensive_).Finished(st, s->started);
  if (!s->response_submitted) return Answer(s, st);
  // After messages: the status in trailers once they are sent.
  s->answered = true;
  s->trailers = {
      {"grpc-status", std::to_string(static_cast<int>(st.error_code()))}};
  if (!st.error_message().empty()) {
    s->trailers.push_back({"grpc-message", PercentEncode(st.error_message())});
  }
  s->out_done = true;
  ResumeOut(s);
}

void H2Conn::Finish(NativeCall* call) {
  Stream* s = Find(call->stream_id);
  if (s != nullptr && !s->answered && !s->front_closed) {
    if (call->status.ok()) call->Frame(&s->out);
    Answer(s, call->status);
  }
  call->metrics->Finished(call->status, call->start);
  delete call;
}

void H2Conn::Answer(Stream* s, const grpc::Status& st) {
  s->answered = true;
  if (s->deadline) s->deadline->cancel();
  if (s->front_closed || front_ == nullptr) return;
  const std::string code = std::to_string(static_cast<int>(st.error_code()));
  if (!st.ok()) {
    // Trailers-only: the status in the one HEADERS frame.
    std::vector<Header> h = {{":status", "200"},
                             {"content-type", "application/grpc"},
                             {"grpc-status", code}};
    if (!st.error_message().empty()) {
      h.push_back({"grpc-message", PercentEncode(st.error_message())});
    }
    auto nv = Nv(h);
    nghttp2_submit_response(front_, s->id, nv.data(), nv.size(), nullptr);
    return;
  }
  s->out_done = true;
  s->trailers = {{"grpc-status", "0"}};
  SubmitResponse(s, GrpcHeaders());
}

const std::vector<Header>& H2Conn::GrpcHeaders() {
  static const std::vector<Header> kHeaders = {
      {":status", "200"}, {"content-type", "application/grpc"}};
  return kHeaders;
}

void H2Conn::SubmitResponse(Stream* s, const std::vector<Header>& headers) {
  auto nv = Nv(headers);
  nghttp2_data_provider dp;
  dp.source.ptr = s;
  dp.read_callback = ReadOut;
  nghttp2_submit_response(front_, s->id, nv.data(), nv.size(), &dp);
}

ssize_t H2Conn::ReadOut(nghttp2_session* session, int32_t id, uint8_t* buf,
                        size_t len, uint32_t* flags, nghttp2_data_source* src,
                        void* user) {
  auto* c = static_cast<H2Conn*>(user);
  auto* s = static_cast<Stream*>(src->ptr);
  const size_t avail = s->out.size() - s->out_off;
  if (avail == 0) {
    if (!s->out_done) return NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!s->trailers.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      auto nv = Nv(s->trailers);
      nghttp2_submit_trailer(session, id, nv.data(), nv.size());
    }
    return 0;
  }
  const size_t n = Take(&s->out, &s->out_off, buf, len);
  if (s->keepalive && s->pump_when_sent &&
      s->out.size() - s->out_off <= kKeepAliveUnsent / 2) {
    // Not from inside the session's callback: on the io thread, after.
    s->pump_when_sent = false;
    c->Post([self = c->shared_from_this(), id] {
      if (Stream* st = self->Find(id)) self->PumpKeepAlive(st);
    });
  }
  if (s->relayed && c->back_ != nullptr && s->back_gen == c->back_gen_ &&
      !s->back_closed) {
    nghttp2_session_consume_stream(c->back_, s->back_id, n);
  }
  return static_cast<ssize_t>(n);
}

void H2Conn::ResumeOut(Stream* s) {
  if (s->response_submitted && !s->front_closed && front_ != nullptr) {
    nghttp2_session_resume_data(front_, s->id);
  }
}

void H2Conn::ResumeUp(Stream* s) {
  if (s->back_id > 0 && !s->back_closed && back_ != nullptr) {
    nghttp2_session_resume_data(back_, s->back_id);
  }
}

// ---------------- relaying to gRPC C++ ----------------

bool H2Conn::OpenBackend() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) !=
      0) {
    spdlog::warn("h2 front: socketpair: {}", std::strerror(errno));
    return false;
  }
  grpc::AddInsecureChannelFromFd(opts_.grpc, sv[0]);
  back_sock_ = AdoptSocket(loop_->io, sv[1]);
  if (!back_sock_) return false;
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, BackOnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, BackOnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                            BackOnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                         BackOnStreamClose);
  back_ = NewSession(false, this, cbs);
  if (back_ == nullptr) {
    asio::error_code ec;
    back_sock_->close(ec);
    back_sock_.reset();
    return false;
  }
  back_gen_++;
  back_rbuf_.resize(kReadBuffer);
  back_pending_.clear();
  back_inflight_.clear();
  back_writing_ = false;
  ReadBack();
  return true;
}

void H2Conn::CloseBackend() {
  if (back_ == nullptr) return;
  nghttp2_session_del(back_);
  back_ = nullptr;
  asio::error_code ec;
  back_sock_->close(ec);
  back_sock_.reset();
  back_writing_ = false;
  back_gen_++;
  // Every relayed stream still open on gRPC's side ends. (gRPC C++ closes
  // or sends GOAWAY on a connection only when it shuts down.)
  std::vector<Stream*> ended;
  for (auto& [id, s] : streams_) {
    if (!s->relayed || s->back_id == 0 || s->back_closed) continue;
    s->back_closed = true;
    if (!s->front_closed && front_ != nullptr) {
      // Not REFUSED_STREAM, which clients retry: gRPC may have run it.
      nghttp2_submit_rst_stream(front_, NGHTTP2_FLAG_NONE, s->id,
                                NGHTTP2_INTERNAL_ERROR);
    }
    ended.push_back(s.get());
  }
  for (Stream* s : ended) MaybeErase(s);
}

bool H2Conn::StartRelay(Stream* s) {
  if (back_ != nullptr && !nghttp2_session_check_request_allowed(back_)) {
    CloseBackend();  // gRPC sent GOAWAY: a new connection for new streams
  }
  if (back_ == nullptr && !OpenBackend()) return false;
  auto nv = Nv(s->headers);
  nghttp2_data_provider dp;
  dp.source.ptr = s;
  dp.read_callback = ReadUp;
  int32_t id =
      nghttp2_submit_request(back_, nullptr, nv.data(), nv.size(), &dp, s);
  if (id < 0) return false;
  s->back_id = id;
  s->back_gen = back_gen_;
  s->headers.clear();
  s->headers.shrink_to_fit();
  return true;
}

ssize_t H2Conn::ReadUp(nghttp2_session*, int32_t, uint8_t* buf, size_t len,
                       uint32_t* flags, nghttp2_data_source* src, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  auto* s = static_cast<Stream*>(src->ptr);
  const size_t avail = s->up.size() - s->up_off;
  if (avail == 0) {
    if (!s->up_done) return NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  const size_t n = Take(&s->up, &s->up_off, buf, len);
  if (c->front_ != nullptr) nghttp2_session_consume_stream(c->front_, s->id, n);
  return static_cast<ssize_t>(n);
}

int H2Conn::BackOnHeader(nghttp2_session* session, const nghttp2_frame* f,
                         const uint8_t* name, size_t namelen,
                         const uint8_t* value, size_t valuelen, uint8_t,
                         void*) {
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  auto* s = static_cast<Stream*>(
      nghttp2_session_get_stream_user_data(session, f->hd.stream_id));
  if (s == nullptr) return 0;
  Header h{std::string(reinterpret_cast<const char*>(name), namelen),
           std::string(reinterpret_cast<const char*>(value), valuelen)};
  if (f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
    s->response_headers.push_back(std::move(h));
  } else {
    s->trailers.push_back(std::move(h));
  }
  return 0;
}

int H2Conn::BackOnFrameRecv(nghttp2_session* session, const nghttp2_frame* f,
                            void* user) {
  auto* c = static_cast<H2Conn*>(user);
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  auto* s = static_cast<Stream*>(
      nghttp2_session_get_stream_user_data(session, f->hd.stream_id));
  if (s == nullptr || s->front_closed || c->front_ == nullptr) return 0;
  const bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_HEADERS &&
      f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
    auto nv = Nv(s->response_headers);
    s->response_submitted = true;
    if (end) {
      // Trailers-only: the status came with the headers.
      s->out_done = true;
      nghttp2_submit_response(c->front_, s->id, nv.data(), nv.size(), nullptr);
      return 0;
    }
    c->SubmitResponse(s, s->response_headers);
    s->response_headers.clear();
    return 0;
  }
  if (end) {
    s->out_done = true;
    c->ResumeOut(s);
  }
  return 0;
}

int H2Conn::BackOnDataChunk(nghttp2_session* session, uint8_t, int32_t id,
                            const uint8_t* data, size_t len, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  auto* s =
      static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  // The connection's window at once (a client that does not read one
  // stream holds up no other), the stream's as the client takes the bytes.
  nghttp2_session_consume_connection(session, len);
  if (s == nullptr || s->front_closed) {
    nghttp2_session_consume_stream(session, id, len);
    return 0;
  }
  s->out.append(reinterpret_cast<const char*>(data), len);
  c->ResumeOut(s);
  return 0;
}

int H2Conn::BackOnStreamClose(nghttp2_session* session, int32_t id,
                              uint32_t code, void* user) {
  auto* c = static_cast<H2Conn*>(user);
  auto* s =
      static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  if (s == nullptr) return 0;
  s->back_closed = true;
  if (!s->front_closed && c->front_ != nullptr && !s->out_done) {
    // gRPC reset the stream, or it ended without its status: so does the
    // client's.
    nghttp2_submit_rst_stream(
        c->front_, NGHTTP2_FLAG_NONE, s->id,
        code == NGHTTP2_NO_ERROR ? uint32_t{NGHTTP2_INTERNAL_ERROR} : code);
  }
  c->MaybeErase(s);
  return 0;
}

}  // namespace

// ---------------- H2Front ----------------

class H2Front::Impl {
 public:
  explicit Impl(H2FrontOptions o) : opts_(o) {
    int n = o.io_threads;
    if (n <= 0) {
      n = static_cast<int>(
          std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
    }
    for (int i = 0; i < n; i++) {
      auto loop = std::make_shared<Loop>();
      loop->in_flight = in_flight_;
      loops_.push_back(loop);
      loop->thread = std::thread([l = loop.get()] {
        auto work = asio::make_work_guard(l->io);
        l->io.run();
      });
    }
  }

  void Adopt(int fd) {
    if (stopped_.load()) {
      ::close(fd);
      return;
    }
    auto loop = loops_[next_++ % loops_.size()];
    asio::post(loop->io, [loop, fd, o = opts_] {
      if (loop->stopping.load()) {
        ::close(fd);
        return;
      }
      auto c = std::make_shared<H2Conn>(loop, o);
      loop->conns[c.get()] = c;
      H2Conn::Hold hold(c.get());
      if (!c->Open(fd)) c->Close();
    });
  }

  void Stop() {
    if (stopped_.exchange(true)) return;
    // GOAWAY first, and the calls already on the Server get their answers
    // for up to 2 s (as gRPC's Shutdown with a deadline); then every
    // connection closes (relayed streams end with them).
    for (auto& loop : loops_) {
      asio::post(loop->io, [l = loop.get()] {
        l->stopping = true;
        for (auto& c : Conns(l)) {
          H2Conn::Hold hold(c.get());
          c->GoAway();
        }
      });
    }
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    while (in_flight_->load() > 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (auto& loop : loops_) {
      asio::post(loop->io, [l = loop.get()] {
        for (auto& c : Conns(l)) {
          H2Conn::Hold hold(c.get());
          c->Close();
        }
        l->io.stop();
      });
    }
    for (auto& loop : loops_) {
      if (loop->thread.joinable()) loop->thread.join();
      // Handlers left over hold connections: run them (they find them
      // closed) so that nothing keeps a connection alive.
      loop->io.restart();
      loop->io.poll();
    }
  }

  ~Impl() { Stop(); }

 private:
  static std::vector<std::shared_ptr<H2Conn>> Conns(Loop* l) {
    std::vector<std::shared_ptr<H2Conn>> all;
    for (auto& [p, c] : l->conns) all.push_back(c);
    return all;
  }

  const H2FrontOptions opts_;
  const std::shared_ptr<std::atomic<int>> in_flight_ =
      std::make_shared<std::atomic<int>>(0);
  std::vector<std::shared_ptr<Loop>> loops_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> stopped_{false};
};

H2Front::H2Front(H2FrontOptions options)
    : impl_(std::make_unique<Impl>(options)) {}
H2Front::~H2Front() = default;
void H2Front::Adopt(int fd) { impl_->Adopt(fd); }
void H2Front::Stop() { impl_->Stop(); }

}  // namespace keel::api
