// HTTP/1.x request parsing: an incremental parser that takes bytes as they
// arrive (any split, pipelined requests back to back) and yields complete
// requests, or the 4xx/5xx status a malformed or oversized request earns.
//
// Accepted: HTTP/1.0 and HTTP/1.1; a body framed by Content-Length or by
// chunked Transfer-Encoding (trailers read and dropped); lines ending in
// CRLF or a bare LF (as Go's net/http, which etcd uses, accepts). Refused:
// header fields folded over lines, a Content-Length together with a
// Transfer-Encoding, conflicting Content-Lengths, other transfer codings,
// HTTP/1.1 without Host, and anything above the limits.
//
// Thread safety: none; one parser per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::http {

struct Limits {
  // Request line plus header fields (Go's http.DefaultMaxHeaderBytes).
  size_t max_header_bytes = 1 << 20;
  // The decoded body.
  size_t max_body_bytes = 8 << 20;
};

struct Request {
  std::string method;     // as sent: methods are case-sensitive
  std::string target;     // the request-target, e.g. "/health?serializable=1"
  std::string path;       // target before '?'
  std::string query;      // target after '?', without it
  int version_minor = 1;  // HTTP/1.<version_minor>
  // Field names lowercased, values with surrounding whitespace trimmed, in
  // the order received.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = true;  // the connection may carry another request

  // The first value of a field (name lowercased), or nullptr.
  const std::string* Header(std::string_view lower_name) const;
  // The value of a query parameter (not percent-decoded; etcd's parameters
  // need none), or "" when absent; *present says whether it was there.
  std::string QueryParam(std::string_view name, bool* present = nullptr) const;
};

class RequestParser {
 public:
  enum class State { kNeedMore, kDone, kError };

  explicit RequestParser(Limits limits = {}) : limits_(limits) {}

  // Consumes a prefix of data and reports how many bytes it used in *used.
  // kDone: a request is complete (TakeRequest()); the unused rest belongs
  // to the next request. kError: error_status()/error_reason() say why; the
  // connection must be answered and closed.
  State Consume(std::string_view data, size_t* used);

  // The completed request; resets the parser for the next one.
  Request TakeRequest();

  // The header section of the current request is complete and it asked
  // "Expect: 100-continue" with a body still to come.
  bool WantsContinue() const {
    return phase_ != Phase::kHeaders && expect_continue_;
  }
  // Some bytes of a request have been consumed (an idle connection has
  // none).
  bool InRequest() const { return started_; }

  int error_status() const { return error_status_; }
  const std::string& error_reason() const { return error_reason_; }

 private:
  enum class Phase {
    kHeaders,
    kBody,       // Content-Length bytes
    kChunkSize,  // a chunk-size line
    kChunkData,  // chunk bytes
    kChunkCrlf,  // the line end after chunk bytes
    kTrailers,   // trailer lines up to an empty line
    kDone,
  };

  State Fail(int status, std::string reason);
  // Parses head_ (the request line and header fields, without the blank
  // line); on success sets the body framing.
  bool ParseHead();
  // Takes one line (up to LF) from data into line_; true once complete.
  bool TakeLine(std::string_view data, size_t* pos, size_t max_len,
                bool* too_long);

  Limits limits_;
  Phase phase_ = Phase::kHeaders;
  Request req_;
  std::string head_;        // header section bytes so far
  std::string line_;        // a partial chunk-size or trailer line
  uint64_t remaining_ = 0;  // body or chunk bytes still to read
  size_t trailer_bytes_ = 0;
  bool expect_continue_ = false;
  bool started_ = false;
  int error_status_ = 0;
  std::string error_reason_;
};

}  // namespace keel::http
