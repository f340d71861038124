#include "api/gateway.h"

#include <google/protobuf/util/json_util.h>

#include <atomic>
#include <functional>
#include <thread>

#include "common/json.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace keel::api {

int HttpStatusFromGrpc(grpc::StatusCode code) {
  // grpc-gateway v1's table (etcd 3.4): FailedPrecondition is 412 there.
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 408;
    case grpc::StatusCode::UNKNOWN:
      return 500;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 412;
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::INTERNAL:
      return 500;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DATA_LOSS:
      return 500;
    default:
      return 500;
  }
}

bool NextJsonValue(std::string_view text, size_t* begin, size_t* end) {
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) {
    i++;
  }
  if (i == text.size()) return false;
  *begin = i;
  char first = text[i];
  if (first != '{' && first != '[' && first != '"') {
    // A scalar: up to whitespace or a structural character.
    while (i < text.size() &&
           !std::isspace(static_cast<unsigned char>(text[i])) &&
           text[i] != '{' && text[i] != '[' && text[i] != ',' &&
           text[i] != '}' && text[i] != ']') {
      i++;
    }
    *end = i;
    return true;
  }
  int depth = 0;
  bool in_string = false;
  for (; i < text.size(); i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        i++;
      } else if (c == '"') {
        in_string = false;
        if (depth == 0) {
          *end = i + 1;
          return true;
        }
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      depth++;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) {
        *end = i + 1;
        return true;
      }
    }
  }
  return false;  // unterminated
}

namespace {

using google::protobuf::Message;

std::string ToJson(const Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;  // grpc-gateway's OrigName
  std::string out;
  auto st = google::protobuf::util::MessageToJsonString(m, &out, o);
  if (!st.ok()) return "{}";  // only for invalid UTF-8 in strings
  return out;
}

std::string ErrorBody(int code, std::string_view message) {
  std::string q = JsonString(message);
  return "{\"error\":" + q + ",\"message\":" + q +
         ",\"code\":" + std::to_string(code) + "}";
}

// Decodes one JSON object into m; "" (or whitespace) is the empty message,
// as grpc-gateway reads an empty body. Unknown fields are ignored, as
// etcd's gateway does.
bool Decode(std::string_view text, Message* m, std::string* err) {
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (text.empty() || text.front() != '{') {
    *err = "request body must be a JSON object";
    return false;
  }
  auto st = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), m, o);
  if (!st.ok()) {
    *err = std::string(st.message().data(), st.message().size());
    return false;
  }
  return true;
}

// Decodes every JSON value in body (a stream body may hold several).
template <class Req>
bool DecodeAll(std::string_view body, std::vector<Req>* out, std::string* err) {
  size_t b = 0, e = 0;
  while (!body.empty()) {
    if (!NextJsonValue(body, &b, &e)) {
      bool blank = true;
      for (char c : body)
        blank = blank && std::isspace(static_cast<unsigned char>(c));
      if (blank) break;
      *err = "unexpected EOF";
      return false;
    }
    Req r;
    if (!Decode(body.substr(b, e - b), &r, err)) return false;
    out->push_back(std::move(r));
    body.remove_prefix(e);
  }
  return true;
}

// The request's first JSON value decoded (what grpc-gateway's decoder
// reads; the rest of the body is ignored), or the empty message.
bool DecodeBody(const http::Request& hr, Message* m, http::ResponseWriter& w) {
  size_t b = 0, e = 0;
  std::string err;
  std::string_view body = hr.body;
  if (!NextJsonValue(body, &b, &e)) {
    bool blank = true;
    for (char c : body)
      blank = blank && std::isspace(static_cast<unsigned char>(c));
    if (blank) return true;
    err = "unexpected EOF";
  } else if (Decode(body.substr(b, e - b), m, &err)) {
    return true;
  }
  w.Send(400, "application/json", ErrorBody(3, err));
  return false;
}

// grpc-gateway passes the Authorization header and Grpc-Metadata-* headers
// on as metadata (etcd reads its auth token from "authorization").
void ForwardMetadata(const http::Request& hr, grpc::ClientContext* ctx) {
  for (const auto& [k, v] : hr.headers) {
    if (k == "authorization") {
      ctx->AddMetadata("authorization", v);
    } else if (k.size() > 14 && k.compare(0, 14, "grpc-metadata-") == 0) {
      ctx->AddMetadata(k.substr(14), v);
    }
  }
}

// A failed call: grpc-gateway's DefaultHTTPError, which announces the
// call's trailer metadata and so answers chunked.
void WriteCallError(http::ResponseWriter& w, const grpc::Status& st) {
  w.BeginStream(HttpStatusFromGrpc(st.error_code()), "application/json",
                "Grpc-Trailer-Content-Type");
  w.WriteChunk(
      ErrorBody(static_cast<int>(st.error_code()), st.error_message()));
  w.EndStream({{"Grpc-Trailer-Content-Type", "application/grpc"}});
}

template <class Stub, class Req, class Resp>
using UnaryMethod = grpc::Status (Stub::*)(grpc::ClientContext*, const Req&,
                                           Resp*);

