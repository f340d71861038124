#include "metrics/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/check.h"

namespace keel::metrics {

// ---------------- Histogram ----------------

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i + 1 < bounds_.size(); i++) {
    KEEL_CHECK(bounds_[i] < bounds_[i + 1]) << "histogram bounds must increase";
  }
  for (size_t i = 0; i <= bounds_.size(); i++) counts_[i] = 0;
}

void Histogram::Observe(double v) {
  // Upper bounds are inclusive (le): the first bound >= v.
  size_t i =
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); i++) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  // The count is the +Inf bucket, so the two always agree in one scrape.
  s.count = total;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; i++) {
    b.push_back(v);
    v *= factor;
  }
  return b;
}

std::vector<double> DefaultBuckets() {
  return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
}

// ---------------- Registry ----------------

Registry& Registry::Default() {
  static Registry* r = new Registry();  // never destroyed: used at exit
  return *r;
}

template <typename T>
Family<T>& Registry::AddFamily(const std::string& name, const std::string& help,
                               Type type, std::vector<std::string> label_names,
                               std::function<std::unique_ptr<T>()> make) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end()) {
    KEEL_CHECK(it->second.type == type && it->second.family &&
               it->second.label_names == label_names)
        << "metric " << name << " registered twice with different shapes";
    return *static_cast<Family<T>*>(it->second.family.get());
  }
  Entry e;
  e.help = help;
  e.type = type;
  e.label_names = label_names;
  auto fam = std::shared_ptr<Family<T>>(
      new Family<T>(std::move(label_names), std::move(make)));
  Family<T>* raw = fam.get();
  e.family = std::move(fam);
  entries_.emplace(name, std::move(e));
  return *raw;
}

Counter& Registry::AddCounter(const std::string& name,
                              const std::string& help) {
  return AddCounterVec(name, help, {}).WithLabelValues({});
}

Gauge& Registry::AddGauge(const std::string& name, const std::string& help) {
  return AddGaugeVec(name, help, {}).WithLabelValues({});
}

Histogram& Registry::AddHistogram(const std::string& name,
                                  const std::string& help,
                                  std::vector<double> bounds) {
  return AddHistogramVec(name, help, {}, std::move(bounds)).WithLabelValues({});
}

Family<Counter>& Registry::AddCounterVec(const std::string& name,
                                         const std::string& help,
                                         std::vector<std::string> labels) {
  return AddFamily<Counter>(name, help, Type::kCounter, std::move(labels),
                            [] { return std::make_unique<Counter>(); });
}

Family<Gauge>& Registry::AddGaugeVec(const std::string& name,
                                     const std::string& help,
                                     std::vector<std::string> labels) {
  return AddFamily<Gauge>(name, help, Type::kGauge, std::move(labels),
                          [] { return std::make_unique<Gauge>(); });
}

Family<Histogram>& Registry::AddHistogramVec(const std::string& name,
                                             const std::string& help,
                                             std::vector<std::string> labels,
                                             std::vector<double> bounds) {
  return AddFamily<Histogram>(
      name, help, Type::kHistogram, std::move(labels),
      [bounds] { return std::make_unique<Histogram>(bounds); });
}

void Registry::AddCollector(const std::string& name, const std::string& help,
                            Type type,
                            std::function<std::vector<Sample>()> fn) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  KEEL_CHECK(it == entries_.end() || !it->second.family)
      << "metric " << name << " registered twice with different shapes";
  Entry& e = entries_[name];
  e.help = help;
  e.type = type;
  e.collect = std::move(fn);
}

void Registry::AddGaugeFunc(const std::string& name, const std::string& help,
                            std::function<double()> fn) {
  AddCollector(name, help, Type::kGauge, [fn = std::move(fn)] {
    return std::vector<Sample>{Sample{{}, fn()}};
  });
}

