#include "common/log.h"

#include <spdlog/formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstring>
#include <ctime>

namespace keel::log {
namespace {

// Separates the message from the pre-encoded fields in a payload.
constexpr char kFieldSep = '\x1f';

const char* LevelName(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "fatal";
    default:
      return "info";
  }
}

// zap's ISO8601 time, in UTC: 2026-11-22T01:56:37.135Z
void AppendTime(std::chrono::system_clock::time_point t, std::string* out) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs);
  std::time_t tt = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  *out += buf;
  *out += fmt::format(".{:03d}Z", static_cast<int>(ms.count()));
}

// "src/server/raft_node.cc" -> "server/raft_node.cc", as zap's short caller.
std::string Caller(const spdlog::source_loc& src) {
  if (src.empty()) return "";
  std::string_view f = src.filename;
  auto p = f.rfind("src/");
  if (p != std::string_view::npos) f.remove_prefix(p + 4);
  return fmt::format("{}:{}", f, src.line);
}

void Split(std::string_view payload, std::string_view* msg,
           std::string_view* fields) {
  auto p = payload.find(kFieldSep);
  if (p == std::string_view::npos) {
    *msg = payload;
    *fields = {};
  } else {
    *msg = payload.substr(0, p);
    *fields = payload.substr(p + 1);
  }
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& m,
              spdlog::memory_buf_t& dest) override {
    std::string_view msg, fields;
    Split(std::string_view(m.payload.data(), m.payload.size()), &msg, &fields);
    std::string line = "{\"level\":\"";
    line += LevelName(m.level);
    line += "\",\"ts\":\"";
    AppendTime(m.time, &line);
    line += '"';
    std::string caller = Caller(m.source);
    if (!caller.empty()) line += ",\"caller\":" + JsonString(caller);
    line += ",\"msg\":" + JsonString(msg);
    if (!fields.empty()) {
      line += ',';
      line += fields;
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// zap's console encoder: tab-separated time, level, caller, message, and
// the fields as one JSON object.
class ConsoleFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& m,
              spdlog::memory_buf_t& dest) override {
    std::string_view msg, fields;
    Split(std::string_view(m.payload.data(), m.payload.size()), &msg, &fields);
    std::string line;
    AppendTime(m.time, &line);
    line += '\t';
    std::string level = LevelName(m.level);
    for (char& c : level) c = static_cast<char>(std::toupper(c));
    line += level;
    std::string caller = Caller(m.source);
    if (!caller.empty()) line += "\t" + caller;
    line += '\t';
    line += msg;
    if (!fields.empty()) {
      line += "\t{";
      line += fields;
      line += '}';
    }
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<ConsoleFormatter>();
  }
};

}  // namespace

std::string GoDuration(std::chrono::nanoseconds d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string sign = ns < 0 ? "-" : "";
  uint64_t u = ns < 0 ? static_cast<uint64_t>(-ns) : static_cast<uint64_t>(ns);
  auto trim = [](std::string s) {
    if (s.find('.') != std::string::npos) {
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return s;
  };
  if (u < 1000) return sign + std::to_string(u) + "ns";
  if (u < 1000000) {
    return sign + trim(fmt::format("{}.{:03d}", u / 1000, u % 1000)) + "µs";
  }
  if (u < 1000000000) {
    return sign + trim(fmt::format("{}.{:06d}", u / 1000000, u % 1000000)) +
           "ms";
  }
  uint64_t secs = u / 1000000000;
  std::string frac =
      trim(fmt::format("{}.{:09d}", secs % 60, u % 1000000000)) + "s";
  if (secs < 60) return sign + frac;
  uint64_t mins = secs / 60;
  if (mins < 60) return sign + std::to_string(mins) + "m" + frac;
  return sign + std::to_string(mins / 60) + "h" + std::to_string(mins % 60) +
         "m" + frac;
}

Field F(std::string key, const std::vector<std::string>& v) {
  std::string json = "[";
  for (size_t i = 0; i < v.size(); i++) {
    if (i) json += ',';
    json += JsonString(v[i]);
  }
  json += ']';
  return {std::move(key), std::move(json)};
}

Field Id(std::string key, uint64_t id) {
  return F(std::move(key), fmt::format("{:x}", id));
}

std::string Render(std::string_view msg, std::initializer_list<Field> fields) {
  std::string out(msg);
  if (fields.size() == 0) return out;
  out += kFieldSep;
  bool first = true;
  for (const Field& f : fields) {
    if (!first) out += ',';
    first = false;
    out += JsonString(f.key);
    out += ':';
    out += f.json;
  }
  return out;
}

Status Configure(const std::string& level, const std::string& format,
                 const std::vector<std::string>& outputs) {
  spdlog::level::level_enum lvl;
  if (level == "debug") {
    lvl = spdlog::level::debug;
  } else if (level == "info") {
    lvl = spdlog::level::info;
  } else if (level == "warn") {
    lvl = spdlog::level::warn;
  } else if (level == "error") {
    lvl = spdlog::level::err;
  } else if (level == "panic" || level == "fatal") {
    lvl = spdlog::level::critical;
  } else {
    return Status::InvalidArgument("unknown log level: " + level);
  }
  std::unique_ptr<spdlog::formatter> formatter;
  if (format == "json") {
    formatter = std::make_unique<JsonFormatter>();
  } else if (format == "console") {
    formatter = std::make_unique<ConsoleFormatter>();
  } else {
    return Status::InvalidArgument("unknown log format: " + format +
                                   ", supported values: json, console");
  }
  std::vector<spdlog::sink_ptr> sinks;
  for (const std::string& o : outputs) {
    if (o == "default" || o == "stderr") {
      sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else if (o == "stdout") {
      sinks.push_back(std::make_shared<spdlog::sinks::stdout_sink_mt>());
    } else {
      try {
        sinks.push_back(
            std::make_shared<spdlog::sinks::basic_file_sink_mt>(o, false));
      } catch (const spdlog::spdlog_ex& e) {
        return Status::InvalidArgument("--log-outputs: cannot open " + o +
                                       ": " + e.what());
      }
    }
  }
  if (sinks.empty()) {
    sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }
  auto logger =
      std::make_shared<spdlog::logger>("keel", sinks.begin(), sinks.end());
  logger->set_formatter(std::move(formatter));
  logger->set_level(lvl);
  // Events are rare and must survive a crash that follows them.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return Status::OK();
}

}  // namespace keel::log
