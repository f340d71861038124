#include "h2_unary.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/support/status_code_enum.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <queue>
#include <string>
#include <utility>

#include "etcdserverpb/rpc.pb.h"

namespace keel::bench {

namespace {

// gRPC's mapping of an HTTP status other than 200 to a status code.
int CodeForHttpStatus(int http) {
  switch (http) {
    case 400:
      return grpc::INTERNAL;
    case 401:
      return grpc::UNAUTHENTICATED;
    case 403:
      return grpc::PERMISSION_DENIED;
    case 404:
      return grpc::UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return grpc::UNAVAILABLE;
    default:
      return grpc::UNKNOWN;
  }
}

// gRPC's mapping of an RST_STREAM error code to a status code.
int CodeForReset(uint32_t h2_error) {
  switch (h2_error) {
    case NGHTTP2_REFUSED_STREAM:
      return grpc::UNAVAILABLE;
    case NGHTTP2_CANCEL:
      return grpc::CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return grpc::RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY:
      return grpc::PERMISSION_DENIED;
    default:
      return grpc::INTERNAL;
  }
}

// grpc-message is percent-encoded (gRPC's HTTP/2 protocol spec).
std::string PercentDecode(const uint8_t* p, size_t n) {
  std::string out;
  out.reserve(n);
  auto hex = [](uint8_t c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '%' && i + 2 < n && hex(p[i + 1]) >= 0 && hex(p[i + 2]) >= 0) {
      out += static_cast<char>(hex(p[i + 1]) * 16 + hex(p[i + 2]));
      i += 2;
    } else {
      out += static_cast<char>(p[i]);
    }
  }
  return out;
}

// grpc-timeout's value (at most 8 digits and a unit) for a deadline of
// `seconds`, rounded up.
std::string GrpcTimeout(double seconds) {
  auto ms = static_cast<int64_t>(std::ceil(seconds * 1e3));
  if (ms < 1) ms = 1;
  if (ms < 100000000) return std::to_string(ms) + "m";
  auto s = static_cast<int64_t>(std::ceil(seconds));
  if (s < 100000000) return std::to_string(s) + "S";
  return std::to_string(std::min<int64_t>(99999999, (s + 3599) / 3600)) + "H";
}

bool SetNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

// A TCP connection to host:port within timeout_ms, non-blocking and with
// Nagle off (as gRPC sets it); -1 with *err set on failure.
int Dial(const std::string& endpoint, int timeout_ms, std::string* err) {
  size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos) {
    *err = "no port in " + endpoint;
    return -1;
  }
  std::string host = endpoint.substr(0, colon);
  std::string port = endpoint.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    *err = gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  *err = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SetNonBlocking(fd);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, timeout_ms) == 1) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr == 0) break;
        *err = std::strerror(soerr);
      } else {
        *err = "connect timed out";
      }
    } else {
      *err = std::strerror(errno);
    }
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

class Conn;
class Call;

}  // namespace

// One event loop: its connections, its clients, its recorder.
class H2Loop {
 public:
  explicit H2Loop(Shared* s);
  ~H2Loop();

  Shared* shared() { return s_; }
  Recorder& rec() { return rec_; }
  Conn* AddConn(const std::string& endpoint);
  void AddCall(Conn* c, uint64_t seed);
  bool Connect();
  void Run();

  // A request whose stream closed (or that failed to start), to be
  // completed by the loop outside nghttp2's callbacks.
  void Done(Call* c) { done_.push_back(c); }
  void MarkDirty(Conn* c);
  void At(Clock::time_point t, Call* c) { timers_.push({t, c}); }
  void ClientFinished() { active_--; }
  int epoll_fd() const { return ep_; }

 private:
  void CompleteDone();
  void FlushDirty();
  void FireTimers(Clock::time_point now);
  void CheckDeadlines(Clock::time_point now);

