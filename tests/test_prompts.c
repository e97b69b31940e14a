// adapt/prompt_builder: grammars parse (the built-in ones and files), prompts are distinct per
// class, the same for the same seed and different for another, articles agree with the next word
// (also after an empty slot value), a grammar too small for the request is one error line naming
// the class, malformed grammars are one line naming the file and line; the prompt file is
// "label<TAB>prompt" lines, and `tailor prompts` writes one.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/prompt_builder.h"
#include "engine/fs.h"
#include "tests/check.h"
#include "tests/run_command.h"

TEST_MAIN_COUNTERS;

static const PromptClass DIGITS[3] = {{"0", "digit zero"}, {"7", "digit seven"}, {"8", "digit eight"}};

TEST(builtin_grammars_give_distinct_prompts_per_class) {
    const char *names[3] = {"world", "world-clothing", "photo"};
    for (int i = 0; i < 3; i++) {
        PromptGrammar *g = prompt_grammar_builtin(names[i]);
        CHECK_MSG(g, "%s", names[i]);
        if (!g) continue;
        char error[512];
        int per_class = i == 1 ? 10 : 40;
        char **prompts = prompts_build(g, DIGITS, 3, "handwritten-style", per_class, 7, error, sizeof error);
        CHECK_MSG(prompts, "%s: %s", names[i], error);
        for (int c = 0; prompts && c < 3; c++)
            for (int a = 0; a < per_class; a++) {
                const char *p = prompts[c * per_class + a];
                CHECK_MSG(strstr(p, DIGITS[c].phrase), "%s: \"%s\" does not name %s", names[i], p, DIGITS[c].phrase);
                CHECK_MSG(!strstr(p, "  ") && p[0] != ' ' && p[strlen(p) - 1] != ' ' && !strstr(p, " ,"), "%s: spacing in \"%s\"",
                          names[i], p);
                for (int b = 0; b < a; b++) CHECK_MSG(strcmp(p, prompts[c * per_class + b]), "%s: \"%s\" twice", names[i], p);
            }
        prompts_free(prompts, 3 * per_class);
        prompt_grammar_free(g);
    }
    CHECK(!prompt_grammar_builtin("nonsense"));
}

TEST(same_seed_same_prompts_other_seed_others) {
    PromptGrammar *g = prompt_grammar_builtin("world");
    char error[256];
    char **a = prompts_build(g, DIGITS, 3, "serif", 20, 1, error, sizeof error);
    char **b = prompts_build(g, DIGITS, 3, "serif", 20, 1, error, sizeof error);
    char **c = prompts_build(g, DIGITS, 3, "serif", 20, 2, error, sizeof error);
    int same = 0, differ = 0;
    for (int i = 0; a && b && c && i < 60; i++) same += !strcmp(a[i], b[i]), differ += strcmp(a[i], c[i]) != 0;
    CHECK_MSG(same == 60 && differ > 30, "same seed: %d of 60 equal; another seed: %d of 60 differ", same, differ);
    // A class's prompts come from its own stream: asking for it alone gives the same prompts.
    char **alone = prompts_build(g, DIGITS + 1, 1, "serif", 20, 1, error, sizeof error);
    CHECK(alone && !strcmp(alone[5], a[20 + 5]));
    prompts_free(a, 60), prompts_free(b, 60), prompts_free(c, 60), prompts_free(alone, 20);
    prompt_grammar_free(g);
}

TEST(articles_follow_the_next_word) {
    char error[256];
    PromptGrammar *g = prompt_grammar_parse("template: {a_colour} {class} and {a_domain} thing\nslot colour: | orange | red\n", "t",
                                            error, sizeof error);
    CHECK_MSG(g, "%s", error);
    if (!g) return;
    static const PromptClass owl[1] = {{"owl", "owl"}};
    char **prompts = prompts_build(g, owl, 1, "", 3, 0, error, sizeof error);
    CHECK_MSG(prompts, "%s", error);
    for (int i = 0; prompts && i < 3; i++) {
        const char *p = prompts[i];
        CHECK_MSG(!strcmp(p, "an owl and a thing") || !strcmp(p, "an orange owl and a thing") || !strcmp(p, "a red owl and a thing"),
                  "\"%s\"", p);
    }
    prompts_free(prompts, 3);
    // Only 3 combinations: asking for 4 names the class and the count.
    CHECK(!prompts_build(g, owl, 1, "", 4, 0, error, sizeof error) && strstr(error, "only 3 distinct prompts for class owl"));
    prompt_grammar_free(g);
}

