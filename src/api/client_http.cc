// The client URLs' HTTP/1.1 side: accepting (gRPC and HTTP/1.1 on the same
// ports, http and https), CORS as etcd answers it, /health, /livez, /readyz,
// /version, and the JSON gateway (gateway.cc).
#include <grpcpp/server_posix.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <climits>

#include "api/gateway.h"
#include "api/h2_front.h"
#include "api/services.h"
#include "http/tls_conn.h"
#include "server/tls_setup.h"
#include "transport/tls.h"

namespace keel::api {
namespace {

// What keel reports as etcd's version, here and in Maintenance.Status: the
// API level it implements (flags and behaviour follow etcd 3.5), so that
// clients that check versions treat it as a 3.5 member. The cluster version
// is, as etcd's, major.minor.0.
constexpr char kServerVersion[] = "3.5.0";
constexpr char kClusterVersion[] = "3.5.0";

// etcd wraps its client handler in a CORS handler (--cors, default "*"):
// these headers on every answer, and 200 with no body to any OPTIONS.
bool Cors(const http::Request& req, http::ResponseWriter& w) {
  w.SetHeader("Access-Control-Allow-Headers",
              "accept, content-type, authorization");
  w.SetHeader("Access-Control-Allow-Methods",
              "POST, GET, OPTIONS, PUT, DELETE");
  w.SetHeader("Access-Control-Allow-Origin", "*");
  if (req.method != "OPTIONS") return false;
  w.Send(200, "", "");
  return true;
}

}  // namespace

Status ClientApi::ServeClientUrls(server::Server* s) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  channel_ = grpc_->InProcessChannel(args);

  router_.AddFilter(Cors);
  RegisterHealth(&router_, channel_, s);
  router_.Handle(
      "GET", "/version", [](const http::Request&, http::ResponseWriter& w) {
        w.Send(200, "application/json",
               std::string("{\"etcdserver\":\"") + kServerVersion +
                   "\",\"etcdcluster\":\"" + kClusterVersion + "\"}");
      });
  RegisterGateway(&router_, channel_);

  http::ServerOptions options;
  // A JSON body carries bytes in base64 (4/3 larger) plus field names.
  options.limits.max_body_bytes = static_cast<size_t>(std::min<uint64_t>(
      2 * s->config().max_request_bytes + (1 << 20), INT_MAX));
  http_ = std::make_unique<http::Server>(&router_, options);

  http::ListenerOptions lo;
  lo.http = http_.get();
  grpc::Server* grpc = grpc_.get();
  if (s->config().grpc_front) {
    H2FrontOptions fo;
    fo.server = s;
    fo.grpc = grpc;
    fo.max_recv_message_bytes = max_recv_message_bytes_;
    h2_ = std::make_unique<H2Front>(fo);
    H2Front* h2 = h2_.get();
    lo.on_http2 = [h2](int fd) { h2->Adopt(fd); };
  } else {
    lo.on_http2 = [grpc](int fd) { grpc::AddInsecureChannelFromFd(grpc, fd); };
  }
  std::vector<http::Address> addrs;
  const auto& urls = s->config().listen_client_urls;
  for (const auto& u : urls) {
    addrs.push_back(
        {u.host, static_cast<uint16_t>(u.port), u.scheme == "https"});
  }
  if (tls_grpc_port_ != 0) {
    // https: gRPC clients to gRPC's TLS port; the HTTP/1.1 side terminates
    // TLS here, with the same checks (client certificate required under
    // --client-cert-auth, the CRL, the allowed hostname, the cipher suites).
    auto opts =
        server::MakeTlsOptions(s->config(), s->config().security.client,
                               "client", s->config().listen_client_urls);
    if (!opts.ok()) return opts.status();
    auto ctx = transport::TlsContext::Create(*opts);
    if (!ctx.ok()) return ctx.status();
    http_tls_ = std::move(ctx).value();
    http::PreferHttp11(http_tls_->server().native_handle());
    const uint16_t port = static_cast<uint16_t>(tls_grpc_port_);
    lo.on_tls_grpc = [port](int fd) { http::RelayToLoopback(fd, port); };
    std::shared_ptr<transport::TlsContext> tls = http_tls_;
    lo.make_tls_conn = [tls](int fd) -> std::unique_ptr<http::Conn> {
      return std::make_unique<http::TlsConn>(
          fd, tls->server().native_handle(), [tls](SSL* ssl) {
            Status st = tls->CheckPeer(ssl, /*server_side=*/true);
            if (!st.ok()) {
              spdlog::warn("rejected client certificate (HTTP): {}",
                           st.message());
            }
            return st.ok();
          });
    };
  }
  if (addrs.empty()) return Status::OK();
  auto l = http::Listener::StartAddresses(addrs, lo);
  if (!l.ok()) {
    std::string list;
    for (const auto& u : urls) list += (list.empty() ? "" : ",") + u.String();
    return Status::IOError("cannot listen for client traffic on " + list +
                           " (" + l.status().message() + ")");
  }
  listener_ = std::move(*l);
  for (size_t i = 0; i < urls.size(); i++) {
    ports_[i] = listener_->ports()[i];
    spdlog::info("serving client traffic (gRPC and HTTP{}) on {}",
                 urls[i].scheme == "https" ? " over TLS" : "",
                 urls[i].String());
  }
  return Status::OK();
}

}  // namespace keel::api