  Shared* const s_;
  int ep_ = -1;
  Recorder rec_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Call>> calls_;
  std::vector<Call*> done_;
  std::vector<Conn*> dirty_;
  using Timer = std::pair<Clock::time_point, Call*>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  int active_ = 0;
};

namespace {

// One TCP connection with its HTTP/2 session.
class Conn {
 public:
  Conn(H2Loop* loop, std::string endpoint, const Options& o)
      : loop_(loop), endpoint_(std::move(endpoint)) {
    const char* method = o.workload == "put"     ? "/etcdserverpb.KV/Put"
                         : o.workload == "range" ? "/etcdserverpb.KV/Range"
                                                 : "/etcdserverpb.KV/Txn";
    path_ = method;
    timeout_ = GrpcTimeout(o.timeout_s);
    auto nv = [](const char* name, const std::string& value) {
      return nghttp2_nv{
          reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
          std::strlen(name), value.size(),
          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    };
    static const std::string kPost = "POST", kHttp = "http",
                             kTrailers = "trailers", kGrpc = "application/grpc",
                             kAgent = "keel-bench (nghttp2)";
    nva_ = {nv(":method", kPost),     nv(":scheme", kHttp),
            nv(":path", path_),       nv(":authority", endpoint_),
            nv("te", kTrailers),      nv("content-type", kGrpc),
            nv("user-agent", kAgent), nv("grpc-timeout", timeout_)};
  }
  ~Conn() { Close(); }

  const std::string& endpoint() const { return endpoint_; }
  bool open() const { return session_ != nullptr; }
  nghttp2_session* session() { return session_; }
  const std::vector<nghttp2_nv>& headers() const { return nva_; }
  void Attach(Call* c) { calls_.push_back(c); }

  // Opens the TCP connection and the HTTP/2 session; false and *err when
  // it cannot. A closed connection is reopened at most once a second.
  bool Open(std::string* err);
  bool MayRetry(Clock::time_point now) const {
    return now - last_attempt_ >= std::chrono::seconds(1);
  }
  // Reads what the socket has and feeds it to the session.
  void OnReadable();
  // Serializes the session's pending frames and writes what the socket
  // takes; the rest waits for EPOLLOUT.
  void Flush();
  // The connection broke: its requests fail with `why` (Unavailable).
  void Fail(const std::string& why);

  bool dirty = false;

 private:
  void Close();
  void WatchOut(bool on);

  H2Loop* const loop_;
  const std::string endpoint_;
  std::string path_, timeout_;
  std::vector<nghttp2_nv> nva_;
  int fd_ = -1;
  nghttp2_session* session_ = nullptr;
  std::string out_;
  size_t out_off_ = 0;
  bool watching_out_ = false;
  Clock::time_point last_attempt_{};
  std::vector<Call*> calls_;
};

// A closed-loop client: one request in flight on its connection.
class Call {
 public:
  Call(H2Loop* loop, Conn* conn, uint64_t seed)
      : loop_(loop), conn_(conn), s_(loop->shared()), rng_(seed) {
    const Options& o = *s_->opt;
    if (o.workload == "put") {
      put_.set_value(s_->value);
      resp_ = std::make_unique<etcdserverpb::PutResponse>();
    } else if (o.workload == "range") {
      range_.set_serializable(o.consistency == "s");
      resp_ = std::make_unique<etcdserverpb::RangeResponse>();
    } else {
      txn_.add_success()->mutable_request_put()->set_value(s_->value);
      resp_ = std::make_unique<etcdserverpb::TxnResponse>();
    }
  }

  // Sent and not yet closed (nor queued for completion).
  bool in_flight() const { return in_flight_ && !closed_; }
  Conn* conn() const { return conn_; }
  int32_t stream_id() const { return stream_id_; }
  Clock::time_point sent() const { return sent_; }

  // Issues the next request, now or when the rate cap lets it go.
  void Next() {
    auto now = Clock::now();
    Clock::time_point at;
    if (!s_->Claim(now, &n_, &at)) {
      loop_->ClientFinished();
      return;
    }
    if (at > now) {
      loop_->At(at, this);
      return;
    }
    Send();
  }