TEST(malformed_grammars_name_the_line) {
    struct {
        const char *text, *expected;
    } cases[] = {
        {"template: {colour} {class}\n", "g: template \"{colour} {class}\": no slot {colour}"},
        {"slot colour: red\n", "g: no template"},
        {"template: x\nwhatever\n", "g:2: expected \"template: ...\" or \"slot NAME: a | b\""},
        {"template: {class\n", "unclosed {"},
        {"template: {c}\nslot c: a\nslot c: b\n", "g:3: slot \"c\" defined twice"},
        {"template: {class}\nslot class: a\n", "reserved"},
        {"template: {c}\nslot c\n", "g:2: expected \"slot NAME: value | value | ...\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char error[256] = "";
        PromptGrammar *g = prompt_grammar_parse(cases[i].text, "g", error, sizeof error);
        CHECK_MSG(!g && strstr(error, cases[i].expected), "case %zu: %s", i, error);
        prompt_grammar_free(g);
    }
    char error[256];
    CHECK(!prompt_grammar_load("/nonexistent/grammar.txt", error, sizeof error) && strstr(error, "/nonexistent/grammar.txt: cannot open"));
}

TEST(prompt_file_and_command) {
    char dir[] = "/tmp/tailor_prompts_XXXXXX";
    if (!mkdtemp(dir)) return;
    char path[256], error[256];
    snprintf(path, sizeof path, "%s/p.tsv", dir);
    PromptGrammar *g = prompt_grammar_builtin("world");
    char **prompts = prompts_build(g, DIGITS, 3, "monospace", 2, 0, error, sizeof error);
    CHECK(prompts && prompts_write(path, DIGITS, 3, prompts, 2, error, sizeof error) == 0);
    char *text = fs_read_text(path, error, sizeof error);
    int lines = 0;
    for (const char *c = text ? text : ""; *c; c++) lines += *c == '\n';
    CHECK_MSG(text && lines == 6 && !strncmp(text, "0\t", 2) && strstr(text, "\n8\t"), "%s", text ? text : error);
    free(text);
    prompts_free(prompts, 6);
    prompt_grammar_free(g);
    // The command, with a class file and a grammar file.
    char classes[256], grammar[256], command[1024], output[4096];
    snprintf(classes, sizeof classes, "%s/classes.txt", dir);
    snprintf(grammar, sizeof grammar, "%s/grammar.txt", dir);
    fs_write_text(classes, "# label<TAB>phrase\ncat\ttabby cat\nowl\towl\n");
    fs_write_text(grammar, "template: {a_style} of {a_class}\nslot style: photo | sketch | painting\n");
    const char *build = getenv("BUILD");
    snprintf(command, sizeof command, "%s/tailor prompts --classes %s --grammar %s --per-class 3 --out %s/out.tsv",
             build && *build ? build : "build", classes, grammar, dir);
    CHECK_MSG(run_command(dir, command, output, sizeof output) == 0, "%s", output);
    snprintf(path, sizeof path, "%s/out.tsv", dir);
    text = fs_read_text(path, error, sizeof error);
    CHECK_MSG(text && strstr(text, "owl\ta sketch of an owl\n") && strstr(text, "cat\ta painting of a tabby cat\n"), "%s",
              text ? text : error);
    free(text);
    snprintf(command, sizeof command, "%s/tailor prompts --classes %s --grammar %s --per-class 4 --out %s/out.tsv",
             build && *build ? build : "build", classes, grammar, dir);
    CHECK_MSG(run_command(dir, command, output, sizeof output) == 2 &&
                  strstr(output, "error: tailor prompts: the grammar gave only 3 distinct prompts for class cat"),
              "%s", output);
    if (fs_remove_tree(dir) != 0) printf("could not remove %s\n", dir);
}

int main(void) {
    RUN_TEST(builtin_grammars_give_distinct_prompts_per_class);
    RUN_TEST(same_seed_same_prompts_other_seed_others);
    RUN_TEST(articles_follow_the_next_word);
    RUN_TEST(malformed_grammars_name_the_line);
    RUN_TEST(prompt_file_and_command);
    return test_summary();
}
