#include "http/parser.h"

#include <algorithm>
#include <cctype>

namespace keel::http {
namespace {

constexpr size_t kMaxChunkLine = 4096;

bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(c));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// The comma-separated tokens of a field value, lowercased and trimmed.
std::vector<std::string> Tokens(std::string_view v) {
  std::vector<std::string> out;
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view t = Trim(v.substr(0, comma));
    if (!t.empty()) out.push_back(Lower(t));
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

const std::string* Request::Header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return &v;
  }
  return nullptr;
}

std::string Request::QueryParam(std::string_view name, bool* present) const {
  if (present) *present = false;
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == name) {
      if (present) *present = true;
      return eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return "";
}

RequestParser::State RequestParser::Fail(int status, std::string reason) {
  error_status_ = status;
  error_reason_ = std::move(reason);
  return State::kError;
}

Request RequestParser::TakeRequest() {
  Request r = std::move(req_);
  req_ = Request();
  phase_ = Phase::kHeaders;
  head_.clear();
  line_.clear();
  remaining_ = 0;
  trailer_bytes_ = 0;
  expect_continue_ = false;
  started_ = false;
  return r;
}

bool RequestParser::TakeLine(std::string_view data, size_t* pos, size_t max_len,
                             bool* too_long) {
  *too_long = false;
  size_t lf = data.find('\n', *pos);
  size_t end = lf == std::string_view::npos ? data.size() : lf;
  line_.append(data.substr(*pos, end - *pos));
  *pos = lf == std::string_view::npos ? data.size() : lf + 1;
  if (line_.size() > max_len) {
    *too_long = true;
    return false;
  }
  if (lf == std::string_view::npos) return false;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  return true;
}

bool RequestParser::ParseHead() {
  // Split into lines (LF, with an optional CR before it).
  std::vector<std::string_view> lines;
  std::string_view h = head_;
  while (!h.empty()) {
    size_t lf = h.find('\n');
    std::string_view line = h.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (lf == std::string_view::npos) break;
    h.remove_prefix(lf + 1);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) {
    Fail(400, "empty request");
    return false;
  }

  // Request line: method SP request-target SP HTTP-version.
  std::string_view rl = lines[0];
  size_t sp1 = rl.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos ||
      rl.find(' ', sp2 + 1) != std::string_view::npos) {
    Fail(400, "malformed request line");
    return false;
  }
  std::string_view method = rl.substr(0, sp1);
  std::string_view target = rl.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = rl.substr(sp2 + 1);
  if (!IsToken(method)) {
    Fail(400, "invalid method");
    return false;
  }
  if (target.empty() || std::any_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    Fail(400, "invalid request target");
    return false;
  }
  if (version == "HTTP/1.1") {
    req_.version_minor = 1;
  } else if (version == "HTTP/1.0") {
    req_.version_minor = 0;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" &&
             std::isdigit(static_cast<unsigned char>(version[5])) &&
             version[6] == '.' &&
             std::isdigit(static_cast<unsigned char>(version[7]))) {
    Fail(505, "unsupported protocol version");
    return false;
  } else {
    Fail(400, "malformed HTTP version");
    return false;
  }
  req_.method = std::string(method);
  req_.target = std::string(target);
  std::string_view path = target;
  // Absolute form (as sent to proxies): keep the path.
  if (path.substr(0, 7) == "http://" || path.substr(0, 8) == "https://") {
    size_t slash = path.find('/', path.find("//") + 2);
    path = slash == std::string_view::npos ? "/" : path.substr(slash);
  } else if (path[0] != '/' && !(path == "*" && method == "OPTIONS")) {
    Fail(400, "invalid request target");
    return false;
  }
  size_t qm = path.find('?');
  req_.path = std::string(path.substr(0, qm));
  if (qm != std::string_view::npos)
    req_.query = std::string(path.substr(qm + 1));

  // Header fields.
  for (size_t i = 1; i < lines.size(); i++) {
    std::string_view line = lines[i];
    if (line.empty() || line[0] == ' ' || line[0] == '\t') {
      Fail(400, "malformed header line");  // obsolete line folding
      return false;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
      Fail(400, "malformed header line");
      return false;
    }
    std::string_view value = Trim(line.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) {
          return (static_cast<unsigned char>(c) < 0x20 && c != '\t') ||
                 c == 0x7f;
        })) {
      Fail(400, "invalid header value");
      return false;
    }
    req_.headers.emplace_back(Lower(line.substr(0, colon)), std::string(value));
  }

  // Host, connection, expectations, body framing.
  int hosts = 0;
  bool have_length = false, chunked = false, have_te = false;
  uint64_t length = 0;
  bool close = false, keep_alive = false;
  for (const auto& [name, value] : req_.headers) {
    if (name == "host") {
      hosts++;
    } else if (name == "connection") {
      for (const auto& t : Tokens(value)) {
        if (t == "close") close = true;
        if (t == "keep-alive") keep_alive = true;
      }
    } else if (name == "content-length") {
      if (value.empty() || value.size() > 18 ||
          !std::all_of(value.begin(), value.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c));
          })) {
        Fail(400, "bad Content-Length");
        return false;
      }
      uint64_t n = std::stoull(value);
      if (have_length && n != length) {
        Fail(400, "conflicting Content-Length");
        return false;
      }
      have_length = true;
      length = n;
    } else if (name == "transfer-encoding") {
      have_te = true;
      for (const auto& t : Tokens(value)) {
        if (t != "chunked" || chunked) {
          Fail(501, "unsupported transfer encoding");
          return false;
        }
        chunked = true;
      }
    } else if (name == "expect") {
      if (Lower(value) != "100-continue") {
        Fail(417, "unsupported expectation");
        return false;
      }
      expect_continue_ = true;
    }
  }
  if (req_.version_minor == 1 && hosts != 1) {
    Fail(400,
         hosts == 0 ? "missing required Host header" : "too many Host headers");
    return false;
  }
  if (have_te && have_length) {
    Fail(400, "both Transfer-Encoding and Content-Length");
    return false;
  }
  if (have_te && !chunked) {
    Fail(501, "unsupported transfer encoding");
    return false;
  }
  req_.keep_alive = req_.version_minor == 1 ? !close : (keep_alive && !close);
  if (chunked) {
    phase_ = Phase::kChunkSize;
  } else if (length > 0) {
    if (length > limits_.max_body_bytes) {
      Fail(413, "request body too large");
      return false;
    }
    req_.body.reserve(length);
    remaining_ = length;
    phase_ = Phase::kBody;
  } else {
    expect_continue_ = false;  // nothing to continue with
    phase_ = Phase::kDone;
  }
  return true;
}