  void Send();

  // nghttp2 callbacks for this request's stream.
  void OnHeader(const uint8_t* name, size_t namelen, const uint8_t* value,
                size_t valuelen);
  void OnData(const uint8_t* data, size_t len) {
    resp_buf_.append(reinterpret_cast<const char*>(data), len);
  }
  void OnClose(uint32_t h2_error) {
    if (closed_) return;
    closed_ = true;
    reset_ = h2_error;
    loop_->Done(this);
  }
  ssize_t ReadBody(uint8_t* buf, size_t length, uint32_t* flags) {
    size_t n = std::min(length, req_.size() - req_off_);
    std::memcpy(buf, req_.data() + req_off_, n);
    req_off_ += n;
    if (req_off_ == req_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  // The request ends without a stream (or its connection broke).
  void FailNow(int code, std::string msg) {
    if (closed_) return;
    closed_ = true;
    fail_code_ = code;
    fail_msg_ = std::move(msg);
    loop_->Done(this);
  }
  void DeadlinePassed() { deadline_hit_ = true; }

  // Records the finished request and issues the next.
  void Complete();

 private:
  H2Loop* const loop_;
  Conn* const conn_;
  Shared* const s_;
  std::mt19937_64 rng_;
  int64_t n_ = 0;
  Clock::time_point sent_;
  etcdserverpb::PutRequest put_;
  etcdserverpb::RangeRequest range_;
  etcdserverpb::TxnRequest txn_;
  std::unique_ptr<google::protobuf::MessageLite> resp_;
  std::string req_;  // the length-prefixed request message
  size_t req_off_ = 0;
  std::string resp_buf_;
  bool in_flight_ = false;
  bool closed_ = false;  // completion queued: nothing may queue it again
  int32_t stream_id_ = -1;
  int http_status_ = 0;
  int grpc_status_ = -1;
  std::string grpc_message_;
  uint32_t reset_ = 0;
  bool deadline_hit_ = false;
  int fail_code_ = grpc::OK;
  std::string fail_msg_;
};

Call* StreamCall(nghttp2_session* s, int32_t stream_id) {
  return static_cast<Call*>(nghttp2_session_get_stream_user_data(s, stream_id));
}

int OnHeaderCb(nghttp2_session* s, const nghttp2_frame* frame,
               const uint8_t* name, size_t namelen, const uint8_t* value,
               size_t valuelen, uint8_t, void*) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (Call* c = StreamCall(s, frame->hd.stream_id)) {
    c->OnHeader(name, namelen, value, valuelen);
  }
  return 0;
}

int OnDataCb(nghttp2_session* s, uint8_t, int32_t stream_id,
             const uint8_t* data, size_t len, void*) {
  if (Call* c = StreamCall(s, stream_id)) c->OnData(data, len);
  return 0;
}

int OnCloseCb(nghttp2_session* s, int32_t stream_id, uint32_t error_code,
              void*) {
  if (Call* c = StreamCall(s, stream_id)) c->OnClose(error_code);
  return 0;
}

ssize_t ReadBodyCb(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                   uint32_t* flags, nghttp2_data_source* src, void*) {
  return static_cast<Call*>(src->ptr)->ReadBody(buf, length, flags);
}

bool Conn::Open(std::string* err) {
  last_attempt_ = Clock::now();
  fd_ = Dial(endpoint_, 10000, err);
  if (fd_ < 0) return false;
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeaderCb);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnDataCb);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnCloseCb);
  int rc = nghttp2_session_client_new(&session_, cbs, this);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    *err = nghttp2_strerror(rc);
    close(fd_);
    fd_ = -1;
    session_ = nullptr;
    return false;
  }
  // Large receive windows, so that flow control costs a WINDOW_UPDATE now
  // and then rather than per response.
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        1 << 30);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = this;
  epoll_ctl(loop_->epoll_fd(), EPOLL_CTL_ADD, fd_, &ev);
  watching_out_ = false;
  loop_->MarkDirty(this);
  return true;
}

