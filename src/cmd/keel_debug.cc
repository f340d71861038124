#include "cmd/keel_debug.h"

#include <cstdio>
#include <string>

#include "mvcc/store.h"

namespace keel::cmd {

int DebugMain(int argc, char** argv) {
  if (argc != 6 || std::string(argv[2]) != "put-local" ||
      std::string(argv[3]).rfind("--data-dir=", 0) != 0) {
    std::fprintf(stderr,
                 "usage: keel debug put-local --data-dir=DIR KEY VALUE\n"
                 "  TEST ONLY: writes KEY=VALUE into a stopped member's store "
                 "behind Raft's back,\n  making it differ from its peers (to "
                 "exercise the corruption check).\n");
    return 2;
  }
  const std::string dir =
      std::string(argv[3]).substr(std::string("--data-dir=").size()) +
      "/member/kv";
  auto store = mvcc::Store::Open(dir, mvcc::StoreOptions{});
  if (!store.ok()) {
    std::fprintf(stderr, "Error: %s\n", store.status().message().c_str());
    return 1;
  }
  mvcc::PutRequest r;
  r.key = argv[4];
  r.value = argv[5];
  auto res = (*store)->Put(r, (*store)->consistent_index());
  if (!res.ok()) {
    std::fprintf(stderr, "Error: %s\n", res.status().message().c_str());
    return 1;
  }
  Status st = (*store)->ForceCommit();
  if (!st.ok()) {
    std::fprintf(stderr, "Error: %s\n", st.message().c_str());
    return 1;
  }
  std::printf("wrote %s behind raft's back at revision %lld\n", argv[4],
              static_cast<long long>((*store)->CurrentRevision()));
  return 0;
}

}  // namespace keel::cmd
