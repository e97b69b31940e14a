// Seeded prompt grammars (adapt/prompt_builder.h).
#include "adapt/prompt_builder.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fs.h"
#include "engine/rng.h"
#include "engine/string_map.h"
#include "engine/tensor.h"

#define MAX_TEMPLATES 64
#define MAX_SLOTS 32
#define MAX_VALUES 128

typedef struct {
    char name[32];
    int n_values;
    char *values[MAX_VALUES];
} Slot;

struct PromptGrammar {
    int n_templates, n_slots;
    char *templates[MAX_TEMPLATES];
    Slot slots[MAX_SLOTS];
};

// The built-in generator's vocabulary (data/benchmark_world.c writes these words into its captions).
static const char WORLD[] =
    "# glyphs as the world corpus captions them; {domain}: serif, sans-serif, monospace, handwritten-style, bold serif, ...\n"
    "template: {a_domain} {class} in {ink} ink on {background}\n"
    "template: a {class} written in {a_domain} font, {ink} on {background}\n"
    "template: the {class} in {ink} {domain} lettering on {background}\n"
    "slot ink: black | white | red | blue | green | orange | purple | brown | yellow | pink | grey | dark blue\n"
    "slot background: a white background | a black background | a light grey background | a cream background | "
    "a light blue background | a pale yellow background | a dark green background | a navy blue background | "
    "a photo background\n";

static const char WORLD_CLOTHING[] =
    "# clothing as the world corpus captions it; {domain}: where it is, e.g. \"on a photo background\" (fashion-photo),\n"
    "# \"on a black background\" (fashion), or empty\n"
    "template: a photo of {a_tint} {class} {domain}\n"
    "template: a black-and-white photo of {a_class} {domain}\n"
    "template: {a_tint} {class} {domain}\n"
    "template: a photo of {a_class} blended into a photo background\n"
    "slot tint: | red | blue | green | yellow | orange | purple | pink | brown\n";

static const char PHOTO[] =
    "# general text-to-image prompts (Stable Diffusion); {domain}: e.g. \"product photo\", \"sketch\", \"clipart\"\n"
    "template: {a_domain} of {a_class}, {lighting}, {viewpoint}\n"
    "template: {a_domain} of {a_class} {background}, {lighting}\n"
    "template: {a_domain} of {a_colour} {class}, {viewpoint}, {background}\n"
    "template: {a_domain} of {a_class} {pose}, {lighting}\n"
    "slot lighting: soft lighting | studio lighting | natural light | dramatic lighting | bright daylight | low light\n"
    "slot viewpoint: front view | side view | top view | close-up | from a low angle | wide shot\n"
    "slot background: on a white background | on a wooden table | outdoors | indoors | in a cluttered room | on a plain background\n"
    "slot colour: red | blue | green | black | white | yellow | brown | grey | orange | silver\n"
    "slot pose: in the centre | partly hidden | seen from afar | at an angle | in use | on its side\n";

void prompt_grammar_free(PromptGrammar *g) {
    if (!g) return;
    for (int i = 0; i < g->n_templates; i++) free(g->templates[i]);
    for (int s = 0; s < g->n_slots; s++)
        for (int v = 0; v < g->slots[s].n_values; v++) free(g->slots[s].values[v]);
    free(g);
}

static char *trimmed_copy(const char *start, const char *end) {
    while (start < end && isspace((unsigned char)*start)) start++;
    while (end > start && isspace((unsigned char)end[-1])) end--;
    char *out = malloc((size_t)(end - start) + 1);
    if (!out) tensor_fatal("prompt_builder", "out of memory");
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = 0;
    return out;
}

static const Slot *find_slot(const PromptGrammar *g, const char *name, size_t length) {
    for (int s = 0; s < g->n_slots; s++)
        if (strlen(g->slots[s].name) == length && !strncmp(g->slots[s].name, name, length)) return &g->slots[s];
    return NULL;
}

static bool is_builtin_placeholder(const char *name, size_t length) {
    static const char *const names[] = {"class", "a_class", "domain", "a_domain"};
    for (int i = 0; i < 4; i++)
        if (strlen(names[i]) == length && !strncmp(names[i], name, length)) return true;
    return false;
}