void Conn::Close() {
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
    session_ = nullptr;
  }
  if (fd_ >= 0) {
    close(fd_);  // also leaves the epoll set
    fd_ = -1;
  }
  out_.clear();
  out_off_ = 0;
}

void Conn::Fail(const std::string& why) {
  Close();
  for (Call* c : calls_) {
    if (c->in_flight()) c->FailNow(grpc::UNAVAILABLE, why);
  }
}

void Conn::OnReadable() {
  uint8_t buf[64 * 1024];
  ssize_t n = read(fd_, buf, sizeof buf);
  if (n == 0) return Fail("Socket closed");
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    return Fail(std::strerror(errno));
  }
  ssize_t rc = nghttp2_session_mem_recv(session_, buf, n);
  if (rc < 0) {
    return Fail(std::string("HTTP/2: ") +
                nghttp2_strerror(static_cast<int>(rc)));
  }
  loop_->MarkDirty(this);  // acks, window updates
}

void Conn::Flush() {
  if (session_ == nullptr) return;
  for (;;) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      return Fail(std::string("HTTP/2: ") +
                  nghttp2_strerror(static_cast<int>(n)));
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), n);
  }
  while (out_off_ < out_.size()) {
    ssize_t n = write(fd_, out_.data() + out_off_, out_.size() - out_off_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return Fail(std::strerror(errno));
    }
    out_off_ += n;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
  WatchOut(!out_.empty());
  if (!nghttp2_session_want_read(session_) &&
      !nghttp2_session_want_write(session_) && out_.empty()) {
    // GOAWAY received and every stream done: open a new connection for
    // the next request.
    Fail("Connection closed by the server (GOAWAY)");
  }
}

void Conn::WatchOut(bool on) {
  if (on == watching_out_) return;
  watching_out_ = on;
  epoll_event ev{};
  ev.events = on ? EPOLLIN | EPOLLOUT : EPOLLIN;
  ev.data.ptr = this;
  epoll_ctl(loop_->epoll_fd(), EPOLL_CTL_MOD, fd_, &ev);
}

void Call::Send() {
  const Options& o = *s_->opt;
  sent_ = Clock::now();
  const google::protobuf::MessageLite* msg;
  if (o.workload == "put") {
    put_.set_key(NextKey(o, n_, &rng_));
    msg = &put_;
  } else if (o.workload == "range") {
    range_.set_key(NextKey(o, n_, &rng_));
    msg = &range_;
  } else {
    txn_.mutable_success(0)->mutable_request_put()->set_key(
        NextKey(o, n_, &rng_));
    msg = &txn_;
  }
  // gRPC's message framing: a 0 (uncompressed) flag byte, the length as 4
  // bytes big-endian, the message.
  size_t len = msg->ByteSizeLong();
  req_.resize(5 + len);
  req_[0] = 0;
  uint32_t be = htonl(static_cast<uint32_t>(len));
  std::memcpy(req_.data() + 1, &be, 4);
  msg->SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(&req_[5]));
  req_off_ = 0;
  resp_buf_.clear();
  http_status_ = 0;
  grpc_status_ = -1;
  grpc_message_.clear();
  reset_ = 0;
  deadline_hit_ = false;
  fail_code_ = grpc::OK;
  in_flight_ = true;
  closed_ = false;
  if (!conn_->open()) {
    std::string err = "failed to connect to " + conn_->endpoint();
    if (!conn_->MayRetry(sent_) || !conn_->Open(&err)) {
      return FailNow(grpc::UNAVAILABLE, err);
    }
  }
  nghttp2_data_provider body;
  body.source.ptr = this;
  body.read_callback = ReadBodyCb;
  const auto& h = conn_->headers();
  stream_id_ = nghttp2_submit_request(conn_->session(), nullptr, h.data(),
                                      h.size(), &body, this);
  if (stream_id_ < 0) {
    std::string why = nghttp2_strerror(stream_id_);
    // Stream ids used up: the next request opens a new connection.
    if (stream_id_ == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) conn_->Fail(why);
    return FailNow(grpc::UNAVAILABLE, why);
  }
  loop_->MarkDirty(conn_);
}

