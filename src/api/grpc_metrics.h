// gRPC server metrics under go-grpc-prometheus's names, as etcd exposes
// them: grpc_server_started_total, grpc_server_handled_total (with
// grpc_code), grpc_server_msg_received_total, grpc_server_msg_sent_total,
// all labelled grpc_type, grpc_service, grpc_method; and, with
// --metrics=extensive, the grpc_server_handling_seconds histogram.
//
// A server interceptor counts every RPC on the client port. Like
// go-grpc-prometheus's InitializeMetrics, every method of etcd's services
// starts at zero for every code, so that rate() queries see the series
// before the first call.
//
// Thread safety: the factory and its interceptors run on gRPC's threads;
// the counters are atomics.
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace keel::api {

class GrpcMetricsFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // services: full names whose methods are pre-initialised
  // ("etcdserverpb.KV", ...); extensive adds the latency histogram.
  GrpcMetricsFactory(const std::vector<std::string>& services, bool extensive);
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const bool extensive_;
};

// go-grpc-prometheus's names for a gRPC code ("OK", "NotFound", ...).
const char* GrpcCodeName(int code);

// The methods whose service counts its calls itself with UnaryMethodMetrics
// (the factory gives them no interceptor): gRPC's interceptor hooks on every
// batch of every call were ~6-8% of the members' CPU under put load.
inline constexpr const char kSelfCountedPrefix[] = "/etcdserverpb.KV/";

// The same series as the interceptor's for one unary method, counted by the
// service: Started when the request arrived, Finished with the status it
// ends with (a response message was sent when it is OK).
class UnaryMethodMetrics {
 public:
  // full_method: "/etcdserverpb.KV/Put".
  UnaryMethodMetrics(const std::string& full_method, bool extensive);
  void Started() const;
  void Finished(const grpc::Status& status,
                std::chrono::steady_clock::time_point start) const;

 private:
  const void* m_;  // the method's counters (grpc_metrics.cc)
};

// The same series for a streaming method counted by its server (keel's
// HTTP/2 front serves LeaseKeepAlive itself): one Started per stream, a
// Received or Sent per message, one Finished with the status it ends with.
class StreamMethodMetrics {
 public:
  // type: "bidi_stream", "server_stream" or "client_stream".
  StreamMethodMetrics(const std::string& full_method, const char* type,
                      bool extensive);
  void Started() const;
  void Received() const;
  void Sent() const;
  void Finished(const grpc::Status& status,
                std::chrono::steady_clock::time_point start) const;

 private:
  const void* m_;
};

}  // namespace keel::api