PromptGrammar *prompt_grammar_parse(const char *text, const char *where, char *error, size_t error_size) {
    PromptGrammar *g = calloc(1, sizeof *g);
    if (!g) tensor_fatal("prompt_builder", "out of memory");
    int line_number = 0, status = 0;
    for (const char *line = text; *line && status == 0;) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        line_number++;
        const char *at = line;
        while (at < end && isspace((unsigned char)*at)) at++;
        if (at < end && *at != '#') {
#define FAIL(...) (status = -1, snprintf(error, error_size, __VA_ARGS__))
            if (!strncmp(at, "template:", 9)) {
                if (g->n_templates == MAX_TEMPLATES) FAIL("%s:%d: more than %d templates", where, line_number, MAX_TEMPLATES);
                else g->templates[g->n_templates++] = trimmed_copy(at + 9, end);
            } else if (!strncmp(at, "slot ", 5)) {
                const char *colon = memchr(at, ':', (size_t)(end - at));
                char *name = colon ? trimmed_copy(at + 5, colon) : NULL;
                if (!colon || !*name) FAIL("%s:%d: expected \"slot NAME: value | value | ...\"", where, line_number);
                else if (strlen(name) >= sizeof g->slots[0].name || is_builtin_placeholder(name, strlen(name)))
                    FAIL("%s:%d: slot name \"%s\" is too long or reserved (class, a_class, domain, a_domain)", where,
                         line_number, name);
                else if (find_slot(g, name, strlen(name))) FAIL("%s:%d: slot \"%s\" defined twice", where, line_number, name);
                else if (g->n_slots == MAX_SLOTS) FAIL("%s:%d: more than %d slots", where, line_number, MAX_SLOTS);
                else {
                    Slot *slot = &g->slots[g->n_slots++];
                    snprintf(slot->name, sizeof slot->name, "%s", name);
                    for (const char *v = colon + 1; v <= end && status == 0;) {
                        const char *bar = memchr(v, '|', (size_t)(end - v));
                        const char *stop = bar ? bar : end;
                        if (slot->n_values == MAX_VALUES) FAIL("%s:%d: more than %d values", where, line_number, MAX_VALUES);
                        else slot->values[slot->n_values++] = trimmed_copy(v, stop);
                        v = stop + 1;
                    }
                }
                free(name);
            } else {
                FAIL("%s:%d: expected \"template: ...\" or \"slot NAME: a | b\"", where, line_number);
            }
        }
        line = *end ? end + 1 : end;
    }
    if (status == 0 && g->n_templates == 0) FAIL("%s: no template", where);
    // Every placeholder must be built in or a slot with values.
    for (int t = 0; t < g->n_templates && status == 0; t++) {
        for (const char *at = strchr(g->templates[t], '{'); at && status == 0; at = strchr(at + 1, '{')) {
            const char *close = strchr(at, '}');
            if (!close) {
                FAIL("%s: template \"%s\": unclosed {", where, g->templates[t]);
                break;
            }
            size_t length = (size_t)(close - at - 1);
            const Slot *slot = find_slot(g, at + 1, length);
            if (!slot && length > 2 && !strncmp(at + 1, "a_", 2)) slot = find_slot(g, at + 3, length - 2);
            if (!is_builtin_placeholder(at + 1, length) && !slot)
                FAIL("%s: template \"%s\": no slot {%.*s}", where, g->templates[t], (int)length, at + 1);
            else if (slot && slot->n_values == 0)
                FAIL("%s: slot %s has no values", where, slot->name);
        }
    }
#undef FAIL
    if (status != 0) {
        prompt_grammar_free(g);
        return NULL;
    }
    return g;
}

PromptGrammar *prompt_grammar_builtin(const char *name) {
    char error[256];
    const char *text = !strcmp(name, "world") ? WORLD : !strcmp(name, "world-clothing") ? WORLD_CLOTHING
                     : !strcmp(name, "photo") ? PHOTO : NULL;
    if (!text) return NULL;
    PromptGrammar *g = prompt_grammar_parse(text, name, error, sizeof error);
    if (!g) tensor_fatal("prompt_builder", "built-in grammar %s: %s", name, error);
    return g;
}

PromptGrammar *prompt_grammar_load(const char *path, char *error, size_t error_size) {
    char *text = fs_read_text(path, error, error_size);
    if (!text) return NULL;
    PromptGrammar *g = prompt_grammar_parse(text, path, error, error_size);
    free(text);
    return g;
}

// Appends text to out (size bytes). An article asked for (*pending) goes before the first
// non-space character appended: "a" or "an" before a vowel letter, so an empty {a_tint} still
// gives "a t-shirt".
static void put(char *out, size_t size, size_t *used, const char *text, bool *pending) {
    if (*pending) {
        while (*text == ' ') text++;
        if (!*text) return;
        bool vowel = strchr("aeiouAEIOU", text[0]) != NULL;
        *used += (size_t)snprintf(out + *used, *used < size ? size - *used : 0, "%s ", vowel ? "an" : "a");
        *pending = false;
    }
    *used += (size_t)snprintf(out + *used, *used < size ? size - *used : 0, "%s", text);
}

