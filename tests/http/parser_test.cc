// RequestParser: well-formed requests in any split, pipelining, chunked
// bodies, and the status each kind of garbage or excess earns.
#include "http/parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace keel::http {
namespace {

struct Parsed {
  std::vector<Request> requests;
  int error = 0;  // status of a parse error, 0 if none
  bool need_more = false;
};

// Feeds input in pieces of `step` bytes (0: all at once).
Parsed Parse(std::string_view input, size_t step = 0, Limits limits = {}) {
  RequestParser p(limits);
  Parsed out;
  std::string buf;
  size_t fed = 0;
  size_t off = 0;
  for (;;) {
    size_t used = 0;
    auto st = p.Consume(std::string_view(buf).substr(off), &used);
    off += used;
    if (st == RequestParser::State::kDone) {
      out.requests.push_back(p.TakeRequest());
      continue;
    }
    if (st == RequestParser::State::kError) {
      out.error = p.error_status();
      return out;
    }
    if (fed == input.size()) break;
    size_t n =
        step == 0 ? input.size() - fed : std::min(step, input.size() - fed);
    buf.append(input.substr(fed, n));
    fed += n;
  }
  out.need_more = p.InRequest();
  return out;
}

TEST(HttpParser, SimpleGet) {
  auto r = Parse("GET /health?serializable=true HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(r.error, 0);
  ASSERT_EQ(r.requests.size(), 1u);
  const Request& q = r.requests[0];
  EXPECT_EQ(q.method, "GET");
  EXPECT_EQ(q.path, "/health");
  EXPECT_EQ(q.query, "serializable=true");
  EXPECT_EQ(q.QueryParam("serializable"), "true");
  EXPECT_EQ(*q.Header("host"), "x");
  EXPECT_TRUE(q.keep_alive);
  EXPECT_TRUE(q.body.empty());
}

TEST(HttpParser, BodyByContentLengthInEverySplit) {
  const std::string in =
      "POST /v3/kv/put HTTP/1.1\r\nHost: a\r\nContent-Type: application/json"
      "\r\nContent-Length: 11\r\n\r\n{\"key\":\"\"}\n";
  for (size_t step : {1, 2, 3, 7, 64}) {
    auto r = Parse(in, step);
    ASSERT_EQ(r.error, 0) << step;
    ASSERT_EQ(r.requests.size(), 1u) << step;
    EXPECT_EQ(r.requests[0].body, "{\"key\":\"\"}\n");
    EXPECT_EQ(*r.requests[0].Header("content-type"), "application/json");
  }
}

TEST(HttpParser, PipelinedRequestsKeepTheirOrderAndBodies) {
  const std::string in =
      "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nxy\r\n1;ext=1\r\nz\r\n0\r\nX-Trailer: t\r\n\r\n"
      "GET /d HTTP/1.0\r\n\r\n";
  for (size_t step : {0, 1, 5}) {
    auto r = Parse(in, step);
    ASSERT_EQ(r.error, 0);
    ASSERT_EQ(r.requests.size(), 4u);
    EXPECT_EQ(r.requests[0].path, "/a");
    EXPECT_EQ(r.requests[0].body, "abc");
    EXPECT_EQ(r.requests[1].path, "/b");
    EXPECT_EQ(r.requests[2].body, "xyz");
    EXPECT_EQ(r.requests[3].path, "/d");
    EXPECT_EQ(r.requests[3].version_minor, 0);
    EXPECT_FALSE(r.requests[3].keep_alive);  // HTTP/1.0 default
    EXPECT_FALSE(r.need_more);
  }
}

TEST(HttpParser, BareLineFeedsAndLeadingBlankLinesAreAccepted) {
  auto r = Parse("\r\n\nGET / HTTP/1.1\nHost: h\nConnection: close\n\n");
  ASSERT_EQ(r.error, 0);
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_FALSE(r.requests[0].keep_alive);
}

TEST(HttpParser, IncompleteRequestWaitsForMore) {
  auto r = Parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_EQ(r.error, 0);
  EXPECT_TRUE(r.requests.empty());
  EXPECT_TRUE(r.need_more);
}

TEST(HttpParser, ExpectContinue) {
  RequestParser p;
  size_t used = 0;
  std::string head =
      "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
      "Content-Length: 2\r\n\r\n";
  EXPECT_FALSE(p.WantsContinue());
  ASSERT_EQ(p.Consume(head, &used), RequestParser::State::kNeedMore);
  EXPECT_EQ(used, head.size());
  EXPECT_TRUE(p.WantsContinue());
  ASSERT_EQ(p.Consume("ok", &used), RequestParser::State::kDone);
  EXPECT_EQ(p.TakeRequest().body, "ok");
  EXPECT_FALSE(p.WantsContinue());
}

TEST(HttpParser, GarbageGetsA4xx) {
  struct Case {
    const char* input;
    int status;
  };
  const Case cases[] = {
      {"hello\r\n\r\n", 400},
      {"GET /\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET nopath HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/9.9\r\nHost: h\r\n\r\n", 505},
      {"GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},  // no Host
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
       "Content-Length: 2\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
       "Transfer-Encoding: chunked\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "zz\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "2\r\nabXX",
       400},
      {"GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", 417},
  };
  for (const Case& c : cases) {
    auto r = Parse(c.input);
    EXPECT_EQ(r.error, c.status) << c.input;
    auto r1 = Parse(c.input, 1);
    EXPECT_EQ(r1.error, c.status) << "byte by byte: " << c.input;
  }
}

TEST(HttpParser, OversizeHeadersAndBodies) {
  Limits small{.max_header_bytes = 256, .max_body_bytes = 16};
  std::string big_header =
      "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'a') + "\r\n\r\n";
  EXPECT_EQ(Parse(big_header, 0, small).error, 431);
  // No line end at all: refused once the limit is passed, not buffered on.
  EXPECT_EQ(Parse(std::string(1000, 'G'), 0, small).error, 431);
  EXPECT_EQ(Parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n", 0,
                  small)
                .error,
            413);
  std::string chunked =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "a\r\n0123456789\r\n7\r\n0123456\r\n0\r\n\r\n";
  EXPECT_EQ(Parse(chunked, 0, small).error, 413);
  EXPECT_EQ(Parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked"
                  "\r\n\r\n" +
                      std::string(5000, '1'),
                  0, small)
                .error,
            400);
  // Exactly at the limit is fine.
  auto ok = Parse(
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
      "16\r\n\r\n0123456789abcdef",
      0, small);
  EXPECT_EQ(ok.error, 0);
  ASSERT_EQ(ok.requests.size(), 1u);
}

TEST(HttpParser, AbsoluteFormTarget) {
  auto r = Parse("GET http://h:2379/version?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].path, "/version");
  EXPECT_EQ(r.requests[0].query, "x=1");
}

}  // namespace
}  // namespace keel::http
