// Reading IDX files, the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/,
// "FILE FORMATS FOR THE MNIST DATABASE"), plain or gzip-compressed (the .gz files those datasets
// ship; detected by the gzip magic 1f 8b, not by the file name).
//
// Format: bytes 0-1 are 0; byte 2 the element type (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32,
// 0x0E f64); byte 3 the number of dimensions; then one big-endian u32 per dimension; then the
// elements in row-major (C) order, big-endian. Loading converts the elements to host byte order.
//
// Validation is strict, as torchvision's read_sn3_pascalvincent_tensor is not: the file must hold
// exactly the bytes its dimensions say (a shorter or longer file is an error, so a truncated
// download or a concatenated file is caught here). Every failure is one line "<path>: <problem>".
#pragma once
#include <stddef.h>
#include <stdint.h>

#define IDX_MAX_DIMS 8

// The values are the type bytes of the format.
typedef enum {
    IDX_U8 = 0x08,
    IDX_I8 = 0x09,
    IDX_I16 = 0x0B,
    IDX_I32 = 0x0C,
    IDX_F32 = 0x0D,
    IDX_F64 = 0x0E,
} IdxType;

typedef struct {
    IdxType type;
    int ndim;                       // 0..IDX_MAX_DIMS (0: one element)
    int64_t dims[IDX_MAX_DIMS];     // dims[ndim..] are 0
    void *data;                     // host byte order, row-major; owned, release with idx_free
    size_t bytes;                   // element count * idx_element_size(type)
} IdxArray;

// 0 on success; on failure -1, *out zeroed, and one line in error ("<path>: <problem>").
int idx_load(const char *path, IdxArray *out, char *error, size_t error_size);
void idx_free(IdxArray *array);  // frees data and zeroes the struct; a zeroed struct is fine

// Bytes per element of a known type, 0 for any other byte.
size_t idx_element_size(int type);
// "u8", "i8", "i16", "i32", "f32", "f64", or "unknown".
const char *idx_type_name(int type);
// Number of elements: the product of the dims (1 when ndim is 0).
int64_t idx_element_count(const IdxArray *array);
// Element i converted to int64 (float types are truncated toward zero); i must be in range.
int64_t idx_get_int64(const IdxArray *array, int64_t i);
