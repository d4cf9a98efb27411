/* graft sample: text from a GPT-2 (model.arch gpt2) given a config, its weights and a
 * prompt, in this one process: the tokenizer is the one the config's training set was
 * written with, the prompt goes through the key/value cache once, and each of
 * --num-samples continuations draws from its own seeded stream. Every input is checked
 * (exit 2, one line) before the first token is drawn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "models/gpt2/gpt2_generate.h"
#include "models/model.h"
#include "runtime/ckpt/ckpt.h"
#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "runtime/core/escape.h"
#include "runtime/core/log.h"
#include "runtime/data/dataset.h"
#include "runtime/data/tokenizer.h"
#include "runtime/io/fs.h"

/* Bounds that keep a mistyped number from asking for gigabytes. */
#define SAMPLE_MAX_NEW_TOKENS 1000000
#define SAMPLE_MAX_PROMPT_BYTES (16u << 20)

static const char help_text[] =
    "usage: graft sample CONFIG.yaml --weights W [--prompt TEXT | --prompt-file F]\n"
    "                    [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]\n"
    "                    [--seed S] [--num-samples M] [key=value ...]\n"
    "Generate text with a GPT-2 (model.arch gpt2): the prompt, then its continuation, on\n"
    "stdout. W is a safetensors file (a run's model.safetensors, a Hugging Face GPT-2\n"
    "file, a `graft ckpt export` output) or a checkpoint directory (or a root of them: the\n"
    "one a resume would use). The tokenizer is data.train's (gpt2 or bytes). Sampling is\n"
    "Hugging Face's: temperature, then top-k, then top-p (nucleus); --temperature 0 is\n"
    "greedy. Sample m of M draws from a stream derived from (seed, m): the same seed gives\n"
    "the same text. Without a prompt a gpt2-tokenizer model starts from <|endoftext|>, as\n"
    "Hugging Face does (a bytes model needs a prompt); drawing <|endoftext|> ends a sample.\n"
    "Beyond model.n_positions tokens the context is a sliding window of the last\n"
    "n_positions tokens (as nanoGPT does; each such token recomputes the cache).";

typedef struct sample_args {
    const char *weights, *prompt, *prompt_file;
    int max_new_tokens, top_k, seed, num_samples;
    float temperature, top_p;
} sample_args;

