// etcd's JSON gateway (grpc-gateway, as etcd 3.4 serves it) and its health
// endpoints, over a channel to the member's own gRPC services.
//
// Each route decodes the JSON body into the request message, calls the
// gRPC method in process and encodes the answer as grpc-gateway's jsonpb
// does with OrigName (proto field names, 64-bit integers as strings, bytes
// in base64, default values left out). Because every call goes through the
// gRPC services, semantics, errors and (later) authentication are the
// services' own. Errors answer {"error","message","code"} with
// grpc-gateway's HTTP status for the gRPC code; streams (watch, lease
// keepalive, election observe, snapshot) answer newline-delimited
// {"result":...} objects, chunked.
//
// Paths: /v3/... and the deprecated /v3beta/... (etcd 3.4 serves both; not
// /v3alpha/).
//
// Thread safety: handlers run on HTTP connection threads, concurrently.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "http/server.h"
#include "server/server.h"

namespace keel::api {

void RegisterGateway(http::Router* router,
                     std::shared_ptr<grpc::Channel> channel);

// /health as etcd 3.4 answers it (healthy: a leader, no alarm, and a
// linearizable read within a second; 3.5's ?exclude=ALARM and
// ?serializable=true too); /livez and /readyz as etcd 3.6 does.
void RegisterHealth(http::Router* router,
                    std::shared_ptr<grpc::Channel> channel, server::Server* s);

// grpc-gateway's HTTP status for a gRPC code.
int HttpStatusFromGrpc(grpc::StatusCode code);
// The extent of the first JSON value in text after leading whitespace:
// sets *begin and *end, or returns false if text holds no complete value.
bool NextJsonValue(std::string_view text, size_t* begin, size_t* end);

}  // namespace keel::api
