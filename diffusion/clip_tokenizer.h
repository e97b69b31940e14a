// The CLIP BPE tokenizer (Radford et al. 2021; OpenAI CLIP's SimpleTokenizer, open_clip and
// Hugging Face CLIPTokenizer behave the same up to the differences in docs/TOKENIZERS.md).
//
// Text -> ids: clean (ftfy subset, html.unescape, whitespace collapsed, lowercase: clip_text_cleaning.h);
// split by the pattern 's|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+; map each piece's
// UTF-8 bytes to the byte alphabet (GPT-2's bytes_to_unicode), mark the last symbol with </w>,
// merge pairs lowest merge rank first; then [BOS] ids [EOS], truncated to the context length with
// EOS kept last, padded with the pad id.
//
// Files: OpenAI's bpe_simple_vocab_16e6.txt.gz (merges only; the vocabulary is built from them as
// SimpleTokenizer builds it), or Hugging Face's vocab.json + merges.txt (an SD 1.x checkpoint's
// tokenizer/ folder). Errors are one line "<path>:<line>: <problem>" (or "<path>: <problem>").
//
// Not thread-safe: encoding fills a cache of pieces; use one tokenizer per thread.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diffusion/clip_text_cleaning.h"

#define CLIP_CONTEXT_LENGTH 77
#define CLIP_OPENAI_MERGE_COUNT 48894  // merges SimpleTokenizer uses: lines [1, 49152 - 256 - 2 + 1)
#define CLIP_PAD_WITH_EOS (-1)         // ClipEncodeOptions.pad_id: pad with the EOS id

typedef struct ClipTokenizer ClipTokenizer;

typedef struct {
    ClipCleanOptions clean;
    int context_length;  // ids per encoded text; at least 2
    int32_t pad_id;      // id after EOS up to context_length; CLIP_PAD_WITH_EOS for the EOS id
} ClipEncodeOptions;

// Hugging Face CLIPTokenizer as Stable Diffusion 1.x uses it (padding="max_length",
// truncation=True): ftfy, no html.unescape, pad with EOS (49407). Tailor's default.
ClipEncodeOptions clip_options_hf(void);
// OpenAI CLIP / open_clip tokenize(): ftfy, html.unescape twice, pad with 0.
ClipEncodeOptions clip_options_open_clip(void);

// Loaders: the tokenizer, or NULL with one line in error.
ClipTokenizer *clip_tokenizer_load_openai(const char *merges_gz_path, char *error, size_t error_size);
ClipTokenizer *clip_tokenizer_load_hf(const char *vocab_json_path, const char *merges_txt_path,
                                      char *error, size_t error_size);
// A directory holding vocab.json and merges.txt, or else a merges file in OpenAI's format.
ClipTokenizer *clip_tokenizer_load(const char *path, char *error, size_t error_size);
// clip_tokenizer_load, ending the program with the error line (tensor_fatal) on failure.
ClipTokenizer *clip_tokenizer_open(const char *path);
void clip_tokenizer_free(ClipTokenizer *tokenizer);  // NULL is fine

int32_t clip_tokenizer_bos(const ClipTokenizer *tokenizer);         // <|startoftext|>, 49406
int32_t clip_tokenizer_eos(const ClipTokenizer *tokenizer);         // <|endoftext|>, 49407
int32_t clip_tokenizer_vocab_size(const ClipTokenizer *tokenizer);  // largest id + 1
// The token string of an id (byte-alphabet characters, "</w>" marking a word end), NULL if none.
const char *clip_tokenizer_token(const ClipTokenizer *tokenizer, int32_t id);

// The ids of a text without BOS/EOS, any length (SimpleTokenizer.encode). Returns the count;
// *ids is malloc'd (free it), NULL when the count is 0.
size_t clip_tokenizer_encode_ids(ClipTokenizer *tokenizer, const char *text, ClipCleanOptions clean,
                                 int32_t **ids);
// [BOS] ids [EOS] into out[options->context_length]: truncated keeping EOS last, then padded.
// Returns the length before padding (the index of EOS + 1).
int clip_tokenizer_encode(ClipTokenizer *tokenizer, const char *text, const ClipEncodeOptions *options,
                          int32_t *out);

// ids -> text as SimpleTokenizer.decode: token bytes concatenated, decoded as UTF-8 with invalid
// sequences replaced by U+FFFD, "</w>" -> " ". With skip_special, BOS and EOS ids (so also EOS
// padding) are left out. Returns a malloc'd string; an id outside the vocabulary is fatal.
char *clip_tokenizer_decode(const ClipTokenizer *tokenizer, const int32_t *ids, size_t count,
                            bool skip_special);
