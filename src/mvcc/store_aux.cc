// Store::PutAux/GetAux: named server blobs in the meta column family (see
// store.h), written in one batch with the applied index.
#include "mvcc/kv_codec.h"
#include "mvcc/store.h"
#include "mvcc/store_internal.h"

namespace keel::mvcc {
namespace {

std::string AuxKey(std::string_view name) { return "aux/" + std::string(name); }

}  // namespace

Status Store::PutAux(std::string_view name, std::string_view value,
                     ConsistentIndex ci) {
  std::lock_guard wl(write_mu_);
  std::unique_lock l(mu_);
  PendingWrite w{&state_->index, state_->current_rev, ci, {}, {}};
  w.meta_writes.emplace_back(AuxKey(name), std::string(value));
  return Commit(&w);
}

Result<std::string> Store::GetAux(std::string_view name) const {
  std::shared_lock l(mu_);
  std::string v;
  KEEL_RETURN_IF_ERROR(backend_->GetMeta(AuxKey(name), &v));
  return v;
}

}  // namespace keel::mvcc
