// Comparing what our models compute with golden tensors that tests/ref scripts wrote with the
// reference implementations (PyTorch, timm, diffusers) into a safetensors file: one failure line
// per compared tensor, naming its worst element.
#pragma once
#include <stdbool.h>

#include "engine/json.h"
#include "engine/safetensors.h"
#include "engine/params.h"
#include "engine/tensor.h"

// An element passes when |actual - expected| <= atol * scale + rtol * |expected| (+ a floor), where
// scale is the largest |expected| of the tensor: gradients of different layers differ by orders of
// magnitude, and a per-tensor scale keeps one tolerance meaningful for all of them.
typedef struct {
    double atol, rtol;
} Tolerance;

// One golden case: its tensors are "<name>/<suffix>" in file; used[] records which were read, so a
// test can check that none was left unchecked.
typedef struct {
    SafetensorsFile *file;
    const char *name;
    bool device;  // computed on the (emulated) CUDA device: named so in messages
    const SafetensorsEntry *used[1024];
    int n_used;
} GoldenCase;

// A case of file (computed on the emulated device when device), and its end: checks that every
// "<name>/..." tensor was read (golden_check_all_used) and frees it.
GoldenCase *golden_case_begin(SafetensorsFile *file, const char *name, bool device);
void golden_case_end(GoldenCase *c);

// TAILOR_GOLDEN_ERRORS=1: print each comparison's largest error and the share of its tolerance used.
extern bool golden_print_errors;

// Opens $TAILOR_ROOT/tests/golden/<file> (TAILOR_ROOT defaults to ".") and sets golden_print_errors
// from the environment. NULL, after one line saying why, when it cannot be read: the cases then fail.
SafetensorsFile *golden_open(const char *file);
// A case's configuration, the JSON text stored as the metadata value "<name>", parsed; NULL (and a
// failed check) when absent or malformed. The caller json_free()s it.
JsonValue *golden_case_config(SafetensorsFile *file, const char *name);

const SafetensorsEntry *golden_get(GoldenCase *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
Shape golden_entry_shape(const SafetensorsEntry *e);
Tensor *golden_entry_tensor(const SafetensorsEntry *e);  // a CPU tensor over the entry's data
double golden_entry_get(const SafetensorsEntry *e, int64_t i);
// Compares a tensor (any device) with a golden one. floor: an absolute amount always allowed.
void golden_compare_floor(GoldenCase *c, const char *what, Tensor *actual, const SafetensorsEntry *expected, Tolerance tol,
                          double floor);
void golden_compare(GoldenCase *c, const char *what, Tensor *actual, const SafetensorsEntry *expected, Tolerance tol);

// Loads every parameter and buffer of store from "<case>/init/<name>" (f32, same shapes), and checks
// that the golden state dict has no tensor the store lacks (no unexpected names). Call before
// params_finalize.
void golden_load_state(GoldenCase *c, ParamStore *store);
// Compares the gradient of every trainable parameter of store with "<case>/grad/<name>" (buffers
// have none); returns how many were compared.
int golden_compare_parameter_grads(GoldenCase *c, const ParamStore *store, Tolerance tol);
// Checks that every "<case>/..." tensor of the file was read through golden_get.
void golden_check_all_used(GoldenCase *c);
