# DIPC: the envelope every Ferry message travels in, and the messages of the port layer itself
# (liveness and the name service). Other domains (pm/, xmm/) define their own bodies in their
# own schemas; the envelope carries any of them as an AnyPointer tagged with its type id.
@0xb239b829574fca53;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::dipc::wire");

struct Envelope {
  requestId @0 :UInt64;          # chosen by the requester; a reply echoes it
  kind @1 :Kind;
  from @2 :Text;                 # sender's port name ("agent@n2")
  fromAddress @3 :Data;          # sender's fabric address, to reply to (empty on unix sockets)
  to @4 :Text;                   # destination port name
  callerUid @5 :UInt32;          # on whose behalf (a unix socket peer's uid is taken from SO_PEERCRED)
  bodyType @6 :UInt64;           # Cap'n Proto type id of the struct in `body`
  body @7 :AnyPointer;
  error @8 :Error;               # replies only: set when the request failed

  enum Kind {
    request @0;
    reply @1;
  }
}

struct Error {
  code @0 :UInt16;               # ferry::ErrorCode
  message @1 :Text;
}

struct Empty {}

# Liveness: every port answers Ping with Pong.
struct Ping {
  payload @0 :Data;              # echoed back
  delayMs @1 :UInt32;            # tests: answer only after this delay (bounded by the port)
}

struct Pong {
  payload @0 :Data;
  port @1 :Text;
  node @2 :Text;
  pid @3 :UInt32;
  uptimeMs @4 :UInt64;
  counters @5 :Counters;
}

struct Counters {
  received @0 :UInt64;           # messages decoded and authenticated
  sent @1 :UInt64;
  dropped @2 :UInt64;            # failed to decode (malformed, truncated, oversized)
  rejected @3 :UInt64;           # failed to authenticate (wrong key, tampered)
  timeouts @4 :UInt64;           # requests of ours that got no reply in time
  unreachable @5 :UInt64;        # requests of ours whose peer could not be reached
  replayed @6 :UInt64;           # authenticated, but already received, too old, or beyond the window
  late @7 :UInt64;               # replies to requests of ours no longer waiting (timed out)
}

# Name service (served by the master): ports register, heartbeat and resolve.
struct RegisterPort {
  name @0 :Text;                 # "agent@n2"
  node @1 :Text;                 # "n2"
  address @2 :Data;              # fabric address (opaque, provider-specific)
  addressText @3 :Text;          # for people: "127.0.0.3:40123"
  pid @4 :UInt32;
}

struct RegisterReply {
  heartbeatMs @0 :UInt32;        # how often the master expects a heartbeat
}

struct Heartbeat {
  name @0 :Text;
}

struct UnregisterPort {
  name @0 :Text;
}

struct Resolve {
  name @0 :Text;
}

struct ResolveReply {
  address @0 :Data;
  addressText @1 :Text;
}

# Ask a port to ping another port over the fabric (the CLI's `ferry ping` goes through its agent).
struct PingPort {
  target @0 :Text;
  count @1 :UInt32;
  payloadBytes @2 :UInt32;
}

struct PingPortReply {
  sent @0 :UInt32;
  answered @1 :UInt32;
  rttUs @2 :List(Float64);
  lastError @3 :Text;
}

# Fault injection (dipc/faults.h): served by every port on its control socket, root only.
struct SetFault {
  point @0 :Text;                # "offer", "page-reply", ...
  action @1 :Text;               # crash, drop, delay, duplicate
  delayMs @2 :UInt32;            # for delay
  count @3 :UInt32;              # firings; 0: every time
}

struct ClearFaults {
  point @0 :Text;                # empty: every rule
}

struct ListFaults {}

struct FaultList {
  port @0 :Text;
  points @1 :List(FaultPointInfo);
  struct FaultPointInfo {
    name @0 :Text;
    site @1 :Text;               # request-in, reply-in, reply-out, local
    description @2 :Text;
    armed @3 :Text;              # "" or "delay 200 ms x1"
  }
}
