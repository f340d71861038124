// H2Conn (h2_conn.h): the streams relayed, frame by frame, to gRPC C++ in
// process over a socketpair.
#include <grpcpp/server_posix.h>
#include <sys/socket.h>

#include "api/h2_conn.h"

namespace keel::api::h2 {

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

}  // namespace keel::api::h2
