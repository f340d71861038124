// The HTTP server and the sniffing Listener over loopback sockets:
// keep-alive, pipelining, chunked responses, errors, HTTP/2 hand-off, and a
// silent client that must not hold up anyone.
#include "http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>

#include "http/listener.h"

namespace keel::http {
namespace {

int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

void SendAll(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    s.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads until the server closes (or 10 s pass: the test then fails on the
// content).
std::string ReadToClose(int fd) {
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
  return out;
}

// Reads until `want` appears in the stream (deadline 10 s).
std::string ReadUntil(int fd, std::string_view want) {
  std::string out;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (out.find(want) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

size_t Count(const std::string& s, std::string_view what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos;
       p = s.find(what, p + 1)) {
    n++;
  }
  return n;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.Handle("GET", "/hello", [](const Request& r, ResponseWriter& w) {
      w.Send(200, "text/plain", "hello " + r.QueryParam("name"));
    });
    router_.Handle("POST", "/echo", [](const Request& r, ResponseWriter& w) {
      w.Send(200, "application/octet-stream", r.body);
    });
    router_.Handle("POST", "/stream", [](const Request& r, ResponseWriter& w) {
      w.BeginStream(200, "application/json", "X-Done");
      for (int i = 0; i < 3; i++)
        w.WriteChunk("{\"n\":" + std::to_string(i) + "}\n");
      w.EndStream({{"X-Done", "yes"}});
    });
    // Streams until the client leaves.
    router_.Handle("GET", "/forever",
                   [this](const Request&, ResponseWriter& w) {
                     w.BeginStream(200, "text/plain");
                     w.WriteChunk("started\n");
                     while (!w.WaitClientGone(50)) {
                     }
                     forever_ended_ = true;
                   });
    router_.Handle("", "/prefix/", [](const Request& r, ResponseWriter& w) {
      w.Send(200, "text/plain", "prefix " + r.path);
    });
    server_ = std::make_unique<Server>(&router_);
    ListenerOptions o;
    o.http = server_.get();
    o.on_http2 = [this](int fd) { http2_fds_.set_value(fd); };
    auto l = Listener::Start({{"127.0.0.1", 0}}, o);
    ASSERT_TRUE(l.ok()) << l.status().message();
    listener_ = std::move(*l);
    port_ = listener_->ports()[0];
  }
  void TearDown() override {
    listener_->Stop();
    server_->Shutdown();
  }

  Router router_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Listener> listener_;
  std::promise<int> http2_fds_;
  std::atomic<bool> forever_ended_{false};
  uint16_t port_ = 0;
};

TEST_F(HttpServerTest, KeepAliveAndPipelining) {
  int fd = Connect(port_);
  SendAll(fd, "GET /hello?name=a HTTP/1.1\r\nHost: h\r\n\r\n");
  std::string first = ReadUntil(fd, "hello a");
  EXPECT_NE(first.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << first;
  EXPECT_NE(first.find("Content-Length: 7\r\n"), std::string::npos) << first;
  // Same connection, three pipelined requests in one write.
  SendAll(fd,
          "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nping"
          "GET /hello?name=b HTTP/1.1\r\nHost: h\r\n\r\n"
          "GET /hello?name=c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  std::string rest = ReadToClose(fd);
  close(fd);
  size_t ping = rest.find("ping"), b = rest.find("hello b"),
         c = rest.find("hello c");
  ASSERT_NE(ping, std::string::npos) << rest;
  ASSERT_NE(b, std::string::npos) << rest;
  ASSERT_NE(c, std::string::npos) << rest;
  EXPECT_LT(ping, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(Count(rest, "HTTP/1.1 200 OK"), 3u);
  EXPECT_EQ(Count(rest, "Connection: close"), 1u);
}

TEST_F(HttpServerTest, ChunkedResponseWithTrailer) {
  int fd = Connect(port_);
  SendAll(fd, "POST /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  std::string r = ReadToClose(fd);
  close(fd);
  EXPECT_NE(r.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("Trailer: X-Done\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("8\r\n{\"n\":0}\n\r\n8\r\n{\"n\":1}\n\r\n8\r\n{\"n\":2}\n"
                   "\r\n0\r\nX-Done: yes\r\n\r\n"),
            std::string::npos)
      << r;
}

TEST_F(HttpServerTest, HundredContinue) {
  int fd = Connect(port_);
  SendAll(fd,
          "POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
          "Content-Length: 3\r\nConnection: close\r\n\r\n");
  std::string cont = ReadUntil(fd, "100 Continue\r\n\r\n");
  EXPECT_EQ(cont, "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(fd, "abc");
  std::string r = ReadToClose(fd);
  close(fd);
  EXPECT_NE(r.find("200 OK"), std::string::npos);
  EXPECT_EQ(r.substr(r.size() - 3), "abc");
}

TEST_F(HttpServerTest, NotFoundMethodNotAllowedAndPrefixes) {
  int fd = Connect(port_);
  SendAll(fd,
          "GET /nope HTTP/1.1\r\nHost: h\r\n\r\n"
          "DELETE /hello HTTP/1.1\r\nHost: h\r\n\r\n"
          "PUT /prefix/a/b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  std::string r = ReadToClose(fd);
  close(fd);
  EXPECT_NE(r.find("HTTP/1.1 404 Not Found\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("404 page not found\n"), std::string::npos) << r;
  EXPECT_NE(r.find("HTTP/1.1 405 Method Not Allowed\r\n"), std::string::npos);
  EXPECT_NE(r.find("Allow: GET\r\n"), std::string::npos);
  EXPECT_NE(r.find("prefix /prefix/a/b"), std::string::npos);
}

TEST_F(HttpServerTest, GarbageGets400AndClose) {
  int fd = Connect(port_);
  SendAll(fd, "this is not http\r\n\r\n");
  std::string r = ReadToClose(fd);  // returns because the server closes
  close(fd);
  EXPECT_EQ(r.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Connection: close"), std::string::npos);
}

TEST_F(HttpServerTest, SilentClientBlocksNobody) {
  int silent = Connect(port_);
  int half = Connect(port_);
  SendAll(half, "PRI * HTTP");  // a partial preface, then nothing
  int fd = Connect(port_);
  SendAll(fd,
          "GET /hello?name=x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  std::string r = ReadToClose(fd);
  EXPECT_NE(r.find("hello x"), std::string::npos);
  close(fd);
  close(half);
  close(silent);
}

TEST_F(HttpServerTest, Http2PrefaceIsHandedOffUnconsumed) {
  int fd = Connect(port_);
  // In two pieces, so the sniffer sees a partial preface first.
  SendAll(fd, kHttp2Preface.substr(0, 5));
  SendAll(fd, kHttp2Preface.substr(5));
  SendAll(fd, "frames");
  auto fut = http2_fds_.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  int got = fut.get();
  std::string seen = ReadUntil(got, "frames");
  EXPECT_EQ(seen, std::string(kHttp2Preface) + "frames");
  close(got);
  close(fd);
}

TEST_F(HttpServerTest, StreamingHandlerEndsWhenClientLeaves) {
  int fd = Connect(port_);
  SendAll(fd, "GET /forever HTTP/1.1\r\nHost: h\r\n\r\n");
  ReadUntil(fd, "started");
  close(fd);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!forever_ended_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll
  }
  EXPECT_TRUE(forever_ended_);
}

TEST_F(HttpServerTest, ShutdownEndsOpenStreams) {
  int fd = Connect(port_);
  SendAll(fd, "GET /forever HTTP/1.1\r\nHost: h\r\n\r\n");
  ReadUntil(fd, "started");
  listener_->Stop();
  server_->Shutdown();  // returns only once the handler's thread is done
  EXPECT_TRUE(forever_ended_);
  close(fd);
}

}  // namespace
}  // namespace keel::http
