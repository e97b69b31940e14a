// IDX reader: the whole file is read (and inflated when it is gzip) into memory, then the header is
// checked against the byte count before any element is touched. See idx.h for the format.
#include "data/idx.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

__attribute__((format(printf, 4, 5))) static void report(char *error, size_t error_size,
                                                         const char *path, const char *format, ...) {
    if (!error || error_size == 0) return;
    int written = snprintf(error, error_size, "%s: ", path);
    if (written < 0 || (size_t)written >= error_size) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error + written, error_size - (size_t)written, format, args);
    va_end(args);
}

size_t idx_element_size(int type) {
    switch (type) {
    case IDX_U8: case IDX_I8: return 1;
    case IDX_I16: return 2;
    case IDX_I32: case IDX_F32: return 4;
    case IDX_F64: return 8;
    default: return 0;
    }
}

const char *idx_type_name(int type) {
    switch (type) {
    case IDX_U8: return "u8";
    case IDX_I8: return "i8";
    case IDX_I16: return "i16";
    case IDX_I32: return "i32";
    case IDX_F32: return "f32";
    case IDX_F64: return "f64";
    default: return "unknown";
    }
}

int64_t idx_element_count(const IdxArray *array) {
    int64_t count = 1;
    for (int d = 0; d < array->ndim; d++) count *= array->dims[d];
    return count;
}

int64_t idx_get_int64(const IdxArray *array, int64_t i) {
    const char *base = (const char *)array->data;
    switch (array->type) {
    case IDX_U8: return ((const uint8_t *)base)[i];
    case IDX_I8: return ((const int8_t *)base)[i];
    case IDX_I16: { int16_t v; memcpy(&v, base + i * 2, 2); return v; }
    case IDX_I32: { int32_t v; memcpy(&v, base + i * 4, 4); return v; }
    case IDX_F32: { float v; memcpy(&v, base + i * 4, 4); return (int64_t)v; }
    case IDX_F64: { double v; memcpy(&v, base + i * 8, 8); return (int64_t)v; }
    }
    return 0;
}

void idx_free(IdxArray *array) {
    if (!array) return;
    free(array->data);
    memset(array, 0, sizeof(*array));
}

// Reads the whole file. 0 on success; -1 with the error reported.
static int read_file_bytes(const char *path, unsigned char **out, size_t *out_size, char *error,
                           size_t error_size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        report(error, error_size, path, "cannot open: %s", strerror(errno));
        return -1;
    }
    size_t capacity = 1 << 16, size = 0;
    unsigned char *buffer = malloc(capacity);
    for (;;) {
        if (!buffer) break;
        size += fread(buffer + size, 1, capacity - size, file);
        if (size < capacity) break;
        unsigned char *grown = realloc(buffer, capacity * 2);
        if (!grown) { free(buffer); buffer = NULL; break; }
        buffer = grown;
        capacity *= 2;
    }
    int read_failed = ferror(file);
    fclose(file);
    if (!buffer) {
        report(error, error_size, path, "out of memory reading the file");
        return -1;
    }
    if (read_failed) {
        free(buffer);
        report(error, error_size, path, "read error");
        return -1;
    }
    *out = buffer;
    *out_size = size;
    return 0;
}

// Inflates a gzip file (all members, as gunzip does) into a new buffer. The output grows by
// doubling; a stream that ends early, has a bad header or a bad CRC is "corrupt gzip".
static int gunzip_bytes(const char *path, const unsigned char *in, size_t in_size,
                        unsigned char **out, size_t *out_size, char *error, size_t error_size) {
    z_stream stream;
    memset(&stream, 0, sizeof(stream));
    if (inflateInit2(&stream, 15 + 16) != Z_OK) {  // 15 + 16: gzip wrapper only
        report(error, error_size, path, "zlib inflateInit2 failed");
        return -1;
    }
    size_t capacity = in_size * 4 + 1024, size = 0;
    unsigned char *buffer = malloc(capacity);
    size_t consumed = 0;
    const char *problem = NULL;
    while (buffer) {
        // zlib counts in uInt; feed and drain in chunks below UINT_MAX.
        size_t in_chunk = in_size - consumed < UINT_MAX ? in_size - consumed : UINT_MAX;
        if (size == capacity) {
            unsigned char *grown = realloc(buffer, capacity * 2);
            if (!grown) { free(buffer); buffer = NULL; break; }
            buffer = grown;
            capacity *= 2;
        }
        size_t out_chunk = capacity - size < UINT_MAX ? capacity - size : UINT_MAX;
        stream.next_in = (Bytef *)(in + consumed);
        stream.avail_in = (uInt)in_chunk;
        stream.next_out = buffer + size;
        stream.avail_out = (uInt)out_chunk;
        int status = inflate(&stream, Z_NO_FLUSH);
        consumed += in_chunk - stream.avail_in;
        size += out_chunk - stream.avail_out;
        if (status == Z_STREAM_END) {
            // Another member may follow (concatenated .gz files); trailing zero padding is ignored.
            size_t rest = consumed;
            while (rest < in_size && in[rest] == 0) rest++;
            if (rest == in_size) break;
            if (in_size - consumed < 2 || in[consumed] != 0x1f || in[consumed + 1] != 0x8b) {
                problem = "corrupt gzip: trailing bytes after the compressed data";
                break;
            }
            inflateReset(&stream);
            continue;
        }
        if (status == Z_DATA_ERROR) {
            problem = stream.msg ? stream.msg : "invalid compressed data";
            break;
        }
        if (status == Z_MEM_ERROR) { free(buffer); buffer = NULL; break; }
        if (status == Z_BUF_ERROR || status == Z_OK) {
            // No progress possible with all input consumed: the stream ends early.
            if (consumed == in_size && stream.avail_out != 0) {
                problem = "unexpected end of compressed data (truncated file)";
                break;
            }
            continue;
        }
        problem = stream.msg ? stream.msg : "inflate failed";
        break;
    }
    inflateEnd(&stream);
    if (!buffer) {
        report(error, error_size, path, "out of memory inflating the file");
        return -1;
    }
    if (problem) {
        free(buffer);
        report(error, error_size, path, "corrupt gzip: %s",
               strncmp(problem, "corrupt gzip: ", 14) == 0 ? problem + 14 : problem);
        return -1;
    }
    *out = buffer;
    *out_size = size;
    return 0;
}

