// Reading and writing safetensors files (https://github.com/huggingface/safetensors), independent
// of the Tensor type.
//
// Format: 8-byte little-endian u64 N; N bytes of UTF-8 JSON object (the header); the data buffer.
// Each header key except "__metadata__" names a tensor and maps to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// with [begin, end) relative to the start of the data buffer; "__metadata__" maps to an object of
// string -> string. Data is little-endian, row-major (C order).
//
// Reading maps the file (read-only, MAP_PRIVATE) and never copies tensor data: entry data pointers
// point into the mapping and stay valid until safetensors_close. They are aligned to the element
// size when the file was written by our writer or the reference writers (header padded to a
// multiple of 8, larger elements first), but a file from another writer may leave them unaligned:
// callers that read elements in place must check ((uintptr_t)data % dtype_size(dtype)) == 0 or
// memcpy. (Truncating a file while it is mapped raises SIGBUS, as with any mmap reader.)
//
// Validation is strict; every failure is one line naming the file, the tensor when there is one,
// and the problem: "<path>: tensor '<name>': <problem>" or "<path>: <problem>". Dtypes are the
// ones DType has (F32, F64, F16, BF16, I32, I64, U8); others (BOOL, I8, F8_*, ...) are rejected.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define SAFETENSORS_MAX_DIMS 8
#define SAFETENSORS_MAX_HEADER_BYTES 100000000  // same limit as the reference implementation

typedef struct {
    const char *name;      // NUL-terminated UTF-8
    DType dtype;
    int ndim;              // 0 for a scalar
    int64_t shape[SAFETENSORS_MAX_DIMS];  // shape[ndim..] are 0
    const void *data;      // into the mapping; may be unaligned, see above
    size_t nbytes;         // product(shape) * dtype_size(dtype); may be 0
    size_t offset;         // data_offsets[0], relative to the data buffer
} SafetensorsEntry;

typedef struct SafetensorsFile SafetensorsFile;

// 0 on success; on failure -1, *out = NULL, and one line in error.
int safetensors_open(const char *path, SafetensorsFile **out, char *error, size_t error_size);
void safetensors_close(SafetensorsFile *file);  // NULL is fine

const char *safetensors_path(const SafetensorsFile *file);
// Entries are in data-offset order (the order the bytes lie in the file; zero-sized tensors that
// share an offset keep their header order). For files from our writer see the writer's order.
int safetensors_count(const SafetensorsFile *file);
const SafetensorsEntry *safetensors_entry(const SafetensorsFile *file, int index);  // NULL if out of range
const SafetensorsEntry *safetensors_find(const SafetensorsFile *file, const char *name);  // O(log n)
// "__metadata__": value for key, or NULL if absent. Pairs by index are in header order.
const char *safetensors_metadata(const SafetensorsFile *file, const char *key);
int safetensors_metadata_count(const SafetensorsFile *file);
const char *safetensors_metadata_key(const SafetensorsFile *file, int index);
const char *safetensors_metadata_value(const SafetensorsFile *file, int index);

// Writer. Collect tensors (their data pointers must stay valid until safetensors_writer_write) and
// metadata, then write. Output layout: "__metadata__" first (if any), then the tensors sorted by
// element size, largest first, and in the order added among equal sizes (the reference writer
// does the same, by dtype then name) -- with the header padded by spaces to a multiple of 8, this
// keeps every tensor aligned to its element size. Header order equals data order.
// The file is written to "<path>.tmp.<pid>", flushed and fsync'd, then renamed over path, so a
// crash never leaves a half-written file under the real name.
typedef struct SafetensorsWriter SafetensorsWriter;

SafetensorsWriter *safetensors_writer_new(void);  // NULL only when out of memory
// Copies name and shape (not data). Returns 0, or -1 for: a NULL/"__metadata__"/non-UTF-8 name,
// a duplicate name, an unknown dtype, ndim outside [0, 8], a negative dimension, a byte size that
// overflows, or NULL data for a non-empty tensor. A failed add is remembered: the later
// safetensors_writer_write fails with the same message (a checkpoint must not silently miss a
// tensor). safetensors_writer_error gives the message.
int safetensors_writer_add(SafetensorsWriter *writer, const char *name, DType dtype, int ndim,
                           const int64_t *shape, const void *data);
// Copies key and value; setting a key again replaces its value. Invalid UTF-8 fails the write.
void safetensors_writer_set_metadata(SafetensorsWriter *writer, const char *key, const char *value);
// 0 on success; -1 with one line in error ("<path>: <problem>").
int safetensors_writer_write(SafetensorsWriter *writer, const char *path, char *error,
                             size_t error_size);
const char *safetensors_writer_error(const SafetensorsWriter *writer);  // "" when none
void safetensors_writer_free(SafetensorsWriter *writer);  // NULL is fine
