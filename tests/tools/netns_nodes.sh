# Two "nodes" on one machine for tests and benchmarks (sourced): network namespaces
# joined by a veth pair. mpirun runs inside the first and reaches the second through
# tests/tools/netns_rsh.sh (set as plm_rsh_agent), which reads GRAFT_NETNS_MAP.
#   nodes_up ID      creates graft-a-ID / graft-b-ID on 10.203.X.0/24; sets NODE_A,
#                    NODE_B (namespaces), NET (subnet prefix), GRAFT_NETNS_MAP, and
#                    MPI_NODE_ARGS (the mpirun arguments for Open MPI); 1 on failure
#   nodes_shape RATE  limits the link to RATE (e.g. 2gbit) in both directions (tbf)
#   nodes_down       removes them
nodes_up() {
  local id=$1
  NODE_A=graft-a-$id NODE_B=graft-b-$id NET=10.203.$((id % 200 + 20))
  ip netns add "$NODE_A" 2>/dev/null || return 1
  ip netns add "$NODE_B" &&
    ip link add "va$id" type veth peer name "vb$id" &&
    ip link set "va$id" netns "$NODE_A" && ip link set "vb$id" netns "$NODE_B" &&
    ip -n "$NODE_A" addr add "$NET.1/24" dev "va$id" && ip -n "$NODE_B" addr add "$NET.2/24" dev "vb$id" &&
    ip -n "$NODE_A" link set "va$id" up && ip -n "$NODE_B" link set "vb$id" up &&
    ip -n "$NODE_A" link set lo up && ip -n "$NODE_B" link set lo up || { nodes_down; return 1; }
  NODE_VETH_A=va$id NODE_VETH_B=vb$id
  export GRAFT_NETNS_MAP="$NET.1=$NODE_A,$NET.2=$NODE_B"
  MPI_NODE_ARGS=(--mca plm_rsh_agent "$(dirname "${BASH_SOURCE[0]}")/netns_rsh.sh"
    --mca oob_tcp_if_include "$NET.0/24" --mca btl_tcp_if_include "$NET.0/24" --mca btl tcp,self)
}

nodes_shape() {
  # TCP would restart slow start after every idle compute phase; a real cluster's
  # long-lived connections keep their window, so keep it here too
  ip netns exec "$NODE_A" sysctl -q -w net.ipv4.tcp_slow_start_after_idle=0 &&
    ip netns exec "$NODE_B" sysctl -q -w net.ipv4.tcp_slow_start_after_idle=0 &&
    ip netns exec "$NODE_A" tc qdisc add dev "$NODE_VETH_A" root tbf rate "$1" burst 256kb latency 10ms &&
    ip netns exec "$NODE_B" tc qdisc add dev "$NODE_VETH_B" root tbf rate "$1" burst 256kb latency 10ms
}

nodes_down() {
  [ -n "${NODE_A:-}" ] && ip netns del "$NODE_A" 2>/dev/null
  [ -n "${NODE_B:-}" ] && ip netns del "$NODE_B" 2>/dev/null
  return 0
}
