#include "http/tls_conn.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>

namespace keel::http {
namespace {

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = "http/1.1";
  for (unsigned int i = 0; i < inlen;) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 8 && std::string_view(reinterpret_cast<const char*>(in + i + 1),
                                     len) == "http/1.1") {
      *out = kHttp11;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

TlsConn::TlsConn(int fd, SSL_CTX* ctx, std::function<bool(SSL*)> check)
    : fd_(fd), ssl_(SSL_new(ctx)), check_(std::move(check)) {
  int flags = fcntl(fd_, F_GETFL, 0);
  if (flags >= 0) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  if (ssl_ != nullptr) {
    SSL_set_fd(ssl_, fd_);
    SSL_set_accept_state(ssl_);
  } else {
    failed_ = true;
  }
}

TlsConn::~TlsConn() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  close(fd_);
}

bool TlsConn::Wait(int r, int timeout_ms) {
  int err = SSL_get_error(ssl_, r);
  short events;
  if (err == SSL_ERROR_WANT_READ) {
    events = POLLIN;
  } else if (err == SSL_ERROR_WANT_WRITE) {
    events = POLLOUT;
  } else {
    ERR_clear_error();
    return false;
  }
  int ev = PollOne(fd_, events, timeout_ms);
  return ev > 0 && !(ev & POLLNVAL);
}

bool TlsConn::Handshake(int timeout_ms) {
  if (handshaken_) return true;
  if (failed_) return false;
  for (;;) {
    int r = SSL_do_handshake(ssl_);
    if (r == 1) break;
    if (!Wait(r, timeout_ms)) {
      failed_ = true;
      return false;
    }
  }
  if (check_ && !check_(ssl_)) {
    failed_ = true;
    return false;
  }
  handshaken_ = true;
  return true;
}

ssize_t TlsConn::Read(char* buf, size_t n, int timeout_ms) {
  if (!Handshake(timeout_ms)) return -1;
  for (;;) {
    int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(n, INT_MAX)));
    if (r > 0) return r;
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;  // close_notify
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      return 0;  // the client closed without close_notify: end of stream
    }
    if (!Wait(r, timeout_ms)) return -1;
  }
}

bool TlsConn::Write(std::string_view data, int timeout_ms) {
  if (!Handshake(timeout_ms)) return false;
  while (!data.empty()) {
    int r = SSL_write(ssl_, data.data(),
                      static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
    if (r > 0) {
      data.remove_prefix(static_cast<size_t>(r));
      continue;
    }
    if (!Wait(r, timeout_ms)) return false;
  }
  return true;
}

bool TlsConn::WaitPeerGone(int timeout_ms, int wake_fd) {
  // The TLS state is not touched, so another thread may write meanwhile.
  return WaitSocketClosed(fd_, timeout_ms, wake_fd);
}

void TlsConn::Abort() { shutdown(fd_, SHUT_RDWR); }

void TlsConn::CloseWrite() {
  if (handshaken_) (void)SSL_shutdown(ssl_);  // close_notify, not waited for
  shutdown(fd_, SHUT_WR);
}

void PreferHttp11(SSL_CTX* ctx) {
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
}

HelloScan PeekClientHelloAlpn(std::string_view b,
                              std::vector<std::string>* alpn) {
  alpn->clear();
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(b[i]); };
  if (b.empty()) return HelloScan::kNeedMore;
  if (u8(0) != 0x16) return HelloScan::kNotTls;  // handshake record
  if (b.size() < 5) return HelloScan::kNeedMore;
  const size_t rec_len = (size_t{u8(3)} << 8) | u8(4);
  if (b.size() < 5 + rec_len) return HelloScan::kNeedMore;
  // Within the first record: a ClientHello (type 1). One spread over
  // several records is left unscanned (no ALPN seen).
  std::string_view h = b.substr(5, rec_len);
  size_t i = 0;
  auto need = [&](size_t n) { return i + n <= h.size(); };
  auto get = [&](size_t at) { return static_cast<uint8_t>(h[at]); };
  if (!need(4) || get(0) != 1) return HelloScan::kNotTls;
  i = 4 + 2 + 32;  // header, client_version, random
  if (!need(1)) return HelloScan::kDone;
  i += 1 + get(i);  // session id
  if (!need(2)) return HelloScan::kDone;
  i += 2 + ((size_t{get(i)} << 8) | get(i + 1));  // cipher suites
  if (!need(1)) return HelloScan::kDone;
  i += 1 + get(i);  // compression methods
  if (!need(2)) return HelloScan::kDone;
  const size_t ext_end =
      std::min(h.size(), i + 2 + ((size_t{get(i)} << 8) | get(i + 1)));
  i += 2;
  while (i + 4 <= ext_end) {
    const size_t type = (size_t{get(i)} << 8) | get(i + 1);
    const size_t len = (size_t{get(i + 2)} << 8) | get(i + 3);
    i += 4;
    if (i + len > ext_end) break;
    if (type == 16 && len >= 2) {  // application_layer_protocol_negotiation
      size_t j = i + 2;
      const size_t end =
          std::min(i + len, i + 2 + ((size_t{get(i)} << 8) | get(i + 1)));
      while (j < end) {
        const size_t l = get(j);
        if (j + 1 + l > end) break;
        alpn->emplace_back(h.substr(j + 1, l));
        j += 1 + l;
      }
    }
    i += len;
  }
  return HelloScan::kDone;
}

}  // namespace keel::http

namespace keel::http {

void RelayToLoopback(int client_fd, uint16_t port) {
  int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (up < 0 || connect(up, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    spdlog::warn("client listener: cannot reach the local gRPC TLS port {}: {}",
                 port, std::strerror(errno));
    if (up >= 0) close(up);
    close(client_fd);
    return;
  }
  int one = 1;
  setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::thread([client_fd, up] {
    // Blocking sockets; poll both and copy what is readable. A half-close
    // is passed on; the relay ends when both directions ended or on error.
    for (int fd : {client_fd, up}) {
      int flags = fcntl(fd, F_GETFL, 0);
      if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    }
    pollfd p[2] = {{client_fd, POLLIN, 0}, {up, POLLIN, 0}};
    const int to[2] = {up, client_fd};
    bool open[2] = {true, true};
    std::vector<char> buf(64 * 1024);
    while (open[0] || open[1]) {
      for (int i = 0; i < 2; i++) p[i].fd = open[i] ? p[i].fd : -1;
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      bool failed = false;
      for (int i = 0; i < 2 && !failed; i++) {
        if (p[i].fd < 0 || p[i].revents == 0) continue;
        ssize_t n = read(p[i].fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          if (n < 0) failed = true;
          open[i] = false;
          shutdown(to[i], SHUT_WR);
          continue;
        }
        for (ssize_t off = 0; off < n && !failed;) {
          ssize_t w = send(to[i], buf.data() + off,
                           static_cast<size_t>(n - off), MSG_NOSIGNAL);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) failed = true;
          off += std::max<ssize_t>(w, 0);
        }
      }
      if (failed) break;
    }
    close(client_fd);
    close(up);
  }).detach();
}

}  // namespace keel::http
