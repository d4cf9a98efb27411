#!/usr/bin/env bash
# Static analysis: cppcheck and clang-tidy over every C file of the compile database
# (runtime/, comm/, models/, launch/, tests/). Exits non-zero on any finding.
# Checks and their exclusions: .clang-tidy, tests/.clang-tidy, .cppcheck-suppressions;
# inline suppressions carry their reason on the same or the previous line.
# usage: scripts/lint.sh [BUILD_DIR] [JOBS]   (BUILD_DIR configured by cmake: `make lint`)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=${2:-2}
db="$build/compile_commands.json"
[ -f "$db" ] || { echo "lint: $db missing (configure with cmake first: make lint)" >&2; exit 2; }
tidy=$(command -v clang-tidy-14 || command -v clang-tidy) || {
  echo "lint: clang-tidy not found (scripts/deps.sh installs it)" >&2; exit 2; }
command -v cppcheck >/dev/null || { echo "lint: cppcheck not found (scripts/deps.sh installs it)" >&2; exit 2; }

# The project's sources in the database, one per line (generated files would be outside).
mapfile -t files < <(python3 - "$db" "$PWD" <<'PY'
import json, os, sys
root = sys.argv[2] + os.sep
for e in json.load(open(sys.argv[1])):
    f = os.path.normpath(os.path.join(e["directory"], e["file"]))
    if f.startswith(root) and f[len(root):].split(os.sep)[0] in ("runtime", "comm", "models", "launch", "tests"):
        print(f)
PY
)
# The NCCL backend is plain C: it is analysed with CUDA's and NCCL's headers whenever
# cmake found them (no GPU or nvcc needed), and is absent from the database otherwise.
if ! printf '%s\n' "${files[@]}" | grep -q '/comm/nccl/'; then
  echo "lint: comm/nccl/ not analysed: cmake found no CUDA runtime + NCCL headers"
fi

status=0
echo "lint: cppcheck on ${#files[@]} files"
cppcheck --project="$db" --enable=warning,style,performance,portability --inline-suppr \
  --suppressions-list=.cppcheck-suppressions --error-exitcode=1 --quiet -j"$jobs" \
  --template='{file}:{line}:{column}: {severity}: {message} [{id}]' 2>&1 || status=1

echo "lint: clang-tidy on ${#files[@]} files"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One clang-tidy per file, its report kept whole (parallel runs would interleave lines).
# Findings are errors (WarningsAsErrors), so a run that exits non-zero has something to say.
printf '%s\n' "${files[@]}" | xargs -d '\n' -n 1 -P "$jobs" sh -c \
  'log="$2/$(printf %s "$3" | tr / _).log"
   "$0" -p "$1" --quiet "$3" >"$log" 2>&1 || echo "lint: clang-tidy: $3: exit $?" >>"$log"' \
  "$tidy" "$build" "$out" || true
for log in "$out"/*.log; do
  if grep -q '^lint: clang-tidy: ' "$log"; then
    grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' "$log"
    status=1
  fi
done
[ $status -eq 0 ] && echo "lint: no findings"
exit $status
