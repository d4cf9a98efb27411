#!/bin/sh
# mpirun's remote-shell agent for tests that put "nodes" in network namespaces:
# instead of ssh HOST CMD, run CMD inside the namespace that GRAFT_NETNS_MAP gives for
# HOST ("10.203.7.1=graft-a,10.203.7.2=graft-b"). Used with --mca plm_rsh_agent.
while [ "${1#-}" != "$1" ]; do shift; done # options ssh would take
host=$1
shift
ns=$(printf '%s\n' "$GRAFT_NETNS_MAP" | tr ',' '\n' | sed -n "s/^$host=//p")
if [ -z "$ns" ]; then
  echo "netns_rsh: no namespace for host '$host' in GRAFT_NETNS_MAP" >&2
  exit 1
fi
exec ip netns exec "$ns" sh -c "$*"
