#include "tests/golden_compare.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dtype.h"
#include "tests/check.h"

bool golden_print_errors;

GoldenCase *golden_case_begin(SafetensorsFile *file, const char *name, bool device) {
    GoldenCase *c = calloc(1, sizeof *c);
    if (!c) tensor_fatal("golden", "out of memory");
    *c = (GoldenCase){.file = file, .name = name, .device = device};
    return c;
}

void golden_case_end(GoldenCase *c) {
    golden_check_all_used(c);
    free(c);
}

SafetensorsFile *golden_open(const char *file) {
    const char *root = getenv("TAILOR_ROOT");
    char path[1024], error[256];
    snprintf(path, sizeof path, "%s/tests/golden/%s", root ? root : ".", file);
    golden_print_errors = getenv("TAILOR_GOLDEN_ERRORS") != NULL;
    SafetensorsFile *golden = NULL;
    if (safetensors_open(path, &golden, error, sizeof error) != 0) printf("  cannot read %s: %s\n", path, error);
    return golden;
}

JsonValue *golden_case_config(SafetensorsFile *file, const char *name) {
    const char *text = file ? safetensors_metadata(file, name) : NULL;
    CHECK_MSG(text, "golden case %s has no configuration", name);
    if (!text) return NULL;
    char error[256];
    JsonValue *config = json_parse(text, strlen(text), error, sizeof error);
    CHECK_MSG(config, "golden case %s: %s", name, error);
    return config;
}

const SafetensorsEntry *golden_get(GoldenCase *c, const char *fmt, ...) {
    char suffix[256], name[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(suffix, sizeof suffix, fmt, args);
    va_end(args);
    snprintf(name, sizeof name, "%s/%s", c->name, suffix);
    const SafetensorsEntry *e = safetensors_find(c->file, name);
    if (e && c->n_used < (int)(sizeof c->used / sizeof c->used[0])) c->used[c->n_used++] = e;
    return e;
}

Shape golden_entry_shape(const SafetensorsEntry *e) {
    Shape s = {.ndim = e->ndim};
    for (int d = 0; d < e->ndim; d++) s.dims[d] = e->shape[d];
    return s;
}

Tensor *golden_entry_tensor(const SafetensorsEntry *e) { return tensor_from_data(e->dtype, golden_entry_shape(e), e->data); }

double golden_entry_get(const SafetensorsEntry *e, int64_t i) {
    unsigned char bytes[8];
    size_t size = dtype_size(e->dtype);
    memcpy(bytes, (const unsigned char *)e->data + (size_t)i * size, size);
    return dtype_load(bytes, e->dtype, 0);
}

void golden_compare_floor(GoldenCase *c, const char *what, Tensor *actual, const SafetensorsEntry *expected, Tolerance tol,
                          double floor) {
    const char *where = c->device ? " (device)" : "";
    if (!expected) {
        CHECK_MSG(expected, "%s%s: %s: no golden tensor", c->name, where, what);
        return;
    }
    if (!actual) {
        CHECK_MSG(actual, "%s%s: %s: no tensor computed", c->name, where, what);
        return;
    }
    char a_shape[96], e_shape[96];
    if (!shape_equal(tensor_shape(actual), golden_entry_shape(expected))) {
        CHECK_MSG(false, "%s%s: %s: shape %s, expected %s", c->name, where, what,
                  tensor_shape_string(actual, a_shape, sizeof a_shape),
                  shape_string(golden_entry_shape(expected), e_shape, sizeof e_shape));
        return;
    }
    TensorScope scope = tensor_scope_begin();
    Tensor *host = tensor_to_device_raw(actual, device_cpu());
    int64_t n = tensor_numel(host), bad = 0, worst = -1;
    double scale = 0, max_diff = 0, max_used = 0, worst_excess = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(golden_entry_get(expected, i)));
    for (int64_t i = 0; i < n; i++) {
        double a = tensor_get(host, i), e = golden_entry_get(expected, i), diff = fabs(a - e);
        double allowed = tol.atol * scale + tol.rtol * fabs(e) + floor;
        if (!(diff <= allowed)) {
            double excess = isnan(diff) ? INFINITY : diff - allowed;
            if (worst < 0 || excess > worst_excess) worst = i, worst_excess = excess;
            bad++;
        }
        if (diff > max_diff || isnan(diff)) max_diff = diff;
        if (allowed > 0 && diff / allowed > max_used) max_used = diff / allowed;
    }
    if (golden_print_errors)
        printf("  error %-18s %-6s %-48s max |diff| %.3g, %.3g of scale %.3g, %.3f of the allowed\n", c->name,
               c->device ? "device" : "cpu", what, max_diff, scale > 0 ? max_diff / scale : 0.0, scale, max_used);
    CHECK_MSG(bad == 0, "%s%s: %s: %lld of %lld elements differ; worst %lld: %.9g, expected %.9g (scale %.3g)", c->name,
              where, what, (long long)bad, (long long)n, (long long)worst, worst >= 0 ? tensor_get(host, worst) : 0.0,
              worst >= 0 ? golden_entry_get(expected, worst) : 0.0, scale);
    tensor_scope_end(scope);
}

void golden_compare(GoldenCase *c, const char *what, Tensor *actual, const SafetensorsEntry *expected, Tolerance tol) {
    golden_compare_floor(c, what, actual, expected, tol, 0.0);
}

void golden_load_state(GoldenCase *c, ParamStore *store) {
    int loaded = 0, expected = 0;
    for (int i = 0; i < store->count; i++) {
        const SafetensorsEntry *e = golden_get(c, "init/%s", store->items[i].name);
        Tensor *value = store->items[i].value;
        bool fits = e && e->dtype == DTYPE_F32 && value->dtype == DTYPE_F32 && shape_equal(tensor_shape(value), golden_entry_shape(e));
        CHECK_MSG(fits, "%s: no golden f32 weight %s of this shape", c->name, store->items[i].name);
        if (fits) memcpy(tensor_data(value), e->data, (size_t)tensor_numel(value) * sizeof(float)), loaded++;
    }
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/init/", c->name);
    for (int i = 0; i < safetensors_count(c->file); i++)
        expected += !strncmp(safetensors_entry(c->file, i)->name, prefix, strlen(prefix));
    CHECK_MSG(loaded == expected, "%s: loaded %d weights, the reference has %d", c->name, loaded, expected);
}

int golden_compare_parameter_grads(GoldenCase *c, const ParamStore *store, Tolerance tol) {
    int compared = 0;
    for (int i = 0; i < store->count; i++) {
        if (store->items[i].group < 0) continue;
        char what[300];
        snprintf(what, sizeof what, "grad %s", store->items[i].name);
        golden_compare(c, what, store->items[i].value->grad, golden_get(c, "grad/%s", store->items[i].name), tol);
        compared++;
    }
    return compared;
}

void golden_check_all_used(GoldenCase *c) {
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/", c->name);
    for (int i = 0; i < safetensors_count(c->file); i++) {
        const SafetensorsEntry *e = safetensors_entry(c->file, i);
        bool seen = strncmp(e->name, prefix, strlen(prefix)) != 0;
        for (int k = 0; k < c->n_used && !seen; k++) seen = c->used[k] == e;
        CHECK_MSG(seen, "%s: golden tensor %s was not checked", c->name, e->name);
    }
}