// One prompt from the stream; spaces collapsed (an empty {domain} leaves none doubled).
static void draw(const PromptGrammar *g, const char *phrase, const char *domain, Rng *rng, char *out, size_t size) {
    const char *template_text = g->templates[rng_int(rng, g->n_templates)];
    char raw[2048], literal[2];
    size_t used = 0;
    bool pending = false;
    raw[0] = 0;
    for (const char *at = template_text; *at && used + 1 < sizeof raw;) {
        if (*at != '{') {
            literal[0] = *at++, literal[1] = 0;
            put(raw, sizeof raw, &used, literal, &pending);
            continue;
        }
        const char *close = strchr(at, '}');
        size_t length = (size_t)(close - at - 1);
        const char *name = at + 1;
        bool article = length > 2 && !strncmp(name, "a_", 2);
        const char *value;
        if (length == 5 && !strncmp(name, "class", 5)) value = phrase;
        else if (length == 7 && !strncmp(name, "a_class", 7)) value = phrase;
        else if (length == 6 && !strncmp(name, "domain", 6)) value = domain;
        else if (length == 8 && !strncmp(name, "a_domain", 8)) value = domain;
        else {
            const Slot *slot = find_slot(g, name, length);
            if (!slot) slot = find_slot(g, name + 2, length - 2);  // {a_name}: the slot "name"
            else article = false;
            value = slot->values[rng_int(rng, slot->n_values)];
        }
        pending |= article;
        put(raw, sizeof raw, &used, value, &pending);
        at = close + 1;
    }
    // Collapse runs of spaces, and a space before a comma.
    size_t n = 0;
    for (const char *c = raw; *c && n + 1 < size; c++) {
        if (*c == ' ' && (n == 0 || out[n - 1] == ' ' || c[1] == ',' || c[1] == 0)) continue;
        out[n++] = *c;
    }
    out[n] = 0;
}

void prompts_free(char **prompts, int64_t count) {
    for (int64_t i = 0; prompts && i < count; i++) free(prompts[i]);
    free(prompts);
}

char **prompts_build(const PromptGrammar *g, const PromptClass *classes, int n_classes, const char *domain, int per_class,
                     uint64_t seed, char *error, size_t error_size) {
    if (n_classes < 1 || per_class < 1) return snprintf(error, error_size, "no classes or no prompts asked for"), NULL;
    char **prompts = calloc((size_t)n_classes * (size_t)per_class, sizeof *prompts);
    if (!prompts) tensor_fatal("prompt_builder", "out of memory");
    for (int c = 0; c < n_classes; c++) {
        // The class's own stream, keyed by its label (FNV-1a): its prompts do not depend on which
        // other classes are asked for, or in which order.
        uint64_t stream = 1469598103934665603ull;
        for (const char *k = classes[c].label; *k; k++) stream = (stream ^ (unsigned char)*k) * 1099511628211ull;
        Rng rng = rng_make(seed, stream);
        StringMap seen = {0};
        int found = 0;
        // Enough draws that a grammar with per_class combinations or more almost surely yields
        // them; fewer distinct prompts after that means the grammar is too small.
        int64_t attempts = 200 + 50 * (int64_t)per_class;
        for (int64_t a = 0; a < attempts && found < per_class; a++) {
            char prompt[1024];
            draw(g, classes[c].phrase, domain ? domain : "", &rng, prompt, sizeof prompt);
            if (string_map_find(&seen, prompt, strlen(prompt))) continue;
            string_map_put(&seen, prompt, strlen(prompt), found);
            prompts[(size_t)c * (size_t)per_class + (size_t)found++] = strdup(prompt);
        }
        string_map_free(&seen);
        if (found < per_class) {
            snprintf(error, error_size, "the grammar gave only %d distinct prompts for class %s (\"%s\"); ask for fewer per class "
                     "or add templates or slot values", found, classes[c].label, classes[c].phrase);
            prompts_free(prompts, (int64_t)n_classes * per_class);
            return NULL;
        }
    }
    return prompts;
}

int prompts_write(const char *path, const PromptClass *classes, int n_classes, char **prompts, int per_class, char *error,
                  size_t error_size) {
    size_t size = 1 << 16, used = 0;
    char *text = malloc(size);
    if (!text) tensor_fatal("prompt_builder", "out of memory");
    for (int c = 0; c < n_classes; c++)
        for (int k = 0; k < per_class; k++) {
            const char *prompt = prompts[(size_t)c * (size_t)per_class + (size_t)k];
            size_t need = strlen(classes[c].label) + strlen(prompt) + 3;
            if (used + need >= size) {
                size = 2 * size + need;
                char *grown = realloc(text, size);
                if (!grown) tensor_fatal("prompt_builder", "out of memory");
                text = grown;
            }
            used += (size_t)snprintf(text + used, size - used, "%s\t%s\n", classes[c].label, prompt);
        }
    text[used] = 0;
    int status = fs_write_text(path, text);
    if (status != 0) snprintf(error, error_size, "%s: cannot write: %s", path, strerror(errno));
    free(text);
    return status;
}
