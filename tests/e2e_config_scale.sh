#!/usr/bin/env bash
# Config loading is linear in the config's size: a mapping of 100k keys, lists of a
# million entries and a 15 MB string load (and print back whole) in seconds; what is
# beyond the stated limits (files of 16 MiB or more, nesting deeper than 32 levels,
# anchors and aliases, so no "billion laughs") is refused with one line and exit 2.
# Each run is bounded by a generous timeout: a quadratic step would run past it.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
limit=100
python3 - <<'PY'
base = ("experiment: big\nmodel: {arch: mlp}\ndata: {train: d}\noptim: {lr: 0.1}\n"
        "train: {max_steps: 1}\n")
def write(name, text):
    with open(name, "w") as f:
        f.write(text)
n = 100000
env = "".join(f"    V{i}: x\n" for i in range(n))
write("env.yaml", base + "launch:\n  env:\n" + env)
write("env_dup.yaml", base + "launch:\n  env:\n" + env + "    V0: y\n")
write("hosts.yaml", base + "launch:\n  hosts: [" + ", ".join(f"h{i}:1" for i in range(1000000)) + "]\n")
write("globs.yaml", base + "freeze:\n  trainable: [" + ", ".join(f"l{i}.*" for i in range(1000000)) + "]\n")
write("schedule.yaml", base + "freeze:\n  schedule:\n" +
      "".join(f"    - {{at_step: {i}, trainable: ['a{i}']}}\n" for i in range(n)))
write("long.yaml", base.replace("train: d", "train: " + "a" * 15000000))
write("unknown.yaml", base + "".join(f"k{i}: 1\n" for i in range(n)))
write("deep_list.yaml", base + "x: " + "[" * 100000 + "]" * 100000 + "\n")
write("deep_map.yaml", base + "x: " + "{a: " * 100000 + "1" + "}" * 100000 + "\n")
write("laughs.yaml", base + "launch:\n  env: &a {A: x}\n  hosts: [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n")
write("huge.yaml", base + "# " + "x" * (17 << 20) + "\n")
PY

# loads_whole NAME FILE PATTERN: loads within the limit, and the printed config still
# holds its last entry (PATTERN): nothing was dropped on the way.
loads_whole() {
  local name=$1 file=$2 pattern=$3 start=$SECONDS rc
  timeout $limit "$GRAFT" train "$file" --print-config >"$tmp/printed" 2>"$tmp/err"
  rc=$?
  if [ $rc -eq 0 ] && grep -Fq -- "$pattern" "$tmp/printed"; then
    ok "$name: loaded and printed in $((SECONDS - start)) s"
  else
    bad "$name: exit $rc or '$pattern' missing from the printed config: $(head -c 300 "$tmp/err")"
  fi
}
loads_whole "100k environment variables" env.yaml "V99999: x"
loads_whole "a list of 1M hosts" hosts.yaml "h999999:1"
loads_whole "a list of 1M globs" globs.yaml "l999999.*"
loads_whole "100k schedule entries" schedule.yaml "at_step: 99999"
loads_whole "a 15 MB string" long.yaml "aaaaaaaaaa"

expect_bad_input "a duplicate among 100k keys" "env_dup.yaml:100008:5: launch.env.V0: duplicate key \(first at line 8\)" -- timeout $limit "$GRAFT" train env_dup.yaml --print-config
expect_bad_input "100k unknown keys" "unknown.yaml:6:1: k0: unknown key" -- timeout $limit "$GRAFT" train unknown.yaml --print-config
expect_bad_input "lists nested 100k deep" "deep_list.yaml:6:[0-9]+: nesting deeper than 32 levels" -- timeout $limit "$GRAFT" train deep_list.yaml --print-config
expect_bad_input "mappings nested 100k deep" "deep_map.yaml:6:[0-9]+: nesting deeper than 32 levels" -- timeout $limit "$GRAFT" train deep_map.yaml --print-config
expect_bad_input "billion laughs" "laughs.yaml:7:8: anchors and aliases are not supported" -- timeout $limit "$GRAFT" train laughs.yaml --print-config
expect_bad_input "a 17 MiB file" "huge.yaml: file too large \(a config file is at most 16 MiB\)" -- timeout $limit "$GRAFT" train huge.yaml --print-config
finish