void Registry::AddCounterFunc(const std::string& name, const std::string& help,
                              std::function<double()> fn) {
  AddCollector(name, help, Type::kCounter, [fn = std::move(fn)] {
    return std::vector<Sample>{Sample{{}, fn()}};
  });
}

void Registry::RemoveFunc(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end() && it->second.collect) entries_.erase(it);
}

// ---------------- exposition ----------------

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

namespace {

// HELP text: backslash and newline escaped.
std::string EscapeHelp(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Label values: backslash, double quote and newline escaped.
std::string EscapeLabel(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

using Labels = std::vector<std::pair<std::string, std::string>>;

void WriteSample(std::string* out, const std::string& name,
                 const Labels& labels, double value) {
  *out += name;
  if (!labels.empty()) {
    *out += '{';
    for (size_t i = 0; i < labels.size(); i++) {
      if (i) *out += ',';
      *out += labels[i].first;
      *out += "=\"";
      *out += EscapeLabel(labels[i].second);
      *out += '"';
    }
    *out += '}';
  }
  *out += ' ';
  *out += FormatValue(value);
  *out += '\n';
}

Labels Zip(const std::vector<std::string>& names,
           const std::vector<std::string>& values) {
  Labels l;
  for (size_t i = 0; i < names.size() && i < values.size(); i++) {
    l.emplace_back(names[i], values[i]);
  }
  return l;
}

template <typename T>
void ExposeScalars(
    std::string* out, const std::string& name,
    const std::vector<std::string>& names,
    const std::map<std::vector<std::string>, std::unique_ptr<T>>& children) {
  for (const auto& [values, child] : children) {
    WriteSample(out, name, Zip(names, values), child->Value());
  }
}

void ExposeHistogram(std::string* out, const std::string& name,
                     const Labels& labels, const Histogram& h) {
  Histogram::Snapshot s = h.Take();
  const auto& bounds = h.bounds();
  for (size_t i = 0; i <= bounds.size(); i++) {
    Labels l = labels;
    l.emplace_back("le", i < bounds.size() ? FormatValue(bounds[i]) : "+Inf");
    WriteSample(out, name + "_bucket", l, static_cast<double>(s.cumulative[i]));
  }
  WriteSample(out, name + "_sum", labels, s.sum);
  WriteSample(out, name + "_count", labels, static_cast<double>(s.count));
}

}  // namespace

std::string Registry::Expose() const {
  // Callbacks run without mu_ held, so copy what is needed first.
  struct Item {
    std::string name;
    Entry entry;
  };
  std::vector<Item> items;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, e] : entries_) items.push_back({name, e});
  }
  std::string out;
  for (const Item& it : items) {
    const Entry& e = it.entry;
    std::string body;
    if (e.collect) {
      std::vector<Sample> samples = e.collect();
      std::sort(
          samples.begin(), samples.end(),
          [](const Sample& a, const Sample& b) { return a.labels < b.labels; });
      for (const Sample& s : samples) {
        WriteSample(&body, it.name, s.labels, s.value);
      }
    } else if (e.type == Type::kCounter) {
      auto* fam = static_cast<Family<Counter>*>(e.family.get());
      std::lock_guard lock(fam->mu_);
      ExposeScalars(&body, it.name, e.label_names, fam->children_);
    } else if (e.type == Type::kGauge) {
      auto* fam = static_cast<Family<Gauge>*>(e.family.get());
      std::lock_guard lock(fam->mu_);
      ExposeScalars(&body, it.name, e.label_names, fam->children_);
    } else {
      auto* fam = static_cast<Family<Histogram>*>(e.family.get());
      std::lock_guard lock(fam->mu_);
      for (const auto& [values, child] : fam->children_) {
        ExposeHistogram(&body, it.name, Zip(e.label_names, values), *child);
      }
    }
    // A family with no child yet (a vector nobody used) is left out, as
    // client_golang does.
    if (body.empty()) continue;
    out += "# HELP " + it.name + " " + EscapeHelp(e.help) + "\n";
    out += "# TYPE " + it.name + " " + TypeName(e.type) + "\n";
    out += body;
  }
  return out;
}