static uint32_t read_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

int idx_load(const char *path, IdxArray *out, char *error, size_t error_size) {
    memset(out, 0, sizeof(*out));
    unsigned char *bytes = NULL;
    size_t size = 0;
    if (read_file_bytes(path, &bytes, &size, error, error_size) != 0) return -1;
    if (size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
        unsigned char *inflated = NULL;
        size_t inflated_size = 0;
        int status = gunzip_bytes(path, bytes, size, &inflated, &inflated_size, error, error_size);
        free(bytes);
        if (status != 0) return -1;
        bytes = inflated;
        size = inflated_size;
    }
    int result = -1;
    if (size < 4) {
        report(error, error_size, path, "not an IDX file: %zu bytes, shorter than the 4-byte header",
               size);
        goto done;
    }
    if (bytes[0] != 0 || bytes[1] != 0) {
        report(error, error_size, path,
               "not an IDX file: magic starts %02x %02x, expected 00 00 (type, ndim follow)",
               bytes[0], bytes[1]);
        goto done;
    }
    int type = bytes[2], ndim = bytes[3];
    size_t element_size = idx_element_size(type);
    if (element_size == 0) {
        report(error, error_size, path,
               "unknown IDX element type 0x%02x (expected 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, "
               "0x0D f32, 0x0E f64)", type);
        goto done;
    }
    if (ndim > IDX_MAX_DIMS) {
        report(error, error_size, path, "too many dimensions: %d (at most %d)", ndim, IDX_MAX_DIMS);
        goto done;
    }
    size_t header = 4 + 4 * (size_t)ndim;
    if (size < header) {
        report(error, error_size, path, "file too short: %zu bytes, the header of %d dims needs %zu",
               size, ndim, header);
        goto done;
    }
    // Product of the dims times the element size, refusing anything that does not fit in size_t
    // (or int64 for the dims) instead of wrapping.
    size_t expected = element_size;
    for (int d = 0; d < ndim; d++) {
        uint32_t dim = read_be32(bytes + 4 + 4 * d);
        out->dims[d] = dim;
        if (dim != 0 && expected > (SIZE_MAX / 2) / dim) {
            report(error, error_size, path, "dims overflow: the product of the %d dims is too large",
                   ndim);
            goto done;
        }
        expected *= dim;
    }
    size_t data_size = size - header;
    if (data_size != expected) {
        char shape[IDX_MAX_DIMS * 12 + 4];
        size_t at = 0;
        shape[0] = 0;
        for (int d = 0; d < ndim; d++)
            at += (size_t)snprintf(shape + at, sizeof(shape) - at, "%s%lld", d ? "x" : "",
                                   (long long)out->dims[d]);
        report(error, error_size, path,
               "size mismatch: %s dims [%s] need %zu data bytes, the file has %zu (%s)",
               idx_type_name(type), ndim ? shape : "", expected, data_size,
               data_size < expected ? "truncated" : "trailing bytes");
        goto done;
    }
    out->data = malloc(expected ? expected : 1);
    if (!out->data) {
        report(error, error_size, path, "out of memory for %zu bytes", expected);
        goto done;
    }
    // Big-endian to host: reverse each element's bytes on little-endian hosts.
    const unsigned char *src = bytes + header;
    unsigned char *dst = out->data;
    const uint16_t probe = 1;
    int little_endian = *(const unsigned char *)&probe == 1;
    if (element_size == 1 || !little_endian) {
        memcpy(dst, src, expected);
    } else {
        for (size_t i = 0; i < expected; i += element_size)
            for (size_t b = 0; b < element_size; b++) dst[i + b] = src[i + element_size - 1 - b];
    }
    out->type = (IdxType)type;
    out->ndim = ndim;
    out->bytes = expected;
    result = 0;
done:
    free(bytes);
    if (result != 0) idx_free(out);
    return result;
}