void Call::OnHeader(const uint8_t* name, size_t namelen, const uint8_t* value,
                    size_t valuelen) {
  auto is = [&](const char* want) {
    return namelen == std::strlen(want) &&
           std::memcmp(name, want, namelen) == 0;
  };
  auto number = [&] {
    int v = 0;
    for (size_t i = 0; i < valuelen && value[i] >= '0' && value[i] <= '9';
         i++) {
      v = v * 10 + (value[i] - '0');
    }
    return v;
  };
  if (is(":status")) {
    http_status_ = number();
  } else if (is("grpc-status")) {
    grpc_status_ = number();
  } else if (is("grpc-message")) {
    grpc_message_ = PercentDecode(value, valuelen);
  }
}

void Call::Complete() {
  in_flight_ = false;
  int code = grpc::OK;
  std::string msg;
  if (fail_code_ != grpc::OK) {
    code = fail_code_;
    msg = fail_msg_;
  } else if (deadline_hit_) {
    code = grpc::DEADLINE_EXCEEDED;
    msg = "Deadline Exceeded";
  } else if (http_status_ != 0 && http_status_ != 200) {
    code = CodeForHttpStatus(http_status_);
    msg = "Received http2 header with status: " + std::to_string(http_status_);
  } else if (grpc_status_ >= 0) {
    code = grpc_status_;
    msg = grpc_message_;
  } else if (reset_ != 0) {
    code = CodeForReset(reset_);
    msg = "Received RST_STREAM with error code " + std::to_string(reset_);
  } else {
    code = grpc::UNKNOWN;
    msg = "Stream closed without grpc-status";
  }
  if (code == grpc::OK) {
    // One uncompressed message that parses as the method's response.
    uint32_t be = 0;
    if (resp_buf_.size() >= 5) std::memcpy(&be, resp_buf_.data() + 1, 4);
    if (resp_buf_.size() < 5 || resp_buf_[0] != 0 ||
        ntohl(be) != resp_buf_.size() - 5) {
      code = grpc::INTERNAL;
      msg = "malformed response message";
    } else if (!resp_->ParseFromArray(resp_buf_.data() + 5,
                                      static_cast<int>(resp_buf_.size() - 5))) {
      code = grpc::INTERNAL;
      msg = "Failed to parse response";
    }
  }
  if (code == grpc::OK) {
    loop_->rec().Ok((Clock::now() - sent_).count());
  } else {
    loop_->rec().Error(StatusText(code, msg));
  }
  s_->completed++;
  Next();
}

}  // namespace

H2Loop::H2Loop(Shared* s) : s_(s), ep_(epoll_create1(EPOLL_CLOEXEC)) {}

H2Loop::~H2Loop() {
  conns_.clear();
  if (ep_ >= 0) close(ep_);
}

Conn* H2Loop::AddConn(const std::string& endpoint) {
  conns_.push_back(std::make_unique<Conn>(this, endpoint, *s_->opt));
  return conns_.back().get();
}

void H2Loop::AddCall(Conn* c, uint64_t seed) {
  calls_.push_back(std::make_unique<Call>(this, c, seed));
  c->Attach(calls_.back().get());
}

bool H2Loop::Connect() {
  for (auto& c : conns_) {
    std::string err;
    if (!c->Open(&err)) {
      std::fprintf(stderr, "keel-bench: cannot connect to %s: %s\n",
                   c->endpoint().c_str(), err.c_str());
      return false;
    }
  }
  return true;
}

