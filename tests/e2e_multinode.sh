#!/usr/bin/env bash
# ctest-labels: mpi;slow
# graft launch across two "nodes": two network namespaces joined by a veth pair;
# mpirun runs inside the first and reaches the second through tests/tools/netns_rsh.sh
# (in place of ssh), with Open MPI's TCP traffic bound to the veth subnet. 4 ranks,
# 2 per node, must train to the same weights as one process. Skipped (77) where
# namespaces cannot be created (not root, no iproute2, no permission).
. "$(dirname "$0")/lib_e2e.sh"
. "$GRAFT_SOURCE_DIR/tests/tools/netns_nodes.sh"
cleanup() {
  nodes_down
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! nodes_up $$; then
  echo "SKIPPED: cannot create network namespaces here (needs root and iproute2)"
  exit 77
fi
net=$NET a=$NODE_A b=$NODE_B
cd "$tmp"
"$GRAFT" data fmnist --out tr --classes 0-4 --per-class 100 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: one
model: {arch: mlp, hidden: [32]}
data: {train: tr, batch_size: 40}
optim: {lr: 0.003}
train: {max_steps: 25, log_every: 5}
launch:
  np: 4
  hosts: ["$net.1:2", "$net.2:2"]
  threads_per_rank: 1
  env: {GRAFT_NETNS_MAP: "$net.1=$a,$net.2=$b"}
  mpirun_args: [--mca, plm_rsh_agent, "$GRAFT_SOURCE_DIR/tests/tools/netns_rsh.sh",
                --mca, oob_tcp_if_include, "$net.0/24", --mca, btl_tcp_if_include, "$net.0/24",
                --mca, btl, "tcp,self", --display-map]
YAML
"$GRAFT" train cfg.yaml >one.out 2>&1 || { bad "single process"; cat one.out; }
"$GRAFT" launch cfg.yaml experiment=two --dry-run >dry.out 2>&1
grep -q -- "-H $net.1:2,$net.2:2" dry.out && grep -q "OPENBLAS_NUM_THREADS=1" dry.out &&
  ok "dry run: $(cat dry.out)" || { bad "dry run"; cat dry.out; }
timeout 180 ip netns exec "$a" "$GRAFT" launch cfg.yaml experiment=two >two.out 2>&1
rc=$?
# --display-map lists each node with the ranks placed on it (the local one by hostname)
grep -q "Data for node: $(hostname).*Num procs: 2" two.out && grep -q "Data for node: $net.2.*Num procs: 2" two.out &&
  ok "2 ranks placed on each node" || { bad "rank placement"; grep -A3 "Data for node" two.out; }
if [ $rc -eq 0 ] && grep -q "all 4 replicas are bit-identical" two.out &&
  d=$(python3 "$GRAFT_SOURCE_DIR/tests/tools/compare_safetensors.py" runs/one/model.safetensors runs/two/model.safetensors --tol 3e-4); then
  ok "4 ranks on 2 nodes match one process: $d"
else
  bad "two-node run: exit $rc ${d:-}"; tail -20 two.out
fi
finish