template <class Stub, class Req, class Resp>
http::Handler Unary(std::shared_ptr<Stub> stub,
                    UnaryMethod<Stub, Req, Resp> method) {
  return [stub, method](const http::Request& hr, http::ResponseWriter& w) {
    Req req;
    if (!DecodeBody(hr, &req, w)) return;
    grpc::ClientContext ctx;
    ForwardMetadata(hr, &ctx);
    Resp resp;
    grpc::Status st = ((*stub).*method)(&ctx, req, &resp);
    if (!st.ok()) {
      WriteCallError(w, st);
      return;
    }
    w.SetHeader("Grpc-Metadata-Content-Type", "application/grpc");
    w.Send(200, "application/json", ToJson(resp));
  };
}

// Streams a call's responses as grpc-gateway's ForwardResponseStream does:
// one {"result":...} object and a newline each; a failure ends the stream
// with {"error":{grpc_code,http_code,message,http_status}}. The call is
// cancelled when the client leaves.
template <class Resp>
void StreamResponses(grpc::ClientContext* ctx, http::ResponseWriter& w,
                     const std::function<bool(Resp*)>& read,
                     const std::function<grpc::Status()>& finish) {
  std::atomic<bool> gone{false};
  std::thread watcher([&] {
    if (w.WaitClientGone(-1)) {
      gone = true;
      ctx->TryCancel();
    }
  });
  bool wrote = false;
  // The call's header metadata shows only once a response came.
  auto begin = [&](int status, bool with_metadata) {
    if (with_metadata) {
      w.SetHeader("Grpc-Metadata-Content-Type", "application/grpc");
    }
    w.BeginStream(status, "application/json");
    wrote = true;
  };
  Resp resp;
  while (read(&resp)) {
    if (!wrote) begin(200, true);
    if (!w.WriteChunk("{\"result\":" + ToJson(resp) + "}\n")) {
      ctx->TryCancel();
      break;
    }
    resp.Clear();
  }
  grpc::Status st = finish();
  w.StopWaiting();
  watcher.join();
  if (!st.ok() && !gone) {
    int http = HttpStatusFromGrpc(st.error_code());
    if (!wrote) begin(http, false);
    std::string e = "{\"error\":{\"grpc_code\":" +
                    std::to_string(static_cast<int>(st.error_code())) +
                    ",\"http_code\":" + std::to_string(http) +
                    ",\"message\":" + JsonString(st.error_message()) +
                    ",\"http_status\":" + JsonString(http::StatusText(http)) +
                    "}}";
    w.WriteChunk(e);
  }
  if (!wrote) begin(200, true);
  w.EndStream();
}

// A bidirectional stream: the body's JSON objects are the requests.
template <class Req, class Resp, class Open>
http::Handler Bidi(Open open) {
  return [open](const http::Request& hr, http::ResponseWriter& w) {
    std::vector<Req> reqs;
    std::string err;
    if (!DecodeAll(hr.body, &reqs, &err)) {
      w.Send(400, "application/json", ErrorBody(3, err));
      return;
    }
    grpc::ClientContext ctx;
    ForwardMetadata(hr, &ctx);
    auto stream = open(&ctx);
    for (const Req& r : reqs) {
      if (!stream->Write(r)) break;
    }
    stream->WritesDone();
    StreamResponses<Resp>(
        &ctx, w, [&](Resp* r) { return stream->Read(r); },
        [&] { return stream->Finish(); });
  };
}

// A server stream: one request, many responses.
template <class Req, class Resp, class Open>
http::Handler ServerStream(Open open) {
  return [open](const http::Request& hr, http::ResponseWriter& w) {
    Req req;
    if (!DecodeBody(hr, &req, w)) return;
    grpc::ClientContext ctx;
    ForwardMetadata(hr, &ctx);
    auto reader = open(&ctx, req);
    StreamResponses<Resp>(
        &ctx, w, [&](Resp* r) { return reader->Read(r); },
        [&] { return reader->Finish(); });
  };
}

}  // namespace

