#!/usr/bin/env bash
# graft against PyTorch 1.13 (CPU) on the same models, shapes and thread count, side by
# side in one run: ms per training step (forward + loss + backward) of a full fine-tune
# and of a model with only its head trainable, and ratio = torch / graft (> 1: graft is
# faster). graft's side is `graft bench model`, PyTorch's bench/vs_torch.py; they take
# turns, ROUNDS times (default 3), and the best round of each is kept. Both run on the
# same OpenBLAS (PyTorch uses it for matmuls, oneDNN for convolutions): an
# OPENBLAS_CORETYPE in the environment applies to both.
# usage: bench/vs_torch.sh [BUILD_DIR] [THREADS]
# exit 77 when /usr/bin/python3 has no torch and torchvision.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
graft=$(cd "${1:-build}" && pwd)/graft
threads=${2:-1}
rounds=${ROUNDS:-3}
steps=${STEPS:-5}
python=/usr/bin/python3
if ! "$python" -c 'import torch, torchvision' 2>/dev/null; then
  echo "bench/vs_torch.sh: $python cannot import torch and torchvision: nothing to compare" >&2
  exit 77
fi
[ -x "$graft" ] || { echo "bench/vs_torch.sh: no graft binary at $graft" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads

. "$here/model_cases.sh"
declare -A best
keep() { # keep KEY MS: the smaller time
  local old=${best[$1]:-}
  if [ -z "$old" ] || awk -v a="$2" -v b="$old" 'BEGIN { exit !(a < b) }'; then best[$1]=$2; fi
}
core=$("$python" -c 'import ctypes; l = ctypes.CDLL("libopenblas.so.0"); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())' 2>/dev/null || echo unknown)
echo "$("$graft" --version 2>/dev/null | head -1 || echo graft) vs PyTorch $("$python" -c 'import torch; print(torch.__version__)'); $threads thread(s), OpenBLAS core $core; best of $rounds rounds of $steps steps"
for _ in $(seq "$rounds"); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name args _ <<<"$c"
    # shellcheck disable=SC2086 # args is a word list
    out=$("$graft" bench model $args --steps "$steps" --rounds 1)
    keep "$name/full/graft" "$(awk '$1 == "full" { print $6 }' <<<"$out")"
    keep "$name/frozen/graft" "$(awk '$1 == "frozen" { print $6 }' <<<"$out")"
    out=$("$python" "$here/vs_torch.py" "$name" --threads "$threads" --steps "$steps")
    keep "$name/full/torch" "$(awk '$1 == "full" { print $2 }' <<<"$out")"
    keep "$name/frozen/torch" "$(awk '$1 == "frozen" { print $2 }' <<<"$out")"
  done
done
printf '%-9s %-16s %10s %10s %7s\n' model variant graft_ms torch_ms ratio
for c in "${cases[@]}"; do
  IFS='|' read -r name _ frozen_label <<<"$c"
  for v in full frozen; do
    g=${best[$name/$v/graft]} t=${best[$name/$v/torch]}
    label=$([ "$v" = full ] && echo "full" || echo "$frozen_label")
    printf '%-9s %-16s %10.1f %10.1f %7.2f\n' "$name" "$label" "$g" "$t" \
      "$(awk -v t="$t" -v g="$g" 'BEGIN { print t / g }')"
  done
done
