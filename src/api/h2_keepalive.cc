// H2Conn (h2_conn.h): the native LeaseKeepAlive stream.
#include "api/h2_conn.h"

namespace keel::api::h2 {

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

}  // namespace keel::api::h2