void H2Loop::MarkDirty(Conn* c) {
  if (c->dirty) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void H2Loop::CompleteDone() {
  // Completing one request issues the next, which may fail at once and
  // land here again: take the list in rounds.
  while (!done_.empty()) {
    std::vector<Call*> round;
    round.swap(done_);
    for (Call* c : round) c->Complete();
  }
}

void H2Loop::FlushDirty() {
  while (!dirty_.empty()) {
    std::vector<Conn*> round;
    round.swap(dirty_);
    for (Conn* c : round) {
      c->dirty = false;
      c->Flush();
    }
    CompleteDone();
  }
}

void H2Loop::FireTimers(Clock::time_point now) {
  while (!timers_.empty() && timers_.top().first <= now) {
    Call* c = timers_.top().second;
    timers_.pop();
    c->Send();
  }
}

void H2Loop::CheckDeadlines(Clock::time_point now) {
  auto limit = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(s_->opt->timeout_s));
  for (auto& c : calls_) {
    if (c->in_flight() && c->stream_id() > 0 && now - c->sent() > limit) {
      // The stream's close callback completes it as DeadlineExceeded.
      c->DeadlinePassed();
      Conn* conn = c->conn();
      if (conn->open()) {
        nghttp2_submit_rst_stream(conn->session(), NGHTTP2_FLAG_NONE,
                                  c->stream_id(), NGHTTP2_CANCEL);
        MarkDirty(conn);
      }
    }
  }
}

void H2Loop::Run() {
  active_ = static_cast<int>(calls_.size());
  for (auto& c : calls_) c->Next();
  CompleteDone();
  FlushDirty();
  // Deadlines are checked a twentieth of --timeout apart (1 ms to 1 s):
  // the sweep touches every client, and enforcing a 30 s deadline to the
  // millisecond buys nothing.
  auto check_every = std::clamp<Clock::duration>(
      std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(s_->opt->timeout_s / 20)),
      std::chrono::milliseconds(1), std::chrono::seconds(1));
  auto next_check = Clock::now() + check_every;
  epoll_event events[128];
  while (active_ > 0) {
    auto now = Clock::now();
    auto wake = next_check;
    if (!timers_.empty() && timers_.top().first < wake) {
      wake = timers_.top().first;
    }
    int timeout_ms = 0;
    if (wake > now) {
      timeout_ms = static_cast<int>(
          std::chrono::ceil<std::chrono::milliseconds>(wake - now).count());
    }
    int n = epoll_wait(ep_, events, 128, timeout_ms);
    for (int i = 0; i < n; i++) {
      auto* c = static_cast<Conn*>(events[i].data.ptr);
      if (!c->open()) continue;
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) c->OnReadable();
      if (c->open() && (events[i].events & EPOLLOUT)) MarkDirty(c);
    }
    CompleteDone();
    now = Clock::now();
    FireTimers(now);
    if (now >= next_check) {
      CheckDeadlines(now);
      next_check = now + check_every;
    }
    FlushDirty();
  }
}

H2Unary::H2Unary(Shared* s, const std::vector<uint64_t>& seeds) : s_(s) {
  const Options& o = *s->opt;
  int nloops = std::clamp(o.threads, 1, o.conns);
  for (int i = 0; i < nloops; i++) {
    loops_.push_back(std::make_unique<H2Loop>(s));
  }
  std::vector<Conn*> conns;
  for (int i = 0; i < o.conns; i++) {
    conns.push_back(
        loops_[i % nloops]->AddConn(o.endpoints[i % o.endpoints.size()]));
  }
  for (size_t i = 0; i < seeds.size(); i++) {
    int c = static_cast<int>(i % o.conns);
    loops_[c % nloops]->AddCall(conns[c], seeds[i]);
  }
}

H2Unary::~H2Unary() = default;

bool H2Unary::Connect() {
  for (auto& l : loops_) {
    if (!l->Connect()) return false;
  }
  return true;
}

void H2Unary::Run(int i) { loops_[i]->Run(); }

std::unique_ptr<Recorder> H2Unary::MergeAll() {
  auto all = std::make_unique<Recorder>();
  for (auto& l : loops_) all->Merge(l->rec());
  return all;
}

}  // namespace keel::bench
