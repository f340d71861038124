#include "http/server.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace keel::http {

// ---- SocketConn ----

SocketConn::SocketConn(int fd) : fd_(fd) {
  int flags = fcntl(fd_, F_GETFL, 0);
  if (flags >= 0) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
}

SocketConn::~SocketConn() { close(fd_); }

int PollOne(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r > 0) return p.revents;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

ssize_t SocketConn::Read(char* buf, size_t n, int timeout_ms) {
  for (;;) {
    ssize_t r = recv(fd_, buf, n, 0);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if (PollOne(fd_, POLLIN, timeout_ms) <= 0) return -1;
  }
}

bool SocketConn::Write(std::string_view data, int timeout_ms) {
  while (!data.empty()) {
    ssize_t r = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (r > 0) {
      data.remove_prefix(static_cast<size_t>(r));
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    int ev = PollOne(fd_, POLLOUT, timeout_ms);
    if (ev <= 0 || (ev & (POLLERR | POLLHUP))) return false;
  }
  return true;
}

bool SocketConn::WaitPeerGone(int timeout_ms, int wake_fd) {
  return WaitSocketClosed(fd_, timeout_ms, wake_fd);
}

bool WaitSocketClosed(int fd, int timeout_ms, int wake_fd) {
  pollfd p[2] = {{fd, POLLRDHUP, 0}, {wake_fd, POLLIN, 0}};
  for (;;) {
    int r = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (r > 0) return p[0].revents != 0;
    if (r == 0) return false;
    if (errno != EINTR) return true;
  }
}

void SocketConn::Abort() { shutdown(fd_, SHUT_RDWR); }

void SocketConn::CloseWrite() { shutdown(fd_, SHUT_WR); }

// ---- helpers ----

std::string_view StatusText(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Request Entity Too Large";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string HttpDate() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// ---- ResponseWriter ----

ResponseWriter::ResponseWriter(Conn* conn, const Request& req,
                               int write_timeout_ms)
    : conn_(conn),
      req_(req),
      write_timeout_ms_(write_timeout_ms),
      must_close_(!req.keep_alive) {}

ResponseWriter::~ResponseWriter() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

bool ResponseWriter::WaitClientGone(int timeout_ms) {
  int fd;
  {
    std::lock_guard<std::mutex> l(wake_mu_);
    if (wake_fd_ < 0) wake_fd_ = eventfd(0, EFD_CLOEXEC);
    fd = wake_fd_;
  }
  return conn_->WaitPeerGone(timeout_ms, fd);
}

void ResponseWriter::StopWaiting() {
  std::lock_guard<std::mutex> l(wake_mu_);
  if (wake_fd_ < 0) wake_fd_ = eventfd(0, EFD_CLOEXEC);
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

void ResponseWriter::SetHeader(std::string name, std::string value) {
  for (auto& [k, v] : headers_) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  headers_.emplace_back(std::move(name), std::move(value));
}

std::string ResponseWriter::Head(int status, std::string_view content_type,
                                 std::string_view framing) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " ";
  h += StatusText(status);
  h += "\r\n";
  for (const auto& [k, v] : headers_) h += k + ": " + v + "\r\n";
  if (!content_type.empty()) {
    h += "Content-Type: ";
    h += content_type;
    h += "\r\n";
  }
  h += "Date: " + HttpDate() + "\r\n";
  h += framing;
  if (must_close_) h += "Connection: close\r\n";
  h += "\r\n";
  return h;
}

void ResponseWriter::Send(int status, std::string_view content_type,
                          std::string_view body) {
  if (started_) return;
  started_ = true;
  ended_ = true;
  std::string out =
      Head(status, content_type,
           "Content-Length: " + std::to_string(body.size()) + "\r\n");
  if (req_.method != "HEAD") out += body;
  if (!conn_->Write(out, write_timeout_ms_)) must_close_ = true;
}

bool ResponseWriter::BeginStream(int status, std::string_view content_type,
                                 std::string_view trailer_names) {
  if (started_) return false;
  started_ = true;
  streaming_ = true;
  std::string framing;
  if (req_.version_minor == 0) {
    must_close_ = true;  // HTTP/1.0 has no chunks: the close ends the body
  } else {
    if (!trailer_names.empty()) {
      framing += "Trailer: ";
      framing += trailer_names;
      framing += "\r\n";
    }
    framing += "Transfer-Encoding: chunked\r\n";
  }
  if (!conn_->Write(Head(status, content_type, framing), write_timeout_ms_)) {
    must_close_ = true;
    return false;
  }
  return true;
}

bool ResponseWriter::WriteChunk(std::string_view data) {
  if (!streaming_ || ended_ || data.empty()) return streaming_ && !ended_;
  std::string out;
  if (req_.version_minor == 0) {
    out = data;
  } else {
    char size[24];
    std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
    out = size;
    out += data;
    out += "\r\n";
  }
  if (!conn_->Write(out, write_timeout_ms_)) {
    must_close_ = true;
    return false;
  }
  return true;
}

void ResponseWriter::EndStream(
    const std::vector<std::pair<std::string, std::string>>& trailers) {
  if (!streaming_ || ended_) return;
  ended_ = true;
  if (req_.version_minor == 0) return;
  std::string out = "0\r\n";
  for (const auto& [k, v] : trailers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  if (!conn_->Write(out, write_timeout_ms_)) must_close_ = true;
}

void ResponseWriter::Finish() {
  if (!started_) Send(200, "", "");
  if (streaming_ && !ended_) EndStream();
}

// ---- Router ----

void Router::Handle(std::string method, std::string path, Handler h) {
  routes_[std::move(path)].push_back(Route{std::move(method), std::move(h)});
}

void Router::Dispatch(const Request& req, ResponseWriter& w) const {
  for (const Filter& f : filters_) {
    if (f(req, w)) return;
  }
  auto it = routes_.find(req.path);
  if (it == routes_.end()) {
    // The longest prefix route ("/v3/") below which req.path lies.
    size_t best = 0;
    for (auto p = routes_.begin(); p != routes_.end(); ++p) {
      const std::string& k = p->first;
      if (!k.empty() && k.back() == '/' && k.size() > best &&
          req.path.compare(0, k.size(), k) == 0) {
        best = k.size();
        it = p;
      }
    }
  }
  if (it == routes_.end()) {
    w.SetHeader("X-Content-Type-Options", "nosniff");
    w.Send(404, "text/plain; charset=utf-8", "404 page not found\n");
    return;
  }
  std::string allow;
  for (const Route& r : it->second) {
    if (r.method.empty() || r.method == req.method) {
      r.handler(req, w);
      return;
    }
    allow += (allow.empty() ? "" : ", ") + r.method;
  }
  w.SetHeader("Allow", allow);
  w.SetHeader("X-Content-Type-Options", "nosniff");
  w.Send(405, "text/plain; charset=utf-8", "Method Not Allowed\n");
}

// ---- Server ----

Server::Server(const Router* router, ServerOptions options)
    : router_(router), options_(options) {}

Server::~Server() { Shutdown(); }

void Server::Serve(std::unique_ptr<Conn> conn) {
  std::lock_guard<std::mutex> l(mu_);
  if (shutdown_) return;  // conn closes here
  if (conns_.size() >= static_cast<size_t>(options_.max_connections)) {
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
        "charset=utf-8\r\nConnection: close\r\nContent-Length: 24\r\n\r\n"
        "503 too many connections";
    conn->Write(kBusy, 1000);
    return;
  }
  uint64_t id = next_id_++;
  Conn* c = conn.get();
  conns_.emplace(id, std::move(conn));
  std::thread([this, id, c] { Run(id, c); }).detach();
}

void Server::Shutdown() {
  std::unique_lock<std::mutex> l(mu_);
  shutdown_ = true;
  for (auto& [id, c] : conns_) c->Abort();
  cv_.wait(l, [this] { return conns_.empty(); });
}

void Server::Run(uint64_t id, Conn* conn) {
  RequestParser parser(options_.limits);
  std::string buf;
  size_t off = 0;
  bool continue_sent = false;
  std::vector<char> tmp(64 * 1024);
  for (bool open = true; open;) {
    // Answer every complete request buffered (pipelining), in order.
    for (;;) {
      size_t used = 0;
      auto st = parser.Consume(std::string_view(buf).substr(off), &used);
      off += used;
      if (st == RequestParser::State::kNeedMore) break;
      if (st == RequestParser::State::kError) {
        int status = parser.error_status();
        std::string body = std::to_string(status) + " ";
        body += StatusText(status);
        body += ": " + parser.error_reason();
        std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
        out += StatusText(status);
        out += "\r\nContent-Type: text/plain; charset=utf-8\r\n";
        out += "Connection: close\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
        conn->Write(out, options_.write_timeout_ms);
        // Closing with unread request bytes would reset the connection,
        // and the client could lose the answer: end our side, then read
        // (and drop) what the client still sends, for a while.
        conn->CloseWrite();
        size_t drained = 0;
        for (ssize_t n = 1; n > 0 && drained < (4u << 20); drained += n) {
          n = conn->Read(tmp.data(), tmp.size(), 500);
        }
        open = false;
        break;
      }
      Request req = parser.TakeRequest();
      continue_sent = false;
      ResponseWriter w(conn, req, options_.write_timeout_ms);
      router_->Dispatch(req, w);
      w.Finish();
      if (w.must_close()) {
        open = false;
        break;
      }
    }
    if (!open) break;
    if (parser.WantsContinue() && !continue_sent) {
      continue_sent = true;
      if (!conn->Write("HTTP/1.1 100 Continue\r\n\r\n",
                       options_.write_timeout_ms)) {
        break;
      }
    }
    buf.erase(0, off);
    off = 0;
    ssize_t n = conn->Read(tmp.data(), tmp.size(),
                           parser.InRequest() ? options_.read_timeout_ms
                                              : options_.idle_timeout_ms);
    if (n <= 0) break;
    buf.append(tmp.data(), static_cast<size_t>(n));
  }
  std::lock_guard<std::mutex> l(mu_);
  conns_.erase(id);  // closes the connection
  cv_.notify_all();
}

}  // namespace keel::http
