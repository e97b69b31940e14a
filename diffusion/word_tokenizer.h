// A word-level tokenizer for the small text-conditioned generators trained here, so that they need
// no external vocabulary (docs/TOKENIZERS.md).
//
// Text is cleaned like CLIP's (whitespace collapsed, str.lower(); no ftfy or HTML unescaping),
// then split into words: a run of letters and numbers is one word, every other non-space
// character (punctuation, symbols, emoji) is a word of its own. "A dog's toy!" -> a dog ' s toy !
//
// Ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <unk>, then the words of the vocabulary by decreasing count
// in the corpus, equal counts in bytewise order of the word, so a corpus gives the same ids on
// every machine. Encoding is [BOS] ids [EOS], truncated to the context length with EOS kept last,
// padded with <pad> (0); words outside the vocabulary become <unk>.
//
// File: UTF-8 text, the line "tailor-word-vocab 1", then one token per line in id order starting
// with the four specials; line n + 2 holds id n. Errors are one line "<path>:<line>: <problem>".
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORD_PAD_ID 0
#define WORD_BOS_ID 1
#define WORD_EOS_ID 2
#define WORD_UNK_ID 3
#define WORD_SPECIAL_COUNT 4
#define WORD_VOCAB_HEADER "tailor-word-vocab 1"

typedef struct WordTokenizer WordTokenizer;

typedef struct {
    int min_count;  // words seen fewer times are left out (become <unk>); at least 1
    int max_words;  // keep at most this many words (the most frequent); 0 for no limit
} WordVocabOptions;

WordVocabOptions word_vocab_defaults(void);  // min_count 1, max_words 0

// Builds the vocabulary from count captions (UTF-8, NUL-terminated).
WordTokenizer *word_tokenizer_build(const char *const *captions, size_t count, WordVocabOptions options);
// Writes the vocabulary file (to a temporary name, then renamed). 0, or -1 with one line in error.
int word_tokenizer_save(const WordTokenizer *tokenizer, const char *path, char *error, size_t error_size);
// NULL with one line in error on failure.
WordTokenizer *word_tokenizer_load(const char *path, char *error, size_t error_size);
// word_tokenizer_load, ending the program with the error line (tensor_fatal) on failure.
WordTokenizer *word_tokenizer_open(const char *path);
void word_tokenizer_free(WordTokenizer *tokenizer);  // NULL is fine

int32_t word_tokenizer_vocab_size(const WordTokenizer *tokenizer);            // specials included
const char *word_tokenizer_token(const WordTokenizer *tokenizer, int32_t id);  // NULL if out of range
int32_t word_tokenizer_id(const WordTokenizer *tokenizer, const char *word);  // WORD_UNK_ID if absent

// [BOS] ids [EOS] into out[context_length] (>= 2), truncated keeping EOS last, padded with
// WORD_PAD_ID. Returns the length before padding.
int word_tokenizer_encode(const WordTokenizer *tokenizer, const char *text, int context_length, int32_t *out);
// The words of ids joined by single spaces; <pad>, <bos> and <eos> are left out, <unk> is written
// as "<unk>". Returns a malloc'd string; an id outside the vocabulary is fatal.
char *word_tokenizer_decode(const WordTokenizer *tokenizer, const int32_t *ids, size_t count);
