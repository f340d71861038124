// The JSON gateway's framing against fake gRPC services: unary answers and
// errors, and streams that answer, then fail, or fail at once (the formats
// grpc-gateway v1 writes, as etcd 3.4 serves them).
#include "api/gateway.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "common/json.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "http/listener.h"

namespace keel::api {
namespace {

class FakeMaintenance final : public etcdserverpb::Maintenance::Service {
 public:
  grpc::Status Snapshot(
      grpc::ServerContext*, const etcdserverpb::SnapshotRequest*,
      grpc::ServerWriter<etcdserverpb::SnapshotResponse>* w) override {
    if (fail_at_once) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad \"snap\"");
    }
    etcdserverpb::SnapshotResponse r;
    r.set_blob("\x01\x02");
    r.set_remaining_bytes(2);
    w->Write(r);
    r.set_remaining_bytes(0);
    w->Write(r);
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone");
  }
  grpc::Status Status(grpc::ServerContext*, const etcdserverpb::StatusRequest*,
                      etcdserverpb::StatusResponse* out) override {
    out->set_version("3.5.0");
    out->set_dbsize(1LL << 40);
    out->mutable_header()->set_member_id(18446744073709551615ULL);
    return grpc::Status::OK;
  }
  bool fail_at_once = false;
};

class FakeKv final : public etcdserverpb::KV::Service {
 public:
  grpc::Status Range(grpc::ServerContext* ctx,
                     const etcdserverpb::RangeRequest* r,
                     etcdserverpb::RangeResponse* out) override {
    auto it = ctx->client_metadata().find("authorization");
    if (it != ctx->client_metadata().end()) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          std::string(it->second.data(), it->second.size()));
    }
    if (r->key().empty()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no key");
    }
    auto* kv = out->add_kvs();
    kv->set_key(r->key());
    kv->set_version(1);
    out->set_count(1);
    return grpc::Status::OK;
  }
};

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.RegisterService(&maintenance_);
    b.RegisterService(&kv_);
    grpc_ = b.BuildAndStart();
    RegisterGateway(&router_,
                    grpc_->InProcessChannel(grpc::ChannelArguments()));
    server_ = std::make_unique<http::Server>(&router_);
    http::ListenerOptions o;
    o.http = server_.get();
    auto l = http::Listener::Start({{"127.0.0.1", 0}}, o);
    ASSERT_TRUE(l.ok());
    listener_ = std::move(*l);
  }
  void TearDown() override {
    listener_->Stop();
    server_->Shutdown();
    grpc_->Shutdown();
  }

  // One request with Connection: close; the whole answer.
  std::string Post(const std::string& path, const std::string& body,
                   const std::string& extra_headers = "") {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(listener_->ports()[0]);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    std::string req =
        "POST " + path + " HTTP/1.1\r\nHost: h\r\n" + extra_headers +
        "Connection: close\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    EXPECT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(req.size()));
    std::string out;
    char buf[4096];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return out;
  }

  FakeMaintenance maintenance_;
  FakeKv kv_;
  std::unique_ptr<grpc::Server> grpc_;
  http::Router router_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Listener> listener_;
};

bool Has(const std::string& s, std::string_view what) {
  return s.find(what) != std::string::npos;
}