/* Flags the option parser cannot check alone. */
static int check_args(const sample_args *a, const graft_config *cfg) {
    const char *problem = NULL;
    if (!a->weights || !*a->weights)
        problem = "--weights W is required";
    else if (a->prompt && a->prompt_file)
        problem = "give --prompt or --prompt-file, not both";
    else if (!(a->top_p > 0 && a->top_p <= 1))
        problem = "--top-p must be in (0, 1]";
    else if (a->max_new_tokens > SAMPLE_MAX_NEW_TOKENS)
        problem = "--max-new-tokens is at most 1000000";
    if (problem) {
        fprintf(stderr, "graft sample: %s\n", problem);
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (strcmp(cfg->model.arch, "gpt2") != 0) {
        char arch[256];
        fprintf(stderr, "graft sample: model.arch is %s: graft sample generates with gpt2\n",
                graft_escape(arch, sizeof arch, cfg->model.arch));
        return GRAFT_EXIT_BAD_INPUT;
    }
    return GRAFT_EXIT_OK;
}

/* The prompt's bytes: --prompt, --prompt-file (a regular file), or none (""). */
static graft_status read_prompt(const sample_args *a, char **text, size_t *len) {
    if (a->prompt_file)
        return graft_fs_read(a->prompt_file, SAMPLE_MAX_PROMPT_BYTES, text, len, GRAFT_LOG_ERROR);
    const char *given = a->prompt ? a->prompt : "";
    *len = strlen(given);
    *text = strdup(given);
    if (*text) return GRAFT_OK;
    GRAFT_ERROR("out of memory for the prompt");
    return GRAFT_ERR_NOMEM;
}

/* The tokenizer data.train was written with, and that dataset's vocabulary. */
static graft_status open_tokenizer(const graft_config *cfg, graft_tokenizer **tok, int *vocab) {
    graft_dataset d;
    GRAFT_TRY(graft_dataset_open(&d, cfg->data.train, 0));
    graft_status st = GRAFT_OK;
    const char *name = d.tokenizer ? d.tokenizer : "";
    if (d.kind != GRAFT_DATA_TOKENS || (strcmp(name, "gpt2") != 0 && strcmp(name, "bytes") != 0)) {
        GRAFT_ERROR("%s: a %s dataset with tokenizer '%s': graft sample needs a token stream "
                    "written with the gpt2 or bytes tokenizer",
                    d.dir, graft_dataset_kind_name(d.kind), name);
        st = GRAFT_ERR_CONFIG;
    }
    if (st == GRAFT_OK) st = graft_tokenizer_new(tok, name, NULL);
    *vocab = d.vocab_size;
    graft_dataset_close(&d);
    return st;
}

/* The prompt's ids; none (an empty prompt) starts from the tokenizer's end of text, as
 * Hugging Face's generate() starts from GPT-2's bos (= eos) token. */
static graft_status encode_prompt(graft_tokenizer *tok, const char *text, size_t len,
                                  int32_t **ids, size_t *n) {
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    GRAFT_TRY(graft_tokenizer_encode(tok, text, len, ids, n, &cap));
    if (*n > 0) return GRAFT_OK;
    const int eot = graft_tokenizer_eot(tok);
    if (eot < 0) {
        GRAFT_ERROR("the prompt is empty and the bytes tokenizer has no "
                    "<|endoftext|> to start from: give --prompt or --prompt-file");
        return GRAFT_ERR_CONFIG;
    }
    int32_t *one = realloc(*ids, sizeof *one);
    if (!one) return GRAFT_ERR_NOMEM;
    one[0] = eot;
    *ids = one;
    *n = 1;
    return GRAFT_OK;
}

/* The weights of W: a safetensors file (strict, hub names mapped) or a checkpoint (a
 * root: the checkpoint a resume would use). */
static graft_status load_weights(graft_model *m, const char *path) {
    if (!graft_fs_is_dir(path)) {
        graft_load_options opt = graft_model_load_options(m, 1, 0);
        return graft_params_load(m->params, path, &opt, NULL);
    }
    char chosen[GRAFT_FS_PATH_MAX];
    if (graft_ckpt_is_checkpoint(path)) {
        snprintf(chosen, sizeof chosen, "%s", path);
    } else {
        graft_status st = graft_ckpt_find_resume(path, chosen, sizeof chosen);
        if (st == GRAFT_ERR_NOT_FOUND)
            GRAFT_ERROR("%s: a directory that holds no checkpoint (give a safetensors file, a "
                        "checkpoint or a checkpoint root)",
                        path);
        if (st != GRAFT_OK) return st;
    }
    return graft_ckpt_load(chosen, m->params, NULL, NULL, NULL);
}

/* The config's GPT-2 for a vocabulary of `vocab` with W's weights, no gradients. */
static graft_status load_model(const graft_config *cfg, int vocab, const char *weights,
                               graft_model *m) {
    graft_model_input input = {
        .vocab_size = vocab, .seq_len = cfg->data.seq_len, .pad_id = -1, .mask_id = -1};
    GRAFT_TRY(graft_model_create(m, cfg, &input));
    GRAFT_TRY(graft_params_set_trainable(m->params, "*", 0, NULL));
    GRAFT_TRY(graft_params_finalize(m->params));
    GRAFT_TRY(load_weights(m, weights));
    return graft_model_load_lora_init(m, cfg); /* a PEFT adapter directory on top */
}

/* A token's bytes as they are (the user's text, not a log line), shown as soon as drawn.
 * Write errors stay in stdout's error flag, checked once after the last sample. */
static void emit_token(void *tokenizer, int32_t id) {
    size_t len = 0;
    const unsigned char *bytes = graft_tokenizer_token_bytes(tokenizer, id, &len);
    (void)fwrite(bytes, 1, len, stdout);
    (void)fflush(stdout);
}

/* Every sample, one block each; a failed write to stdout fails the command. */
static graft_status generate_all(graft_gpt2_generator *g, const sample_args *a, uint64_t seed,
                                 const char *prompt, size_t prompt_len, graft_tokenizer *tok) {
    double start = graft_now_s();
    long drawn = 0;
    for (int s = 0; s < a->num_samples; s++) {
        if (a->num_samples > 1) printf("%s=== sample %d of %d ===\n", s ? "\n" : "", s + 1,
                                       a->num_samples);
        (void)fwrite(prompt, 1, prompt_len, stdout); /* ferror below */
        graft_rng rng;
        graft_rng_seed(&rng, graft_rng_mix(seed, (uint64_t)s));
        drawn += graft_gpt2_generate(g, &rng, emit_token, tok);
        putchar('\n');
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        GRAFT_ERROR("cannot write the samples to stdout");
        return GRAFT_ERR_RUN;
    }
    double s = graft_now_s() - start;
    GRAFT_INFO("%ld tokens in %.3f s: %.1f tokens/s", drawn, s, s > 0 ? (double)drawn / s : 0.0);
    return GRAFT_OK;
}

static graft_status run_sample(const graft_config *cfg, const sample_args *a) {
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    graft_tokenizer *tok = NULL;
    int vocab = 0;
    graft_model m;
    memset(&m, 0, sizeof m);
    graft_gpt2_generator g;
    memset(&g, 0, sizeof g);
    graft_status st = read_prompt(a, &text, &len);
    if (st == GRAFT_OK) st = open_tokenizer(cfg, &tok, &vocab);
    if (st == GRAFT_OK) st = encode_prompt(tok, text, len, &ids, &n_ids);
    if (st == GRAFT_OK) st = load_model(cfg, vocab, a->weights, &m);
    const graft_gpt2 *gpt2 = m.self;
    if (st == GRAFT_OK) { /* n_ids fits an int: at most one token per prompt byte (16 MiB) */
        const int V = graft_tokenizer_vocab_size(tok);
        const graft_gpt2_generation opt = {
            .max_new_tokens = a->max_new_tokens,
            .stop_id = graft_tokenizer_eot(tok),
            .n_allowed = V < gpt2->cfg.vocab_size ? V : gpt2->cfg.vocab_size,
            .sampling = {.temperature = a->temperature, .top_k = a->top_k, .top_p = a->top_p}};
        double start = graft_now_s();
        st = graft_gpt2_generator_init(&g, gpt2, ids, (int)n_ids, &opt);
        if (st == GRAFT_OK)
            GRAFT_INFO("prompt of %zu tokens in %.3f s", n_ids, graft_now_s() - start);
    }
    if (st == GRAFT_OK) {
        uint64_t seed = a->seed >= 0 ? (uint64_t)a->seed : (uint64_t)cfg->seed;
        st = generate_all(&g, a, seed, text, len, tok);
    }
    graft_gpt2_generator_free(&g);
    graft_model_free(&m);
    graft_tokenizer_free(tok);
    free(ids);
    free(text);
    return st;
}

int cmd_sample(int argc, char **argv) {
    if (argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        printf("%s\n\noptions:\n"
               "  --weights W          weights: safetensors file or checkpoint (required)\n"
               "  --prompt TEXT        the text to continue\n"
               "  --prompt-file F      the text to continue, from a file\n"
               "  --max-new-tokens N   tokens to draw per sample (default 100, at most 1000000)\n"
               "  --temperature T      >= 0; 0: greedy (default 1)\n"
               "  --top-k K            keep the K most likely tokens; 0: all (default 50)\n"
               "  --top-p P            keep the most likely tokens holding P of the\n"
               "                       probability, in (0, 1]; 1: all (default 1)\n"
               "  --seed S             default: the config's seed\n"
               "  --num-samples M      continuations of the prompt (default 1)\n",
               help_text);
        return GRAFT_EXIT_OK;
    }
    sample_args a = {.max_new_tokens = 100,
                     .top_k = 50,
                     .seed = -1,
                     .num_samples = 1,
                     .temperature = 1.0f,
                     .top_p = 1.0f};
    const cli_option opts[] = {
        {"weights", CLI_STRING, &a.weights, "weights to sample from", 0},
        {"prompt", CLI_STRING, &a.prompt, "the text to continue", 0},
        {"prompt-file", CLI_STRING, &a.prompt_file, "the text to continue, from a file", 0},
        {"max-new-tokens", CLI_INT, &a.max_new_tokens, "tokens to draw per sample", 1},
        {"temperature", CLI_FLOAT, &a.temperature, "0: greedy", 0},
        {"top-k", CLI_INT, &a.top_k, "0: no top-k", 0},
        {"top-p", CLI_FLOAT, &a.top_p, "1: no top-p", 0},
        {"seed", CLI_INT, &a.seed, "the random streams' seed", 0},
        {"num-samples", CLI_INT, &a.num_samples, "continuations of the prompt", 1},
    };
    graft_config cfg;
    const cli_config_args args = {opts, sizeof opts / sizeof opts[0], 0, NULL};
    int rc = cli_load_config("sample", &cfg, argc, argv, &args);
    if (rc == GRAFT_EXIT_OK) rc = check_args(&a, &cfg);
    if (rc == GRAFT_EXIT_OK) {
        graft_log_clear_last_error();
        graft_status st = run_sample(&cfg, &a);
        if (st != GRAFT_OK && !graft_log_last_error()[0])
            GRAFT_ERROR("failed: %s", graft_status_str(st));
        rc = cli_exit_status(st);
    }
    graft_config_free(&cfg);
    return rc;
}
