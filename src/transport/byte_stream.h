// ByteSource and ByteSink: how snapshot payloads enter and leave the
// transport without ever being held in memory whole.
//
// The server implements both (typically over a file). The transport reads a
// source in chunks until it returns 0, and writes a sink chunk by chunk, then
// calls Finish() once, which must make the payload durable. A sink destroyed
// without a successful Finish() must abandon what it received (the stream
// failed or the transport stopped).
//
// Thread safety: the transport calls one object from one thread at a time
// (its snapshot worker thread); the calls may block on disk IO.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"

namespace keel::transport {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes into buf; 0 means the end of the payload.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status Write(std::string_view data) = 0;
  // Called once after the last Write; the payload is durable when it returns
  // OK. Only then is the kSnap message delivered to the Handler.
  virtual Status Finish() = 0;
};

}  // namespace keel::transport