TEST_F(GatewayTest, UnaryJsonpbEncoding) {
  std::string r = Post("/v3/maintenance/status", "");
  EXPECT_TRUE(Has(r, "HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_TRUE(Has(r, "Grpc-Metadata-Content-Type: application/grpc\r\n")) << r;
  // 64-bit integers as strings; proto field names.
  EXPECT_TRUE(
      Has(r,
          "\r\n\r\n{\"header\":{\"member_id\":\"18446744073709551615\"},"
          "\"version\":\"3.5.0\",\"dbSize\":\"1099511627776\"}"))
      << r;
  r = Post("/v3beta/kv/range",
           "{\"key\":\"AAE=\",\"unknown\":{\"x\":[1]}} tail");
  EXPECT_TRUE(Has(
      r, "{\"kvs\":[{\"key\":\"AAE=\",\"version\":\"1\"}],\"count\":\"1\"}"))
      << r;
}

TEST_F(GatewayTest, UnaryErrors) {
  std::string r = Post("/v3/kv/range", "{}");
  EXPECT_TRUE(Has(r, "HTTP/1.1 412 Precondition Failed\r\n")) << r;
  EXPECT_TRUE(Has(r, "Trailer: Grpc-Trailer-Content-Type\r\n")) << r;
  EXPECT_TRUE(
      Has(r, "{\"error\":\"no key\",\"message\":\"no key\",\"code\":9}"));
  EXPECT_TRUE(
      Has(r, "0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n"));
  // The Authorization header reaches the service as metadata.
  r = Post("/v3/kv/range", "{\"key\":\"AA==\"}", "Authorization: tok\"en\r\n");
  EXPECT_TRUE(Has(r, "HTTP/1.1 403 Forbidden\r\n")) << r;
  EXPECT_TRUE(
      Has(r, "{\"error\":\"tok\\\"en\",\"message\":\"tok\\\"en\",\"code\":7}"))
      << r;
  r = Post("/v3/kv/range", "{\"key\":");
  EXPECT_TRUE(Has(r, "HTTP/1.1 400 Bad Request\r\n")) << r;
  EXPECT_TRUE(Has(r, "Content-Length: ")) << r;  // not a call's error
  EXPECT_TRUE(Has(r, ",\"code\":3}")) << r;
  // A service that is not registered answers as gRPC does.
  r = Post("/v3/lock/lock", "{}");
  EXPECT_TRUE(Has(r, "HTTP/1.1 501 Not Implemented\r\n")) << r;
}

TEST_F(GatewayTest, StreamResultsThenError) {
  std::string r = Post("/v3/maintenance/snapshot", "{}");
  EXPECT_TRUE(Has(r, "HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_TRUE(Has(r, "Transfer-Encoding: chunked\r\n")) << r;
  EXPECT_TRUE(
      Has(r, "{\"result\":{\"remaining_bytes\":\"2\",\"blob\":\"AQI=\"}}\n"))
      << r;
  EXPECT_TRUE(Has(r, "{\"result\":{\"blob\":\"AQI=\"}}\n")) << r;
  EXPECT_TRUE(Has(r,
                  "{\"error\":{\"grpc_code\":14,\"http_code\":503,"
                  "\"message\":\"gone\",\"http_status\":\"Service "
                  "Unavailable\"}}\r\n0\r\n\r\n"))
      << r;
}

TEST_F(GatewayTest, StreamFailingAtOnce) {
  maintenance_.fail_at_once = true;
  std::string r = Post("/v3/maintenance/snapshot", "{}");
  // As etcd 3.4 answers a snapshot refused by auth: the error's status, no
  // header metadata, one error object.
  EXPECT_TRUE(Has(r, "HTTP/1.1 400 Bad Request\r\n")) << r;
  EXPECT_FALSE(Has(r, "Grpc-Metadata-Content-Type")) << r;
  EXPECT_TRUE(Has(r,
                  "{\"error\":{\"grpc_code\":3,\"http_code\":400,"
                  "\"message\":\"bad \\\"snap\\\"\",\"http_status\":\"Bad "
                  "Request\"}}"))
      << r;
}

TEST(GatewayJson, NextJsonValue) {
  size_t b = 0, e = 0;
  std::string_view t = "  {\"a\":\"}\\\"{\",\"b\":[1,{}]} {\"c\":1}";
  ASSERT_TRUE(NextJsonValue(t, &b, &e));
  EXPECT_EQ(t.substr(b, e - b), "{\"a\":\"}\\\"{\",\"b\":[1,{}]}");
  t.remove_prefix(e);
  ASSERT_TRUE(NextJsonValue(t, &b, &e));
  EXPECT_EQ(t.substr(b, e - b), "{\"c\":1}");
  EXPECT_FALSE(NextJsonValue("  ", &b, &e));
  EXPECT_FALSE(NextJsonValue("{\"a\":1", &b, &e));
  EXPECT_EQ(HttpStatusFromGrpc(grpc::StatusCode::FAILED_PRECONDITION), 412);
  EXPECT_EQ(HttpStatusFromGrpc(grpc::StatusCode::RESOURCE_EXHAUSTED), 429);
}

// The one escaping helper the gateway's error bodies and the JSON log lines
// share (common/json.h).
TEST(GatewayJson, JsonStringEscapes) {
  EXPECT_EQ(JsonString(""), "\"\"");
  EXPECT_EQ(JsonString("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonString("\n\r\t"), "\"\\n\\r\\t\"");
  EXPECT_EQ(JsonString(std::string_view("\x01\x1f\x7f", 3)),
            "\"\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(JsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"");  // UTF-8 kept
}

}  // namespace
}  // namespace keel::api
