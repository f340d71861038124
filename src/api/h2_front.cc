// H2Front (h2_front.h): one io_context per io thread; an H2Conn (h2_conn.h)
// per client connection, with its nghttp2 server session and, once a stream
// needs relaying, an nghttp2 client session to gRPC C++ over a socketpair.
// Here: the connection's io, its native unary calls, and H2Front.
#include <grpcpp/server_posix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/h2_conn.h"

namespace keel::api {
namespace h2 {

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
      if (LeaderRequiredButMissing(&s->meta, opts_.server)) {
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

}  // namespace h2

using h2::Clock;
using h2::H2Conn;
using h2::Loop;

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
