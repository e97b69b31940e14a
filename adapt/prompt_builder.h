// Prompts for a synthetic source (Adapt Anything, stage 1): category names x a domain description x
// diversifying attributes, drawn from a seeded grammar, N distinct prompts per class
// (docs/PROMPTS.md).
//
// A grammar is templates and slots:
//   template: {a_domain} {class} in {colour} ink on {background}
//   slot colour: black | white | red
//   slot background: a white background | a photo background
// {class} is the category phrase, {domain} the domain description; {a_class} and {a_domain} add
// the English article ("a", or "an" before a vowel sound); any other {name} is a slot, replaced by
// one of its values (drawn uniformly). Lines starting with '#' and blank lines are ignored.
//
// Drawing: class c's prompts come from the Philox stream (seed, FNV-1a hash of its label), each a
// template, then one value per placeholder left to right, so they do not depend on the other classes. Repeats are skipped until per_class distinct prompts exist;
// a grammar with fewer combinations than asked is an error naming the class and how many it gave.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct PromptGrammar PromptGrammar;

// Built-in grammars by name: "world" (the built-in generator's caption language: glyphs in named
// inks, font styles and backgrounds; {domain} a style such as "handwritten-style"), "world-clothing"
// (its clothing captions: photos, black backgrounds, photo backgrounds; {domain} an adjective or
// ""), "photo" (general text-to-image prompts for Stable Diffusion: photo styles, lighting,
// viewpoint, background, pose). NULL for an unknown name.
PromptGrammar *prompt_grammar_builtin(const char *name);
// A grammar file. NULL with one line in error ("<file>:<line>: <problem>").
PromptGrammar *prompt_grammar_load(const char *path, char *error, size_t error_size);
// A grammar from text (the file format). NULL with one line in error naming `where`.
PromptGrammar *prompt_grammar_parse(const char *text, const char *where, char *error, size_t error_size);
void prompt_grammar_free(PromptGrammar *grammar);  // NULL is fine

typedef struct {
    const char *label;   // the class's folder label ("7", "sneaker")
    const char *phrase;  // how prompts name it ("digit seven", "sneaker")
} PromptClass;

// per_class distinct prompts for each class: prompts[c * per_class + k] (malloc'd strings in a
// malloc'd array; free with prompts_free). NULL with one line in error.
char **prompts_build(const PromptGrammar *grammar, const PromptClass *classes, int n_classes, const char *domain,
                     int per_class, uint64_t seed, char *error, size_t error_size);
void prompts_free(char **prompts, int64_t count);
// Writes "label<TAB>prompt" lines (the format `tailor generate --prompts` reads). 0, or -1 with one
// line in error.
int prompts_write(const char *path, const PromptClass *classes, int n_classes, char **prompts, int per_class,
                  char *error, size_t error_size);
