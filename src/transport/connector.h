// Connector: dials one peer URL and performs the dialler's half of the
// handshake (for https://, the TLS handshake and etcd's certificate checks;
// then send Hello, read and check HelloAck), within opts.dial_timeout.
//
// done(status, socket) runs exactly once on the io thread unless Cancel()
// was called first; on success the socket is ready for frames. A refusal by
// the listener comes back as FailedPrecondition naming the reason.
//
// Thread safety: io thread only.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "transport/context.h"
#include "transport/wire.h"

namespace keel::transport {

class Connector : public std::enable_shared_from_this<Connector> {
 public:
  using Done = std::function<void(Status, Stream)>;

  static std::shared_ptr<Connector> Start(Context* ctx, std::string url,
                                          Hello hello, Done done);
  // done will not run; the connection attempt is abandoned.
  void Cancel();

  Connector(Context* ctx, std::string url, Hello hello, Done done);

 private:
  void Run();
  void OnResolved(asio::ip::tcp::resolver::results_type results);
  void OnConnected();
  void OnTlsHandshake();
  void SendHello();
  void OnAck();
  // A failed step: `what` names it in the error.
  void Fail(const char* what, const asio::error_code& ec);
  void Finish(Status s);

  Context* const ctx_;
  const std::string url_;
  const Hello hello_;
  Done done_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::socket socket_;  // until connected
  std::optional<Stream> stream_;  // once connected
  std::string host_;
  bool tls_ = false;
  asio::steady_timer timer_;
  std::string out_;
  std::string in_;
  bool finished_ = false;
};

}  // namespace keel::transport
