#include "server/lessor.h"

#include <algorithm>

#include "api/errors.h"

namespace keel::server {

namespace {

Status EtcdErr(const api::EtcdError& e) {
  return Status::FailedPrecondition(e.message);
}

Lessor::TimePoint ExpiryAfter(Lessor::TimePoint now, int64_t seconds,
                              std::chrono::milliseconds extend) {
  // A TTL of up to 9e9 s fits steady_clock's nanoseconds (292 years) only
  // barely from a large epoch; clamp instead of overflowing.
  const auto left = Lessor::TimePoint::max() - now;
  const auto want = std::chrono::duration_cast<Lessor::Clock::duration>(
                        std::chrono::seconds(seconds)) +
                    extend;
  return want >= left ? Lessor::TimePoint::max() : now + want;
}

}  // namespace

int64_t MinLeaseTTLSeconds(int election_ms, int heartbeat_ms) {
  heartbeat_ms = std::max(1, heartbeat_ms);
  const int64_t ticks = std::max(1, election_ms / heartbeat_ms);
  const int64_t ms = (3 * ticks / 2) * heartbeat_ms;
  return (ms + 999) / 1000;
}

void Lessor::SetExpiry(int64_t id, Lease* le, TimePoint expiry) {
  if (le->expiry != TimePoint::max()) by_expiry_.erase({le->expiry, id});
  le->expiry = expiry;
  if (expiry != TimePoint::max()) by_expiry_.insert({expiry, id});
}

void Lessor::Reset(const std::vector<mvcc::LeaseRecord>& leases,
                   TimePoint now) {
  std::lock_guard l(mu_);
  leases_.clear();
  by_expiry_.clear();
  for (const auto& rec : leases) {
    Lease& le = leases_[rec.id];
    le.ttl = rec.ttl;
    le.remaining_ttl = rec.remaining_ttl;
    // A primary that restores (not normally: leaders send snapshots) keeps
    // deciding expiry, from a full TTL.
    if (primary_) {
      SetExpiry(rec.id, &le,
                ExpiryAfter(now, le.ttl, std::chrono::milliseconds(0)));
    }
  }
}

bool Lessor::Exists(int64_t id) const {
  std::lock_guard l(mu_);
  return leases_.count(id) != 0;
}

Result<int64_t> Lessor::CheckGrant(int64_t id, int64_t ttl) const {
  if (id == 0) return EtcdErr(api::kErrLeaseNotFound);
  if (ttl > kMaxTTL) return EtcdErr(api::kErrLeaseTTLTooLarge);
  std::lock_guard l(mu_);
  if (leases_.count(id)) return EtcdErr(api::kErrLeaseExist);
  return std::max(ttl, min_ttl_s_);
}

void Lessor::Add(const mvcc::LeaseRecord& rec, TimePoint now) {
  std::lock_guard l(mu_);
  Lease& le = leases_[rec.id];
  le.ttl = rec.ttl;
  le.remaining_ttl = rec.remaining_ttl;
  SetExpiry(rec.id, &le,
            primary_ ? ExpiryAfter(now, le.ttl, std::chrono::milliseconds(0))
                     : TimePoint::max());
}

void Lessor::Remove(int64_t id) {
  std::lock_guard l(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  SetExpiry(id, &it->second, TimePoint::max());
  leases_.erase(it);
}

bool Lessor::primary() const {
  std::lock_guard l(mu_);
  return primary_;
}

void Lessor::Promote(TimePoint now, std::chrono::milliseconds extend) {
  std::lock_guard l(mu_);
  primary_ = true;
  for (auto& [id, le] : leases_) {
    const int64_t ttl = le.remaining_ttl > 0 ? le.remaining_ttl : le.ttl;
    SetExpiry(id, &le, ExpiryAfter(now, ttl, extend));
    le.revoke_asked = TimePoint::min();
  }
}

void Lessor::Demote() {
  std::lock_guard l(mu_);
  primary_ = false;
  for (auto& [id, le] : leases_) le.expiry = TimePoint::max();
  by_expiry_.clear();
}

std::optional<int64_t> Lessor::Renew(int64_t id, TimePoint now) {
  std::lock_guard l(mu_);
  if (!primary_) return std::nullopt;
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.expiry <= now) return 0;
  it->second.remaining_ttl = 0;
  SetExpiry(id, &it->second,
            ExpiryAfter(now, it->second.ttl, std::chrono::milliseconds(0)));
  return it->second.ttl;
}

std::optional<Lessor::Info> Lessor::Lookup(int64_t id, TimePoint now) const {
  std::lock_guard l(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  Info info;
  info.id = id;
  info.granted_ttl = it->second.ttl;
  if (it->second.expiry == TimePoint::max()) {
    info.remaining_s = it->second.ttl;
  } else {
    info.remaining_s = std::chrono::duration_cast<std::chrono::seconds>(
                           it->second.expiry - now)
                           .count();
  }
  return info;
}

std::vector<int64_t> Lessor::Ids() const {
  std::lock_guard l(mu_);
  std::vector<std::pair<TimePoint, int64_t>> order;
  order.reserve(leases_.size());
  for (const auto& [id, le] : leases_) order.emplace_back(le.expiry, id);
  std::sort(order.begin(), order.end());
  std::vector<int64_t> out;
  out.reserve(order.size());
  for (const auto& [expiry, id] : order) out.push_back(id);
  return out;
}

std::vector<int64_t> Lessor::Expired(TimePoint now, size_t max,
                                     std::chrono::milliseconds retry) {
  std::lock_guard l(mu_);
  std::vector<int64_t> out;
  if (!primary_) return out;
  for (const auto& [expiry, id] : by_expiry_) {
    if (out.size() >= max || expiry > now) break;
    Lease& le = leases_.at(id);
    if (le.revoke_asked != TimePoint::min() && now - le.revoke_asked < retry) {
      continue;
    }
    le.revoke_asked = now;
    out.push_back(id);
  }
  return out;
}

}  // namespace keel::server
