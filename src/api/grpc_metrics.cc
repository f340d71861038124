#include "api/grpc_metrics.h"

#include <google/protobuf/descriptor.h>

#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <string_view>

#include "metrics/metrics.h"

namespace keel::api {
namespace {

constexpr int kNumCodes = 17;  // grpc::StatusCode 0..16

struct MethodMetrics {
  metrics::Counter* started = nullptr;
  std::array<metrics::Counter*, kNumCodes> handled{};
  metrics::Counter* msg_received = nullptr;
  metrics::Counter* msg_sent = nullptr;
  metrics::Histogram* latency = nullptr;  // extensive only
};

struct Families {
  metrics::Family<metrics::Counter>& started;
  metrics::Family<metrics::Counter>& handled;
  metrics::Family<metrics::Counter>& msg_received;
  metrics::Family<metrics::Counter>& msg_sent;

  static Families& Get() {
    auto& r = metrics::Registry::Default();
    const std::vector<std::string> labels = {"grpc_type", "grpc_service",
                                             "grpc_method"};
    static Families* f = new Families{
        r.AddCounterVec("grpc_server_started_total",
                        "Total number of RPCs started on the server.", labels),
        r.AddCounterVec(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, "
            "regardless of success or failure.",
            {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
        r.AddCounterVec("grpc_server_msg_received_total",
                        "Total number of RPC stream messages received on the "
                        "server.",
                        labels),
        r.AddCounterVec("grpc_server_msg_sent_total",
                        "Total number of gRPC stream messages sent by the "
                        "server.",
                        labels),
    };
    return *f;
  }
};

metrics::Family<metrics::Histogram>& LatencyFamily() {
  static auto& f = metrics::Registry::Default().AddHistogramVec(
      "grpc_server_handling_seconds",
      "Histogram of response latency (seconds) of gRPC that had been "
      "application-level handled by the server.",
      {"grpc_type", "grpc_service", "grpc_method"}, metrics::DefaultBuckets());
  return f;
}

const char* TypeName(grpc::experimental::ServerRpcInfo::Type t) {
  using T = grpc::experimental::ServerRpcInfo::Type;
  switch (t) {
    case T::UNARY:
      return "unary";
    case T::CLIENT_STREAMING:
      return "client_stream";
    case T::SERVER_STREAMING:
      return "server_stream";
    case T::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

// The counters of one method, created once and then shared.
const MethodMetrics* ForMethod(const std::string& full_method, const char* type,
                               bool extensive) {
  static std::mutex mu;
  static std::map<std::string, MethodMetrics>* cache =
      new std::map<std::string, MethodMetrics>();
  std::lock_guard lock(mu);
  auto it = cache->find(full_method);
  if (it != cache->end()) return &it->second;
  // "/etcdserverpb.KV/Put"
  std::string service, method;
  auto slash = full_method.find('/', 1);
  if (slash != std::string::npos && !full_method.empty()) {
    service = full_method.substr(1, slash - 1);
    method = full_method.substr(slash + 1);
  } else {
    service = "unknown";
    method = full_method;
  }
  Families& f = Families::Get();
  MethodMetrics m;
  m.started = &f.started.WithLabelValues({type, service, method});
  for (int c = 0; c < kNumCodes; c++) {
    m.handled[c] =
        &f.handled.WithLabelValues({type, service, method, GrpcCodeName(c)});
  }
  m.msg_received = &f.msg_received.WithLabelValues({type, service, method});
  m.msg_sent = &f.msg_sent.WithLabelValues({type, service, method});
  if (extensive) {
    m.latency = &LatencyFamily().WithLabelValues({type, service, method});
  }
  return &cache->emplace(full_method, m).first->second;
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(const MethodMetrics* m)
      : m_(m), start_(std::chrono::steady_clock::now()) {
    m_->started->Inc();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* b) override {
    using H = grpc::experimental::InterceptionHookPoints;
    if (b->QueryInterceptionHookPoint(H::POST_RECV_MESSAGE) &&
        b->GetRecvMessage() != nullptr) {
      m_->msg_received->Inc();
    }
    if (b->QueryInterceptionHookPoint(H::PRE_SEND_MESSAGE)) {
      m_->msg_sent->Inc();
    }
    if (b->QueryInterceptionHookPoint(H::PRE_SEND_STATUS)) {
      int code = static_cast<int>(b->GetSendStatus().error_code());
      if (code < 0 || code >= kNumCodes) code = 2;  // Unknown
      m_->handled[code]->Inc();
      if (m_->latency != nullptr) {
        m_->latency->Observe(std::chrono::duration<double>(
                                 std::chrono::steady_clock::now() - start_)
                                 .count());
      }
    }
    b->Proceed();
  }

 private:
  const MethodMetrics* m_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

const char* GrpcCodeName(int code) {
  static const char* kNames[kNumCodes] = {"OK",
                                          "Canceled",
                                          "Unknown",
                                          "InvalidArgument",
                                          "DeadlineExceeded",
                                          "NotFound",
                                          "AlreadyExists",
                                          "PermissionDenied",
                                          "ResourceExhausted",
                                          "FailedPrecondition",
                                          "Aborted",
                                          "OutOfRange",
                                          "Unimplemented",
                                          "Internal",
                                          "Unavailable",
                                          "DataLoss",
                                          "Unauthenticated"};
  return code >= 0 && code < kNumCodes ? kNames[code] : "Unknown";
}

GrpcMetricsFactory::GrpcMetricsFactory(const std::vector<std::string>& services,
                                       bool extensive)
    : extensive_(extensive) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& name : services) {
    const auto* svc = pool->FindServiceByName(name);
    if (svc == nullptr) continue;
    for (int i = 0; i < svc->method_count(); i++) {
      const auto* m = svc->method(i);
      using T = grpc::experimental::ServerRpcInfo::Type;
      T type = m->client_streaming()
                   ? (m->server_streaming() ? T::BIDI_STREAMING
                                            : T::CLIENT_STREAMING)
                   : (m->server_streaming() ? T::SERVER_STREAMING : T::UNARY);
      ForMethod("/" + name + "/" + m->name(), TypeName(type), extensive_);
    }
  }
}

grpc::experimental::Interceptor* GrpcMetricsFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  const char* method = info->method();
  if (method == nullptr) return nullptr;
  if (std::string_view(method).starts_with(kSelfCountedPrefix)) return nullptr;
  return new MetricsInterceptor(
      ForMethod(method, TypeName(info->type()), extensive_));
}

namespace {

// A call ended: grpc_server_handled_total by code, and its latency.
void CountHandled(const MethodMetrics* m, const grpc::Status& status,
                  std::chrono::steady_clock::time_point start) {
  int code = static_cast<int>(status.error_code());
  if (code < 0 || code >= kNumCodes) code = 2;  // Unknown
  m->handled[code]->Inc();
  if (m->latency != nullptr) {
    m->latency->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  }
}

}  // namespace

UnaryMethodMetrics::UnaryMethodMetrics(const std::string& full_method,
                                       bool extensive)
    : m_(ForMethod(full_method, "unary", extensive)) {}

void UnaryMethodMetrics::Started() const {
  const auto* m = static_cast<const MethodMetrics*>(m_);
  m->started->Inc();
  m->msg_received->Inc();
}

void UnaryMethodMetrics::Finished(
    const grpc::Status& status,
    std::chrono::steady_clock::time_point start) const {
  const auto* m = static_cast<const MethodMetrics*>(m_);
  if (status.ok()) m->msg_sent->Inc();
  CountHandled(m, status, start);
}

StreamMethodMetrics::StreamMethodMetrics(const std::string& full_method,
                                         const char* type, bool extensive)
    : m_(ForMethod(full_method, type, extensive)) {}

void StreamMethodMetrics::Started() const {
  static_cast<const MethodMetrics*>(m_)->started->Inc();
}

void StreamMethodMetrics::Received() const {
  static_cast<const MethodMetrics*>(m_)->msg_received->Inc();
}

void StreamMethodMetrics::Sent() const {
  static_cast<const MethodMetrics*>(m_)->msg_sent->Inc();
}

void StreamMethodMetrics::Finished(
    const grpc::Status& status,
    std::chrono::steady_clock::time_point start) const {
  CountHandled(static_cast<const MethodMetrics*>(m_), status, start);
}

}  // namespace keel::api
