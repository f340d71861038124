// /health, /livez and /readyz: what load balancers, Kubernetes probes and
// monitoring ask a member. Each check goes through the member's own gRPC
// services (in process), so it sees what a client would.
#include <chrono>
#include <set>

#include "api/gateway.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "server/server_metrics.h"

namespace keel::api {
namespace {

// etcd's health reads give up after a second.
constexpr auto kCheckTimeout = std::chrono::seconds(1);

// Every value of a query parameter that may repeat (?exclude=a&exclude=b).
std::set<std::string> QueryValues(const http::Request& req,
                                  std::string_view name) {
  std::set<std::string> out;
  std::string_view q = req.query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos && kv.substr(0, eq) == name) {
      out.insert(std::string(kv.substr(eq + 1)));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

class Checks {
 public:
  Checks(std::shared_ptr<grpc::Channel> channel, server::Server* s)
      : kv_(etcdserverpb::KV::NewStub(channel)),
        maint_(etcdserverpb::Maintenance::NewStub(channel)),
        s_(s) {}

  // A read of the key "health", as etcd's checks do.
  bool Read(bool serializable) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCheckTimeout);
    etcdserverpb::RangeRequest r;
    r.set_key("health");
    r.set_serializable(serializable);
    etcdserverpb::RangeResponse resp;
    return kv_->Range(&ctx, r, &resp).ok();
  }

  // The active alarms' names ("NOSPACE", "CORRUPT"), or nullopt if they
  // cannot be read.
  std::optional<std::vector<std::string>> Alarms() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCheckTimeout);
    etcdserverpb::AlarmRequest r;
    r.set_action(etcdserverpb::AlarmRequest::GET);
    etcdserverpb::AlarmResponse resp;
    if (!maint_->Alarm(&ctx, r, &resp).ok()) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& a : resp.alarms()) {
      out.push_back(etcdserverpb::AlarmType_Name(a.alarm()));
    }
    return out;
  }

  bool HasLeader() const { return s_->HasLeader(); }

 private:
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maint_;
  server::Server* s_;
};

// Kubernetes-style answer: "ok", or with ?verbose (and on failure) a line
// per check; 503 when a check fails. Reasons are withheld, as etcd does.
void HealthzAnswer(
    const http::Request& req, http::ResponseWriter& w, std::string_view what,
    const std::vector<std::pair<std::string, std::function<bool()>>>& checks) {
  std::set<std::string> exclude = QueryValues(req, "exclude");
  bool verbose = false;
  req.QueryParam("verbose", &verbose);
  bool ok = true;
  std::string lines;
  for (const auto& [name, check] : checks) {
    if (exclude.count(name)) {
      lines += "[+]" + name + " excluded: ok\n";
      continue;
    }
    if (check()) {
      lines += "[+]" + name + " ok\n";
    } else {
      ok = false;
      lines += "[-]" + name + " failed: reason withheld\n";
    }
  }
  w.SetHeader("X-Content-Type-Options", "nosniff");
  if (ok && !verbose) {
    w.Send(200, "text/plain; charset=utf-8", "ok");
    return;
  }
  lines += std::string(what) + (ok ? " check passed\n" : " check failed\n");
  w.Send(ok ? 200 : 503, "text/plain; charset=utf-8", lines);
}

}  // namespace

void RegisterHealth(http::Router* router,
                    std::shared_ptr<grpc::Channel> channel, server::Server* s) {
  auto checks = std::make_shared<Checks>(channel, s);

  // etcd 3.4: unhealthy with any alarm, without a leader, or when a read
  // through consensus fails within a second. etcd 3.5 added
  // ?exclude=<ALARM> and ?serializable=true, which keel takes too.
  router->Handle(
      "GET", "/health",
      [checks](const http::Request& req, http::ResponseWriter& w) {
        std::set<std::string> exclude = QueryValues(req, "exclude");
        bool healthy = true;
        auto alarms = checks->Alarms();
        if (!alarms) {
          healthy = false;
        } else {
          for (const auto& a : *alarms) {
            if (!exclude.count(a)) healthy = false;
          }
        }
        if (!checks->HasLeader()) healthy = false;
        if (healthy) {
          healthy = checks->Read(req.QueryParam("serializable") == "true");
        }
        auto& m = server::ServerMetrics::Get();
        (healthy ? m.health_success : m.health_failures).Inc();
        w.Send(healthy ? 200 : 503, "text/plain; charset=utf-8",
               healthy ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}");
      });

  // etcd 3.6: live while the member can read its own store.
  router->Handle("GET", "/livez",
                 [checks](const http::Request& req, http::ResponseWriter& w) {
                   HealthzAnswer(req, w, "livez", {{"serializable_read", [&] {
                                                      return checks->Read(true);
                                                    }}});
                 });
  // etcd 3.6: ready when not corrupt and reads (local and through the
  // leader) succeed. An active NOSPACE alarm leaves the member ready: it
  // still serves reads and deletes.
  router->Handle(
      "GET", "/readyz",
      [checks](const http::Request& req, http::ResponseWriter& w) {
        HealthzAnswer(
            req, w, "readyz",
            {{"data_corruption",
              [&] {
                auto alarms = checks->Alarms();
                if (!alarms) return false;
                for (const auto& a : *alarms) {
                  if (a == "CORRUPT") return false;
                }
                return true;
              }},
             {"serializable_read", [&] { return checks->Read(true); }},
             {"linearizable_read", [&] { return checks->Read(false); }}});
      });
}

}  // namespace keel::api