void RegisterGateway(http::Router* router,
                     std::shared_ptr<grpc::Channel> channel) {
  using namespace etcdserverpb;  // NOLINT: the table below reads better
  auto kv = std::make_shared<KV::Stub>(channel);
  auto watch = std::make_shared<Watch::Stub>(channel);
  auto lease = std::make_shared<Lease::Stub>(channel);
  auto cluster = std::make_shared<Cluster::Stub>(channel);
  auto maint = std::make_shared<Maintenance::Stub>(channel);
  auto auth = std::make_shared<Auth::Stub>(channel);
  auto election = std::make_shared<v3electionpb::Election::Stub>(channel);
  auto lock = std::make_shared<v3lockpb::Lock::Stub>(channel);

  // etcd 3.4 serves the gateway under /v3/ and, deprecated, /v3beta/.
  auto add = [router](std::string_view path, http::Handler h) {
    router->Handle("POST", "/v3" + std::string(path), h);
    router->Handle("POST", "/v3beta" + std::string(path), h);
  };
  // Anything else below the gateway's prefixes: grpc-gateway's 404.
  for (const char* prefix : {"/v3/", "/v3beta/"}) {
    router->Handle("", prefix,
                   [](const http::Request&, http::ResponseWriter& w) {
                     w.SetHeader("X-Content-Type-Options", "nosniff");
                     w.Send(404, "text/plain; charset=utf-8", "Not Found\n");
                   });
  }

  add("/kv/range", Unary(kv, &KV::Stub::Range));
  add("/kv/put", Unary(kv, &KV::Stub::Put));
  add("/kv/deleterange", Unary(kv, &KV::Stub::DeleteRange));
  add("/kv/txn", Unary(kv, &KV::Stub::Txn));
  add("/kv/compaction", Unary(kv, &KV::Stub::Compact));

  add("/watch",
      Bidi<WatchRequest, WatchResponse>(
          [watch](grpc::ClientContext* c) { return watch->Watch(c); }));

  add("/lease/grant", Unary(lease, &Lease::Stub::LeaseGrant));
  for (const char* p : {"/lease/revoke", "/kv/lease/revoke"}) {
    add(p, Unary(lease, &Lease::Stub::LeaseRevoke));
  }
  add("/lease/keepalive", Bidi<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(
                              [lease](grpc::ClientContext* c) {
                                return lease->LeaseKeepAlive(c);
                              }));
  for (const char* p : {"/lease/timetolive", "/kv/lease/timetolive"}) {
    add(p, Unary(lease, &Lease::Stub::LeaseTimeToLive));
  }
  for (const char* p : {"/lease/leases", "/kv/lease/leases"}) {
    add(p, Unary(lease, &Lease::Stub::LeaseLeases));
  }

  add("/cluster/member/add", Unary(cluster, &Cluster::Stub::MemberAdd));
  add("/cluster/member/remove", Unary(cluster, &Cluster::Stub::MemberRemove));
  add("/cluster/member/update", Unary(cluster, &Cluster::Stub::MemberUpdate));
  add("/cluster/member/list", Unary(cluster, &Cluster::Stub::MemberList));
  add("/cluster/member/promote", Unary(cluster, &Cluster::Stub::MemberPromote));

  add("/maintenance/alarm", Unary(maint, &Maintenance::Stub::Alarm));
  add("/maintenance/status", Unary(maint, &Maintenance::Stub::Status));
  add("/maintenance/defragment", Unary(maint, &Maintenance::Stub::Defragment));
  add("/maintenance/hash", Unary(maint, &Maintenance::Stub::Hash));
  add("/maintenance/snapshot",
      ServerStream<SnapshotRequest, SnapshotResponse>(
          [maint](grpc::ClientContext* c, const SnapshotRequest& r) {
            return maint->Snapshot(c, r);
          }));
  add("/maintenance/transfer-leadership",
      Unary(maint, &Maintenance::Stub::MoveLeader));

  add("/auth/enable", Unary(auth, &Auth::Stub::AuthEnable));
  add("/auth/disable", Unary(auth, &Auth::Stub::AuthDisable));
  add("/auth/authenticate", Unary(auth, &Auth::Stub::Authenticate));
  add("/auth/user/add", Unary(auth, &Auth::Stub::UserAdd));
  add("/auth/user/get", Unary(auth, &Auth::Stub::UserGet));
  add("/auth/user/list", Unary(auth, &Auth::Stub::UserList));
  add("/auth/user/delete", Unary(auth, &Auth::Stub::UserDelete));
  add("/auth/user/changepw", Unary(auth, &Auth::Stub::UserChangePassword));
  add("/auth/user/grant", Unary(auth, &Auth::Stub::UserGrantRole));
  add("/auth/user/revoke", Unary(auth, &Auth::Stub::UserRevokeRole));
  add("/auth/role/add", Unary(auth, &Auth::Stub::RoleAdd));
  add("/auth/role/get", Unary(auth, &Auth::Stub::RoleGet));
  add("/auth/role/list", Unary(auth, &Auth::Stub::RoleList));
  add("/auth/role/delete", Unary(auth, &Auth::Stub::RoleDelete));
  add("/auth/role/grant", Unary(auth, &Auth::Stub::RoleGrantPermission));
  add("/auth/role/revoke", Unary(auth, &Auth::Stub::RoleRevokePermission));

  using v3electionpb::Election;
  add("/election/campaign", Unary(election, &Election::Stub::Campaign));
  add("/election/proclaim", Unary(election, &Election::Stub::Proclaim));
  add("/election/leader", Unary(election, &Election::Stub::Leader));
  add("/election/observe",
      ServerStream<v3electionpb::LeaderRequest, v3electionpb::LeaderResponse>(
          [election](grpc::ClientContext* c,
                     const v3electionpb::LeaderRequest& r) {
            return election->Observe(c, r);
          }));
  add("/election/resign", Unary(election, &Election::Stub::Resign));

  add("/lock/lock", Unary(lock, &v3lockpb::Lock::Stub::Lock));
  add("/lock/unlock", Unary(lock, &v3lockpb::Lock::Stub::Unlock));
}

}  // namespace keel::api
