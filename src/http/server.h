// A small HTTP/1.1 server: a Router of handlers, and a Server that runs one
// thread per connection (keep-alive, pipelining, Content-Length and chunked
// responses, 100-continue, size limits, clear 4xx on garbage).
//
// keel serves it on its client URLs beside gRPC (src/http/listener.h sniffs
// each connection and hands HTTP/2 to gRPC), and it can serve a port of its
// own (--listen-metrics-urls). A thread per connection fits the traffic:
// health probes, metrics scrapes, curl, a few long watch streams; handlers
// may block (they call gRPC in process), and no handler delays another
// connection.
//
// Registering a route (e.g. /metrics, from wherever the Router is reachable:
// keel::api::ClientApi::router() for the client URLs):
//
//   router->Handle("GET", "/metrics",
//                  [](const http::Request& req, http::ResponseWriter& w) {
//                    w.Send(200, "text/plain; version=0.0.4", Render());
//                  });
//
// A path ending in '/' matches every path below it (the longest such prefix
// wins, as in Go's ServeMux); method "" accepts any method. Register routes
// before serving starts; handlers run on connection threads, concurrently.
//
// Thread safety: Router is immutable once serving; Server is thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "http/parser.h"

namespace keel::http {

// A byte stream to one client: a plain TCP socket today. TLS (https client
// URLs) plugs in as another Conn that decrypts (see listener.h).
class Conn {
 public:
  virtual ~Conn() = default;
  // Reads up to n bytes, waiting at most timeout_ms (-1: no limit). Returns
  // the count, 0 at end of stream, -1 on error or timeout.
  virtual ssize_t Read(char* buf, size_t n, int timeout_ms) = 0;
  // Writes all of data (waiting at most timeout_ms per stall); false if the
  // client is gone or stalled.
  virtual bool Write(std::string_view data, int timeout_ms) = 0;
  // True once the peer has closed or reset the connection: waits up to
  // timeout_ms (-1: no limit) for that, or until wake_fd (if >= 0) turns
  // readable, which returns false.
  virtual bool WaitPeerGone(int timeout_ms, int wake_fd) = 0;
  // Unblocks Read/Write/WaitPeerGone from another thread; they fail.
  virtual void Abort() = 0;
  // Ends the stream towards the client (reads go on).
  virtual void CloseWrite() = 0;
};

// Conn::WaitPeerGone for a socket: only a close or reset (POLLRDHUP, not
// POLLIN: bytes a client pipelines behind a streaming request must not
// look like a close) counts; the socket is only polled, so another thread
// may write meanwhile. Shared by the plain and the TLS connection.
bool WaitSocketClosed(int fd, int timeout_ms, int wake_fd);
// poll() one fd, retrying on EINTR; returns revents, 0 on timeout, -1 on
// error.
int PollOne(int fd, short events, int timeout_ms);

// A Conn over a connected socket; owns and closes fd.
class SocketConn final : public Conn {
 public:
  explicit SocketConn(int fd);
  ~SocketConn() override;
  ssize_t Read(char* buf, size_t n, int timeout_ms) override;
  bool Write(std::string_view data, int timeout_ms) override;
  bool WaitPeerGone(int timeout_ms, int wake_fd) override;
  void Abort() override;
  void CloseWrite() override;

 private:
  const int fd_;
};

// How a handler answers. Either Send() once, or BeginStream(), any number of
// WriteChunk(), then EndStream(). Writing nothing answers 200 with no body.
class ResponseWriter {
 public:
  ResponseWriter(Conn* conn, const Request& req, int write_timeout_ms = -1);
  // A header for the response (before Send/BeginStream).
  void SetHeader(std::string name, std::string value);
  // The whole response, with Content-Length.
  void Send(int status, std::string_view content_type, std::string_view body);
  // A streamed response (chunked); trailer_names announces trailers that
  // EndStream will send. False if the client is gone.
  bool BeginStream(int status, std::string_view content_type,
                   std::string_view trailer_names = {});
  bool WriteChunk(std::string_view data);
  void EndStream(
      const std::vector<std::pair<std::string, std::string>>& trailers = {});
  // Blocks until the client closes the connection (true), timeout_ms
  // passes or StopWaiting() is called (false): a streaming handler runs it
  // on a second thread to stop when its client leaves.
  bool WaitClientGone(int timeout_ms);
  // Wakes WaitClientGone (from any thread); later calls return at once.
  void StopWaiting();
  ~ResponseWriter();

  bool started() const { return started_; }
  // The connection cannot carry another request (the client is gone, the
  // response had no framing, or the request asked to close).
  bool must_close() const { return must_close_; }
  void Finish();  // called by the Server after the handler

 private:
  std::string Head(int status, std::string_view content_type,
                   std::string_view framing);

  Conn* conn_;
  const Request& req_;
  const int write_timeout_ms_;
  std::vector<std::pair<std::string, std::string>> headers_;
  bool started_ = false;
  bool streaming_ = false;
  bool ended_ = false;
  bool must_close_ = false;
  int wake_fd_ = -1;  // an eventfd, made by the first WaitClientGone
  std::mutex wake_mu_;
};

using Handler = std::function<void(const Request&, ResponseWriter&)>;

class Router {
 public:
  // method "" accepts any; a path ending in '/' is a prefix route.
  void Handle(std::string method, std::string path, Handler h);
  // A filter runs before routing; it returns true when it answered the
  // request itself (e.g. a CORS preflight). Filters may also set headers.
  using Filter = std::function<bool(const Request&, ResponseWriter&)>;
  void AddFilter(Filter f) { filters_.push_back(std::move(f)); }

  // Answers req: the matching handler, else 405 (path known, method not)
  // or 404, with Go's net/http bodies.
  void Dispatch(const Request& req, ResponseWriter& w) const;

 private:
  struct Route {
    std::string method;
    Handler handler;
  };
  std::map<std::string, std::vector<Route>> routes_;  // by path
  std::vector<Filter> filters_;
};

// The status line's reason phrase ("Not Found").
std::string_view StatusText(int status);
// An HTTP date (RFC 9110 IMF-fixdate) for now.
std::string HttpDate();

struct ServerOptions {
  Limits limits;
  int idle_timeout_ms = 5 * 60 * 1000;  // between requests
  int read_timeout_ms = 60 * 1000;      // within a request
  int write_timeout_ms = 60 * 1000;     // per stalled write
  int max_connections = 4096;           // beyond: 503 and close
};

class Server {
 public:
  explicit Server(const Router* router, ServerOptions options = {});
  ~Server();
  // Serves conn on a thread of its own until the client leaves or
  // Shutdown().
  void Serve(std::unique_ptr<Conn> conn);
  // Aborts every connection and waits for their threads.
  void Shutdown();

 private:
  void Run(uint64_t id, Conn* conn);

  const Router* router_;
  const ServerOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;  // guarded by mu_
  uint64_t next_id_ = 1;   // guarded by mu_
  // The live connections; each thread (detached) erases its own entry
  // last, so an empty map means no thread touches this Server any more.
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;  // guarded by mu_
};

}  // namespace keel::http
