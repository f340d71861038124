// Logging: spdlog with etcd's levels, output targets and two line formats.
//
//   --log-format=console (default): one human-readable line per event,
//     2026-11-22T01:56:37.135Z	INFO	server/raft_node.cc:310	msg
//     {"k":"v"}
//   --log-format=json: one JSON object per line, as etcd's zap logger
//     writes them:
//     {"level":"info","ts":"2026-11-22T01:56:37.135Z","caller":"...",
//      "msg":"...","k":"v"}
//
// Notable events carry their facts as fields, under the keys etcd uses, so
// that log searches written for etcd find them:
//
//   KEEL_LOG_WARN("slow fdatasync", log::F("took", took),
//                 log::F("expected-duration", std::chrono::seconds(1)));
//
// Plain spdlog::info(...) calls keep working (a line without fields).
//
// Thread safety: the macros may be called from any thread; Configure()
// once at startup, before other threads log.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace keel::log {

// One key and its value, already encoded as JSON.
struct Field {
  std::string key;
  std::string json;
};

using keel::JsonString;  // common/json.h
// Go's time.Duration.String() ("1.5s", "12.3456ms", "800µs"), which is how
// etcd's logs show durations.
std::string GoDuration(std::chrono::nanoseconds d);

inline Field F(std::string key, std::string_view v) {
  return {std::move(key), JsonString(v)};
}
inline Field F(std::string key, const char* v) {
  return F(std::move(key), std::string_view(v));
}
inline Field F(std::string key, const std::string& v) {
  return F(std::move(key), std::string_view(v));
}
inline Field F(std::string key, bool v) {
  return {std::move(key), v ? "true" : "false"};
}
template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> &&
                                                  !std::is_same_v<T, bool>>>
Field F(std::string key, T v) {
  return {std::move(key), fmt::format("{}", v)};
}
template <typename Rep, typename Period>
Field F(std::string key, std::chrono::duration<Rep, Period> d) {
  return F(std::move(key),
           GoDuration(std::chrono::duration_cast<std::chrono::nanoseconds>(d)));
}
// A list of strings (URLs): a JSON array.
Field F(std::string key, const std::vector<std::string>& v);
// A member id, as etcd prints them: 16 hex digits, no 0x.
Field Id(std::string key, uint64_t id);

// Joins the message and the fields into the payload the formatters split.
std::string Render(std::string_view msg, std::initializer_list<Field> fields);

// Sets up the default logger from etcd's flags: level (debug, info, warn,
// error, panic, fatal), format ("console" or "json"), outputs ("default",
// "stderr", "stdout", or file paths; "default" is stderr).
Status Configure(const std::string& level, const std::string& format,
                 const std::vector<std::string>& outputs);

}  // namespace keel::log

#define KEEL_LOG_AT(lvl, msg, ...)                                             \
  do {                                                                         \
    auto* keel_log_l = spdlog::default_logger_raw();                           \
    if (keel_log_l->should_log(lvl)) {                                         \
      keel_log_l->log(spdlog::source_loc{__FILE__, __LINE__, SPDLOG_FUNCTION}, \
                      lvl, "{}", ::keel::log::Render(msg, {__VA_ARGS__}));     \
    }                                                                          \
  } while (0)
#define KEEL_LOG_DEBUG(msg, ...) \
  KEEL_LOG_AT(spdlog::level::debug, msg, __VA_ARGS__)
#define KEEL_LOG_INFO(msg, ...) \
  KEEL_LOG_AT(spdlog::level::info, msg, __VA_ARGS__)
#define KEEL_LOG_WARN(msg, ...) \
  KEEL_LOG_AT(spdlog::level::warn, msg, __VA_ARGS__)
#define KEEL_LOG_ERROR(msg, ...) \
  KEEL_LOG_AT(spdlog::level::err, msg, __VA_ARGS__)
