// /metrics: the Prometheus exposition of metrics::Registry::Default(), on the
// client URLs and, with --listen-metrics-urls, on ports of their own that
// serve only /metrics and the health endpoints (what etcd serves there), so
// that a scraper or load balancer never needs the client API.
#include <spdlog/spdlog.h>

#include "api/gateway.h"
#include "api/services.h"
#include "metrics/metrics.h"

namespace keel::api {

void RegisterMetricsRoute(http::Router* router) {
  router->Handle("GET", "/metrics",
                 [](const http::Request&, http::ResponseWriter& w) {
                   w.Send(200, metrics::Registry::kContentType,
                          metrics::Registry::Default().Expose());
                 });
}

Status ClientApi::ServeMetricsUrls(server::Server* s) {
  RegisterMetricsRoute(&router_);
  const auto& urls = s->config().listen_metrics_urls;
  if (urls.empty()) return Status::OK();
  for (const auto& u : urls) {
    if (u.scheme != "http") {
      return Status::InvalidArgument("--listen-metrics-urls " + u.String() +
                                     ": only http:// is supported yet");
    }
  }
  RegisterMetricsRoute(&metrics_router_);
  RegisterHealth(&metrics_router_, channel_, s);
  metrics_http_ = std::make_unique<http::Server>(&metrics_router_);
  http::ListenerOptions lo;
  lo.http = metrics_http_.get();  // no gRPC here: HTTP/2 is closed
  std::vector<std::pair<std::string, uint16_t>> addrs;
  for (const auto& u : urls) addrs.emplace_back(u.host, u.port);
  auto l = http::Listener::Start(addrs, lo);
  if (!l.ok()) {
    return Status::IOError("cannot listen for metrics on " + urls[0].String() +
                           " (" + l.status().message() + ")");
  }
  metrics_listener_ = std::move(*l);
  for (const auto& u : urls) {
    spdlog::info("serving metrics and health on {}", u.String() + "/metrics");
  }
  return Status::OK();
}

}  // namespace keel::api
