# Process management messages: the master's view of the cluster (and, with the migration
# issue, the process table and the migration protocol).
@0xca08ad55ae73bf8a;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::pm::wire");

struct ListNodes {}

struct NodeList {
  nodes @0 :List(NodeInfo);
  heartbeatMs @1 :UInt32;
  suspectMs @2 :UInt32;
  deadMs @3 :UInt32;
}

enum NodeState {
  alive @0;       # every port of the node heartbeats on time
  suspect @1;     # some port missed heartbeats for longer than suspectMs
  dead @2;        # some port has not been heard from for longer than deadMs
}

struct NodeInfo {
  name @0 :Text;
  address @1 :Text;              # the node's agent, "127.0.0.3:40123"
  state @2 :NodeState;
  heartbeatAgeMs @3 :UInt64;     # since the node's least recently heard port
  ports @4 :List(PortInfo);
}

struct PortInfo {
  name @0 :Text;
  address @1 :Text;
  pid @2 :UInt32;
  heartbeatAgeMs @3 :UInt64;
}
