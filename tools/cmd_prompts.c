// `tailor prompts`: N distinct prompts per class from a seeded grammar (adapt/prompt_builder.h),
// written as "label<TAB>prompt" lines for `tailor generate --prompts`.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt/prompt_builder.h"
#include "data/benchmark.h"
#include "engine/fs.h"
#include "tools/args.h"
#include "tools/commands.h"

#define FAIL(status, ...)                                    \
    do {                                                     \
        fprintf(stderr, "error: tailor prompts: " __VA_ARGS__); \
        fputc('\n', stderr);                                 \
        exit(status);                                        \
    } while (0)

// The classes of a built-in benchmark domain as the world corpus names them: digits "digit seven",
// fashion classes "t-shirt", "ankle boot", ... (world categories 62..71); labels are the domain's
// folder names, so the generated ImageFolder lines up with the domain's.
static int benchmark_classes(const char *name, PromptClass *out, int capacity) {
    int domain = benchmark_domain_from_name(name);
    if (domain < 0 || domain == BENCHMARK_WORLD) return -1;
    const BenchmarkDomainInfo *info = benchmark_domain_info(domain);
    bool fashion = domain == BENCHMARK_FASHION || domain == BENCHMARK_FASHION_PHOTO;
    int n = info->class_count < capacity ? info->class_count : capacity;
    for (int c = 0; c < n; c++) {
        out[c].label = benchmark_class_folder(domain, c);
        out[c].phrase = benchmark_world_category(fashion ? 62 + c : c);
        if (!strcmp(out[c].phrase, "trousers")) out[c].phrase = "pair of trousers";  // as the captions say it
    }
    return n;
}

int command_prompts(int argc, char **argv) {
    const char *class_list = NULL, *domain = "", *grammar_name = "world", *out = "prompts.tsv";
    int64_t per_class = 20, seed = 0;
    Flag flags[] = {
        {"classes", FLAG_STRING, &class_list, "LABEL:PHRASE,... (e.g. 7:digit seven), a file of LABEL<TAB>PHRASE lines, or bench:DOMAIN", NULL},
        {"domain", FLAG_STRING, &domain, "the target domain's description ({domain} in the grammar), e.g. handwritten-style", NULL},
        {"grammar", FLAG_STRING, &grammar_name, "world | world-clothing | photo, or a grammar file (docs/PROMPTS.md)", NULL},
        {"per-class", FLAG_INT, &per_class, "distinct prompts per class", NULL},
        {"seed", FLAG_INT, &seed, "seed of the draws", NULL},
        {"out", FLAG_STRING, &out, "the prompt file to write (label<TAB>prompt per line)", NULL},
    };
    args_parse("prompts", "Build N distinct prompts per class from a seeded grammar.", flags, (int)(sizeof flags / sizeof flags[0]),
               argc, argv, 2);
    if (!class_list) FAIL(2, "--classes is required (e.g. --classes bench:hand or --classes \"cat:tabby cat,dog:dog\")");
    if (per_class < 1 || per_class > 100000) FAIL(2, "--per-class must be in 1..100000");
    char error[1024];
    PromptGrammar *grammar = prompt_grammar_builtin(grammar_name);
    if (!grammar && !(grammar = prompt_grammar_load(grammar_name, error, sizeof error)))
        FAIL(2, "--grammar: %s (built-in: world, world-clothing, photo)", error);

    PromptClass classes[1024];
    int n = 0;
    char *text = NULL;
    if (!strncmp(class_list, "bench:", 6)) {
        if ((n = benchmark_classes(class_list + 6, classes, 1024)) < 0)
            FAIL(2, "--classes %s: expected bench:hand, print, lowres, photo, fashion or fashion-photo", class_list);
    } else {
        bool file = fs_is_file(class_list);
        if (file && !(text = fs_read_text(class_list, error, sizeof error))) FAIL(2, "--classes %s", error);
        if (!file && !(text = strdup(class_list))) FAIL(1, "out of memory");
        const char *separators = file ? "\n" : ",";
        char *save = NULL;
        int line = 0;
        for (char *item = strtok_r(text, separators, &save); item; item = strtok_r(NULL, separators, &save)) {
            line++;
            while (*item == ' ') item++;
            size_t length = strlen(item);
            while (length && (item[length - 1] == '\r' || item[length - 1] == ' ')) item[--length] = 0;
            if (!*item || item[0] == '#') continue;
            char *split = strchr(item, file ? '\t' : ':');
            if (!split || split == item || !split[1])
                FAIL(2, "--classes %s%s%d: expected %s", file ? class_list : "item ", file ? ":" : "", line,
                     file ? "LABEL<TAB>PHRASE" : "LABEL:PHRASE");
            if (n == 1024) FAIL(2, "--classes: more than 1024 classes");
            *split = 0;
            classes[n].label = item;
            classes[n++].phrase = split + 1;
        }
        if (n == 0) FAIL(2, "--classes %s: no classes", class_list);
    }
    char **prompts = prompts_build(grammar, classes, n, domain, (int)per_class, (uint64_t)seed, error, sizeof error);
    if (!prompts) FAIL(2, "%s", error);
    if (prompts_write(out, classes, n, prompts, (int)per_class, error, sizeof error) != 0) FAIL(1, "%s", error);
    printf("wrote %lld prompts (%d classes x %lld) to %s, e.g.\n", (long long)n * per_class, n, (long long)per_class, out);
    for (int c = 0; c < n && c < 3; c++) printf("  %s\t%s\n", classes[c].label, prompts[(size_t)c * (size_t)per_class]);
    prompts_free(prompts, (int64_t)n * per_class);
    prompt_grammar_free(grammar);
    free(text);
    return 0;
}
