// Sanity of the error table the API layer returns (src/api/errors.h). The
// codes and messages themselves are checked against a real etcd in
// etcd_wire_test.cc, for the errors a single member can be made to produce.
#include "api/errors.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <string_view>

namespace keel::api {
namespace {

TEST(EtcdErrors, MessagesAreEtcdsAndUnique) {
  std::set<std::string> seen;
  for (const EtcdError& e : kAllEtcdErrors) {
    // etcd's client maps errors back by message, so all must carry etcd's
    // prefix and no two may share a message.
    EXPECT_EQ(std::string_view(e.message).substr(0, 12), "etcdserver: ")
        << e.message;
    EXPECT_TRUE(seen.insert(e.message).second) << e.message;
    EXPECT_NE(e.code, grpc::StatusCode::OK) << e.message;
  }
  EXPECT_EQ(seen.size(), 58u);
}

TEST(EtcdErrors, ToStatus) {
  grpc::Status s = ErrorStatus(kErrCompacted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(s.error_message(),
            "etcdserver: mvcc: required revision has been compacted");
  s = kErrNoLeader.ToStatus();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message(), "etcdserver: no leader");
}

}  // namespace
}  // namespace keel::api