// ---------------- process metrics ----------------

namespace {

struct ProcStat {
  double cpu_seconds = 0;
  double start_time_seconds = 0;
  double virtual_bytes = 0;
  double resident_bytes = 0;
};

// /proc/self/stat: fields after the parenthesised command name.
bool ReadProcStat(ProcStat* ps) {
  std::ifstream f("/proc/self/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream in(line.substr(close + 2));
  std::vector<std::string> fields;
  std::string tok;
  while (in >> tok) fields.push_back(tok);
  // fields[0] is field 3 (state); utime is field 14, stime 15, starttime
  // 22, vsize 23, rss 24 (in pages).
  auto field = [&](int n) -> double {
    size_t i = static_cast<size_t>(n - 3);
    return i < fields.size() ? std::strtod(fields[i].c_str(), nullptr) : 0;
  };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  ps->cpu_seconds = (field(14) + field(15)) / ticks;
  ps->virtual_bytes = field(23);
  ps->resident_bytes = field(24) * page;
  // starttime is in ticks since boot; btime in /proc/stat is the boot time.
  std::ifstream st("/proc/stat");
  double btime = 0;
  while (std::getline(st, line)) {
    if (line.rfind("btime ", 0) == 0) {
      btime = std::strtod(line.c_str() + 6, nullptr);
      break;
    }
  }
  ps->start_time_seconds = btime + field(22) / ticks;
  return true;
}

double OpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  double n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n - 1;  // the directory stream's own descriptor
}

double MaxFds() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  return rl.rlim_cur == RLIM_INFINITY ? INFINITY
                                      : static_cast<double>(rl.rlim_cur);
}

double MaxVirtual() {
  rlimit rl{};
  if (getrlimit(RLIMIT_AS, &rl) != 0) return 0;
  // client_golang reports "unlimited" as the largest uint64 (~1.8e19).
  return rl.rlim_cur == RLIM_INFINITY ? 18446744073709551615.0
                                      : static_cast<double>(rl.rlim_cur);
}

}  // namespace

void RegisterProcessMetrics(Registry& r) {
  // The start time does not change: read it once.
  static const double start = [] {
    ProcStat ps;
    ReadProcStat(&ps);
    return ps.start_time_seconds;
  }();
  auto stat = [](double ProcStat::*field) {
    return [field] {
      ProcStat ps;
      ReadProcStat(&ps);
      return ps.*field;
    };
  };
  r.AddCounterFunc("process_cpu_seconds_total",
                   "Total user and system CPU time spent in seconds.",
                   stat(&ProcStat::cpu_seconds));
  r.AddGaugeFunc("process_resident_memory_bytes",
                 "Resident memory size in bytes.",
                 stat(&ProcStat::resident_bytes));
  r.AddGaugeFunc("process_virtual_memory_bytes",
                 "Virtual memory size in bytes.",
                 stat(&ProcStat::virtual_bytes));
  r.AddGaugeFunc("process_virtual_memory_max_bytes",
                 "Maximum amount of virtual memory available in bytes.",
                 MaxVirtual);
  r.AddGaugeFunc("process_start_time_seconds",
                 "Start time of the process since unix epoch in seconds.",
                 [] { return start; });
  r.AddGaugeFunc("process_open_fds", "Number of open file descriptors.",
                 OpenFds);
  r.AddGaugeFunc("process_max_fds", "Maximum number of open file descriptors.",
                 MaxFds);
  // etcd's own names for the same (pkg/runtime), which its dashboards use.
  r.AddGaugeFunc("os_fd_used", "The number of used file descriptors.", OpenFds);
  r.AddGaugeFunc("os_fd_limit", "The file descriptor limit.", MaxFds);
}

}  // namespace keel::metrics
