# The model shapes the benchmarks compare (sourced by vs_torch.sh and before_after.sh):
# case name, graft bench model arguments, label of the frozen variant
cases=(
  "resnet18|resnet18 --image 3x64x64 --batch 32|fc only"
  "gpt2|gpt2 model.n_layer=6 model.n_embd=384 model.n_head=6 model.n_positions=128 --seq 128 --vocab 8192 --batch 8|ln_f only"
  "bert|bert model.n_layer=4 model.n_embd=256 model.n_head=4 model.n_positions=128 --seq 128 --vocab 8192 --classes 10 --batch 16|classifier only"
  "vit|vit model.patch_size=8 model.n_layer=6 model.n_embd=384 model.n_head=6 --image 3x64x64 --classes 10 --batch 16|head only"
)
