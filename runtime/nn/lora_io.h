/* LoRA adapters in and out of files, as Hugging Face PEFT reads and writes them:
 *   DIR/adapter_model.safetensors  "base_model.model.<layer>.lora_A.weight" [r, in] and
 *                                  ".lora_B.weight" [out, r] per adapted layer, plus the
 *                                  other trainable parameters (PEFT's modules_to_save) as
 *                                  "base_model.model.<name>", the names PEFT's
 *                                  get_peft_model_state_dict gives them
 *   DIR/adapter_config.json        what PEFT's LoraConfig reads: peft_type "LORA", r,
 *                                  lora_alpha, lora_dropout, target_modules (the adapted
 *                                  layers' full names), fan_in_fan_out, bias "none",
 *                                  modules_to_save, task_type, base_model_name_or_path ""
 * and a LoRA run's model.safetensors: the base with scale·B·A merged in, under the plain
 * names (no adapter tensors), which the hub's tools load as an ordinary model. */
#ifndef GRAFT_NN_LORA_IO_H
#define GRAFT_NN_LORA_IO_H

#include "runtime/nn/params.h"

/* model.lora's settings as the adapter directory records them. */
typedef struct graft_lora_dir_config {
    int rank;
    double alpha, dropout;
    const char *task_type; /* PEFT's: "CAUSAL_LM", "SEQ_CLS"; NULL: none (JSON null) */
} graft_lora_dir_config;

/* 1 when the table holds adapters. */
int graft_lora_present(const graft_params *p);

/* Write DIR (created if needed) with the table's adapters and other trainable
 * parameters; each file is replaced atomically. */
graft_status graft_lora_save_dir(const graft_params *p, const graft_lora_dir_config *c,
                                 const char *dir);

/* Load DIR into the table's adapters (and the other parameters it names). Its r and
 * lora_alpha must equal model.lora's; every adapter of the table must be in the file with
 * its shape, and every tensor of the file must name an adapter or a parameter of the model
 * (modules_to_save: loaded whether they train here or not, as for inference).
 * Any mismatch: one line naming the file and the tensor or key, GRAFT_ERR_MISMATCH (or
 * the reader's status), the table untouched. */
graft_status graft_lora_load_dir(graft_params *p, const graft_lora_dir_config *c, const char *dir);

/* Write the table with every adapter merged into its base weight, adapters left out
 * (plain names, as graft_params_save). */
graft_status graft_lora_save_merged(const graft_params *p, const char *path);

#endif