RequestParser::State RequestParser::Consume(std::string_view data,
                                            size_t* used) {
  size_t pos = 0;
  bool too_long = false;
  State st = State::kNeedMore;
  while (st == State::kNeedMore &&
         (pos < data.size() || phase_ == Phase::kDone)) {
    switch (phase_) {
      case Phase::kHeaders: {
        while (pos < data.size()) {
          char c = data[pos++];
          // Blank lines before a request line are ignored (RFC 9112 2.2).
          if (head_.empty() && (c == '\r' || c == '\n')) continue;
          started_ = true;
          head_.push_back(c);
          if (head_.size() > limits_.max_header_bytes) {
            st = Fail(431, "request header too large");
            break;
          }
          size_t n = head_.size();
          if (c == '\n' &&
              ((n >= 2 && head_[n - 2] == '\n') ||
               (n >= 3 && head_[n - 2] == '\r' && head_[n - 3] == '\n'))) {
            if (!ParseHead()) st = State::kError;
            break;
          }
        }
        break;
      }
      case Phase::kBody: {
        size_t n = std::min<uint64_t>(remaining_, data.size() - pos);
        req_.body.append(data.substr(pos, n));
        pos += n;
        remaining_ -= n;
        if (remaining_ == 0) phase_ = Phase::kDone;
        break;
      }
      case Phase::kChunkSize: {
        if (!TakeLine(data, &pos, kMaxChunkLine, &too_long)) {
          if (too_long) st = Fail(400, "chunk size line too long");
          break;
        }
        std::string_view sz = line_;
        sz = Trim(sz.substr(0, sz.find(';')));  // chunk extensions ignored
        if (sz.empty() || sz.size() > 15 ||
            !std::all_of(sz.begin(), sz.end(), [](char c) {
              return std::isxdigit(static_cast<unsigned char>(c));
            })) {
          st = Fail(400, "malformed chunk size");
          break;
        }
        uint64_t n = std::stoull(std::string(sz), nullptr, 16);
        line_.clear();
        if (n == 0) {
          phase_ = Phase::kTrailers;
        } else if (req_.body.size() + n > limits_.max_body_bytes) {
          st = Fail(413, "request body too large");
        } else {
          remaining_ = n;
          phase_ = Phase::kChunkData;
        }
        break;
      }
      case Phase::kChunkData: {
        size_t n = std::min<uint64_t>(remaining_, data.size() - pos);
        req_.body.append(data.substr(pos, n));
        pos += n;
        remaining_ -= n;
        if (remaining_ == 0) phase_ = Phase::kChunkCrlf;
        break;
      }
      case Phase::kChunkCrlf: {
        // Exactly CRLF (or LF) after the chunk's bytes.
        char c = data[pos++];
        if (c == '\r' && line_.empty()) {
          line_ = "\r";
        } else if (c == '\n') {
          line_.clear();
          phase_ = Phase::kChunkSize;
        } else {
          st = Fail(400, "malformed chunk end");
        }
        break;
      }
      case Phase::kTrailers: {
        if (!TakeLine(data, &pos, limits_.max_header_bytes, &too_long)) {
          if (too_long) st = Fail(431, "request trailers too large");
          break;
        }
        trailer_bytes_ += line_.size();
        if (trailer_bytes_ > limits_.max_header_bytes) {
          st = Fail(431, "request trailers too large");
          break;
        }
        if (line_.empty()) phase_ = Phase::kDone;
        line_.clear();
        break;
      }
      case Phase::kDone:
        st = State::kDone;
        break;
    }
  }
  *used = pos;
  return st;
}

}  // namespace keel::http
