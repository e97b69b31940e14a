// safetensors reader (mmap, zero-copy, strict validation) and writer (aligned layout, tmp+rename).
// The validation rules follow the reference implementation, huggingface/safetensors
// safetensors/src/tensor.rs (SafeTensors::read_metadata and Metadata::validate), and are stricter
// where it is lenient (noted at each place).
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

// The data buffer is little-endian; we hand out pointers to it as they are.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

struct SafetensorsFile {
    char *path;
    void *map;
    size_t map_size;
    JsonValue *header;                   // entry names and metadata strings point into it
    const JsonValue *metadata;           // the "__metadata__" object, or NULL
    int count;
    SafetensorsEntry *entries;           // in data-offset order
    const SafetensorsEntry **by_name;    // sorted by name, for binary search
};

// ---- messages ----

// Copies text into buffer for a one-line message: printable ASCII and whole UTF-8 sequences as
// they are, control characters (and every byte >= 0x80 if the text is not valid UTF-8) as \xNN,
// long names cut with "..." at a character boundary.
static const char *printable_n(const char *text, size_t length, char *buffer, size_t size) {
    size_t out = 0;
    int utf8 = json_utf8_valid(text, length);
    for (size_t i = 0; i < length;) {
        unsigned char c = (unsigned char)text[i];
        size_t n = 1;
        if (utf8 && c >= 0x80) n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (out + 8 >= size) {  // room for the longest piece (4 bytes) plus "..." and the NUL
            memcpy(buffer + out, "...", 3);
            out += 3;
            break;
        }
        if ((c >= 0x20 && c < 0x7f) || (utf8 && c >= 0x80)) {
            memcpy(buffer + out, text + i, n);
            out += n;
        } else {
            snprintf(buffer + out, size - out, "\\x%02x", c);
            out += 4;
        }
        i += n;
    }
    buffer[out] = '\0';
    return buffer;
}

static const char *printable(const char *text, char *buffer, size_t size) {
    return printable_n(text, strlen(text), buffer, size);
}

// "a number", "an array", "null", ... for "expected X, got Y" messages.
static const char *describe_type(const JsonValue *value) {
    switch (json_type(value)) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "an unknown value";
}

// Byte size of a tensor, with the reference's overflow rule (ValidationOverflow): the running
// product of the dimensions must never overflow 64 bits, and neither may elements * element_size
// (nor exceed SIZE_MAX here). Returns -1 on overflow.
static int shape_byte_size(const int64_t *shape, int ndim, size_t element_size, uint64_t *out) {
    uint64_t elements = 1;
    for (int d = 0; d < ndim; d++) {
        uint64_t size = (uint64_t)shape[d];
        if (size != 0 && elements > UINT64_MAX / size) return -1;
        elements *= size;
    }
    if (elements > UINT64_MAX / element_size || elements * element_size > SIZE_MAX) return -1;
    *out = elements * element_size;
    return 0;
}

// Writes "<path>: tensor '<name>': <problem>" (or "<path>: <problem>" when name is NULL).
__attribute__((format(printf, 5, 6))) static void report(char *error, size_t error_size,
                                                         const char *path, const char *name,
                                                         const char *format, ...) {
    if (!error || error_size == 0) return;
    char shown[256];
    int written = name ? snprintf(error, error_size, "%s: tensor '%s': ", path,
                                  printable(name, shown, sizeof shown))
                       : snprintf(error, error_size, "%s: ", path);
    if (written < 0) written = 0;
    if ((size_t)written >= error_size) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error + written, error_size - (size_t)written, format, args);
    va_end(args);
}

// "[2, 3, 4]" into buffer, for messages.
static const char *format_shape(const int64_t *shape, int ndim, char *buffer, size_t size) {
    size_t out = 0;
    out += (size_t)snprintf(buffer, size, "[");
    for (int i = 0; i < ndim && out < size; i++)
        out += (size_t)snprintf(buffer + out, size - out, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (out < size) snprintf(buffer + out, size - out, "]");
    return buffer;
}

// ---- reading ----

static const char SUPPORTED_DTYPES[] = "F32, F64, F16, BF16, I32, I64, U8";

// An entry before it is placed in data-offset order.
typedef struct {
    SafetensorsEntry entry;
    uint64_t begin, end;
    size_t header_index;
} Slot;

static int compare_slots(const void *a, const void *b) {
    const Slot *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->header_index > y->header_index) - (x->header_index < y->header_index);
}

static int compare_entry_names(const void *a, const void *b) {
    const SafetensorsEntry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

// Checks one header entry and fills slot; on failure writes the message and returns -1.
static int parse_entry(const char *path, const char *name, const JsonValue *value,
                       uint64_t data_size, Slot *slot, char *error, size_t error_size) {
    if (json_type(value) != JSON_OBJECT) {
        report(error, error_size, path, name,
               "expected an object with dtype, shape and data_offsets, got %s",
               describe_type(value));
        return -1;
    }
    char shown[128];
    long duplicate = json_object_duplicate(value);
    if (duplicate >= 0) {
        report(error, error_size, path, name, "field '%s' appears twice",
               printable(json_key(value, (size_t)duplicate), shown, sizeof shown));
        return -1;
    }
    // The reference ignores unknown fields (serde without deny_unknown_fields); we reject them,
    // since a misspelt field is more likely a broken writer than an extension.
    for (size_t i = 0; i < json_length(value); i++) {
        const char *key = json_key(value, i);
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets")) {
            report(error, error_size, path, name,
                   "unexpected field '%s' (expected dtype, shape, data_offsets)",
                   printable(key, shown, sizeof shown));
            return -1;
        }
    }
    static const char *const required[] = {"dtype", "shape", "data_offsets"};
    for (int i = 0; i < 3; i++) {
        if (!json_get(value, required[i])) {
            report(error, error_size, path, name, "missing field '%s'", required[i]);
            return -1;
        }
    }

    const JsonValue *dtype_value = json_get(value, "dtype");
    const char *dtype_string = json_string(dtype_value);
    if (!dtype_string) {
        report(error, error_size, path, name, "dtype must be a string, got %s",
               describe_type(dtype_value));
        return -1;
    }
    int dtype = dtype_from_name(dtype_string);
    if (dtype < 0) {
        report(error, error_size, path, name, "unsupported dtype '%s' (supported: %s)",
               printable(dtype_string, shown, sizeof shown), SUPPORTED_DTYPES);
        return -1;
    }

    SafetensorsEntry *entry = &slot->entry;
    memset(entry, 0, sizeof *entry);
    entry->name = name;
    entry->dtype = (DType)dtype;
    const JsonValue *shape = json_get(value, "shape");
    if (json_type(shape) != JSON_ARRAY) {
        report(error, error_size, path, name, "shape must be an array of integers, got %s",
               describe_type(shape));
        return -1;
    }
    if (json_length(shape) > SAFETENSORS_MAX_DIMS) {
        report(error, error_size, path, name, "shape has %zu dimensions, at most %d are supported",
               json_length(shape), SAFETENSORS_MAX_DIMS);
        return -1;
    }
    entry->ndim = (int)json_length(shape);
    for (int d = 0; d < entry->ndim; d++) {
        const JsonValue *dim = json_at(shape, (size_t)d);
        int64_t size;
        if (json_int64(dim, &size) != 0) {
            if (json_type(dim) == JSON_NUMBER)
                report(error, error_size, path, name,
                       "shape[%d] = %.17g is not an integer (or does not fit 64 bits)", d,
                       json_number(dim));
            else
                report(error, error_size, path, name,
                       "shape[%d] is %s, expected a non-negative integer", d, describe_type(dim));
            return -1;
        }
        if (size < 0) {
            report(error, error_size, path, name,
                   "shape[%d] is %lld, expected a non-negative integer", d, (long long)size);
            return -1;
        }
        entry->shape[d] = size;
    }
    char shape_text[256];
    format_shape(entry->shape, entry->ndim, shape_text, sizeof shape_text);
    uint64_t nbytes;
    if (shape_byte_size(entry->shape, entry->ndim, dtype_size(entry->dtype), &nbytes)) {
        report(error, error_size, path, name,
               "shape %s of %s overflows: its byte size does not fit 64 bits", shape_text,
               dtype_string);
        return -1;
    }

    const JsonValue *offsets = json_get(value, "data_offsets");
    int64_t begin, end;
    if (json_type(offsets) != JSON_ARRAY || json_length(offsets) != 2 ||
        json_int64(json_at(offsets, 0), &begin) != 0 ||
        json_int64(json_at(offsets, 1), &end) != 0) {
        report(error, error_size, path, name,
               "data_offsets must be an array of two integers [begin, end]");
        return -1;
    }
    if (begin < 0 || end < 0) {
        report(error, error_size, path, name, "data_offsets [%lld, %lld] are negative",
               (long long)begin, (long long)end);
        return -1;
    }
    if (begin > end) {
        report(error, error_size, path, name,
               "data_offsets [%lld, %lld] have begin after end", (long long)begin,
               (long long)end);
        return -1;
    }
    if ((uint64_t)(end - begin) != nbytes) {
        report(error, error_size, path, name,
               "shape %s of %s needs %llu bytes but data_offsets [%lld, %lld] hold %llu",
               shape_text, dtype_string, (unsigned long long)nbytes, (long long)begin,
               (long long)end, (unsigned long long)(end - begin));
        return -1;
    }
    if ((uint64_t)end > data_size) {
        report(error, error_size, path, name,
               "data_offsets [%lld, %lld] go beyond the end of the data buffer (%llu bytes)",
               (long long)begin, (long long)end, (unsigned long long)data_size);
        return -1;
    }
    entry->offset = (size_t)begin;
    entry->nbytes = (size_t)nbytes;
    slot->begin = (uint64_t)begin;
    slot->end = (uint64_t)end;
    return 0;
}

// Checks "__metadata__": an object of string -> string (null is accepted as "no metadata", as the
// reference's Option<HashMap<String, String>> does).
static int check_metadata(const char *path, const JsonValue *metadata, char *error,
                          size_t error_size) {
    if (json_type(metadata) == JSON_NULL) return 0;
    if (json_type(metadata) != JSON_OBJECT) {
        report(error, error_size, path, NULL,
               "__metadata__ must be an object of string values, got %s",
               describe_type(metadata));
        return -1;
    }
    char shown[128];
    long duplicate = json_object_duplicate(metadata);
    if (duplicate >= 0) {
        report(error, error_size, path, NULL, "__metadata__ key '%s' appears twice",
               printable(json_key(metadata, (size_t)duplicate), shown, sizeof shown));
        return -1;
    }
    for (size_t i = 0; i < json_length(metadata); i++) {
        const char *key = json_key(metadata, i);
        const JsonValue *value = json_value_at(metadata, i);
        if (strlen(key) != metadata->key_lengths[i]) {
            report(error, error_size, path, NULL, "__metadata__ key '%s' contains a NUL character",
                   printable(key, shown, sizeof shown));
            return -1;
        }
        if (json_type(value) != JSON_STRING) {
            report(error, error_size, path, NULL,
                   "__metadata__ value of '%s' must be a string, got %s",
                   printable(key, shown, sizeof shown), describe_type(value));
            return -1;
        }
        if (strlen(json_string(value)) != json_string_length(value)) {
            report(error, error_size, path, NULL,
                   "__metadata__ value of '%s' contains a NUL character",
                   printable(key, shown, sizeof shown));
            return -1;
        }
    }
    return 0;
}

void safetensors_close(SafetensorsFile *file) {
    if (!file) return;
    if (file->map) munmap(file->map, file->map_size);
    json_free(file->header);
    free(file->entries);
    free(file->by_name);
    free(file->path);
    free(file);
}

// Validates the mapped file and fills file->entries; file->map/map_size/path are set.
static int load(SafetensorsFile *file, char *error, size_t error_size) {
    const char *path = file->path;
    const unsigned char *bytes = file->map;
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; i--) header_length = header_length << 8 | bytes[i];
    if (header_length > SAFETENSORS_MAX_HEADER_BYTES) {
        report(error, error_size, path, NULL,
               "header length %llu exceeds the limit of %d bytes (corrupt or not a safetensors file)",
               (unsigned long long)header_length, SAFETENSORS_MAX_HEADER_BYTES);
        return -1;
    }
    if (header_length > file->map_size - 8) {
        report(error, error_size, path, NULL,
               "header length %llu goes beyond the end of the file (%zu bytes; truncated?)",
               (unsigned long long)header_length, file->map_size);
        return -1;
    }
    uint64_t data_size = file->map_size - 8 - header_length;
    const unsigned char *data = bytes + 8 + header_length;

    // Duplicate keys are kept by the parser and reported here, where we can name the tensor.
    char json_error[256];
    file->header = json_parse_flags((const char *)bytes + 8, (size_t)header_length,
                                    JSON_ALLOW_DUPLICATE_KEYS, json_error, sizeof json_error);
    if (!file->header) {
        report(error, error_size, path, NULL,
               "header is not valid JSON: %s (byte offsets count from the header start)", json_error);
        return -1;
    }
    const JsonValue *root = file->header;
    if (json_type(root) != JSON_OBJECT) {
        report(error, error_size, path, NULL, "header is %s, expected a JSON object",
               describe_type(root));
        return -1;
    }
    long duplicate = json_object_duplicate(root);
    if (duplicate >= 0) {
        const char *key = json_key(root, (size_t)duplicate);
        if (strcmp(key, "__metadata__") == 0)
            report(error, error_size, path, NULL, "__metadata__ appears twice in the header");
        else
            report(error, error_size, path, key, "name appears twice in the header");
        return -1;
    }

    size_t member_count = json_length(root);
    if (member_count > (size_t)INT32_MAX) {  // counts are ints in the API
        report(error, error_size, path, NULL, "too many tensors");
        return -1;
    }
    Slot *slots = calloc(member_count ? member_count : 1, sizeof *slots);
    if (!slots) {
        report(error, error_size, path, NULL, "out of memory");
        return -1;
    }
    size_t count = 0;
    for (size_t i = 0; i < member_count; i++) {
        const char *key = json_key(root, i);
        const JsonValue *value = json_value_at(root, i);
        if (strcmp(key, "__metadata__") == 0 && root->key_lengths[i] == strlen(key)) {
            if (check_metadata(path, value, error, error_size)) goto fail;
            if (json_type(value) == JSON_OBJECT) file->metadata = value;
            continue;
        }
        if (strlen(key) != root->key_lengths[i]) {
            char shown[256];
            report(error, error_size, path, NULL, "tensor '%s': name contains a NUL character",
                   printable_n(key, root->key_lengths[i], shown, sizeof shown));
            goto fail;
        }
        if (parse_entry(path, key, value, data_size, &slots[count], error, error_size)) goto fail;
        slots[count].header_index = i;
        count++;
    }

    // The reference (Metadata::validate) sorts tensors by data_offsets and requires each to start
    // exactly where the previous one ended, beginning at 0, and the last to end at the end of the
    // file (MetadataIncompleteBuffer): no overlaps, no holes, no trailing bytes. We do the same,
    // with messages that say which of these it is.
    qsort(slots, count, sizeof *slots, compare_slots);
    uint64_t covered = 0;  // bytes [0, covered) are claimed by the tensors seen so far
    for (size_t i = 0; i < count; i++) {
        const Slot *slot = &slots[i];
        if (slot->begin < covered) {
            const Slot *previous = &slots[i - 1];  // covered > 0, so there is a previous one
            char other[256];
            report(error, error_size, path, slot->entry.name,
                   "data [%llu, %llu) overlaps tensor '%s' at [%llu, %llu)",
                   (unsigned long long)slot->begin, (unsigned long long)slot->end,
                   printable(previous->entry.name, other, sizeof other),
                   (unsigned long long)previous->begin, (unsigned long long)previous->end);
            goto fail;
        }
        if (slot->begin > covered) {
            if (i == 0)
                report(error, error_size, path, slot->entry.name,
                       "data starts at byte %llu: bytes [0, %llu) belong to no tensor (the format "
                       "requires tensors to cover the data buffer contiguously)",
                       (unsigned long long)slot->begin, (unsigned long long)slot->begin);
            else
                report(error, error_size, path, slot->entry.name,
                       "data starts at byte %llu but the previous tensor ends at %llu: bytes "
                       "[%llu, %llu) belong to no tensor (the format requires tensors to cover the "
                       "data buffer contiguously)",
                       (unsigned long long)slot->begin, (unsigned long long)covered,
                       (unsigned long long)covered, (unsigned long long)slot->begin);
            goto fail;
        }
        covered = slot->end;
    }
    if (covered != data_size) {
        report(error, error_size, path, NULL,
               "data buffer is %llu bytes but the tensors cover only %llu: bytes [%llu, %llu) at "
               "the end belong to no tensor (the format requires tensors to cover the data buffer)",
               (unsigned long long)data_size, (unsigned long long)covered,
               (unsigned long long)covered, (unsigned long long)data_size);
        goto fail;
    }

    file->entries = malloc((count ? count : 1) * sizeof *file->entries);
    file->by_name = malloc((count ? count : 1) * sizeof *file->by_name);
    if (!file->entries || !file->by_name) {
        report(error, error_size, path, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        file->entries[i] = slots[i].entry;
        file->entries[i].data = data + slots[i].begin;
        file->by_name[i] = &file->entries[i];
    }
    file->count = (int)count;
    qsort(file->by_name, count, sizeof *file->by_name, compare_entry_names);
    free(slots);
    return 0;
fail:
    free(slots);
    return -1;
}

int safetensors_open(const char *path, SafetensorsFile **out, char *error, size_t error_size) {
    if (error && error_size) error[0] = '\0';
    if (out) *out = NULL;
    if (!path || !out) {
        report(error, error_size, path ? path : "(null)", NULL, "invalid arguments");
        return -1;
    }
    SafetensorsFile *file = calloc(1, sizeof *file);
    if (file) file->path = strdup(path);
    if (!file || !file->path) {
        free(file);
        report(error, error_size, path, NULL, "out of memory");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        report(error, error_size, path, NULL, "cannot open: %s", strerror(errno));
        safetensors_close(file);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        report(error, error_size, path, NULL, "cannot stat: %s", strerror(errno));
        close(fd);
        safetensors_close(file);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        report(error, error_size, path, NULL, "not a regular file");
        close(fd);
        safetensors_close(file);
        return -1;
    }
    if (st.st_size < 8) {
        report(error, error_size, path, NULL,
               "file is %lld bytes, shorter than the 8-byte header length field",
               (long long)st.st_size);
        close(fd);
        safetensors_close(file);
        return -1;
    }
    if ((unsigned long long)st.st_size > SIZE_MAX) {
        report(error, error_size, path, NULL, "file too large to map");
        close(fd);
        safetensors_close(file);
        return -1;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);  // the mapping keeps the file open
    if (map == MAP_FAILED) {
        report(error, error_size, path, NULL, "cannot mmap: %s", strerror(errno));
        safetensors_close(file);
        return -1;
    }
    file->map = map;
    file->map_size = (size_t)st.st_size;
    if (load(file, error, error_size)) {
        safetensors_close(file);
        return -1;
    }
    *out = file;
    return 0;
}

const char *safetensors_path(const SafetensorsFile *file) { return file ? file->path : NULL; }

int safetensors_count(const SafetensorsFile *file) { return file ? file->count : 0; }

const SafetensorsEntry *safetensors_entry(const SafetensorsFile *file, int index) {
    if (!file || index < 0 || index >= file->count) return NULL;
    return &file->entries[index];
}

const SafetensorsEntry *safetensors_find(const SafetensorsFile *file, const char *name) {
    if (!file || !name || file->count == 0) return NULL;
    SafetensorsEntry key = {.name = name};
    const SafetensorsEntry *key_pointer = &key;
    const SafetensorsEntry **found = bsearch(&key_pointer, file->by_name, (size_t)file->count,
                                             sizeof *file->by_name, compare_entry_names);
    return found ? *found : NULL;
}

const char *safetensors_metadata(const SafetensorsFile *file, const char *key) {
    return file ? json_string(json_get(file->metadata, key)) : NULL;
}

int safetensors_metadata_count(const SafetensorsFile *file) {
    return file ? (int)json_length(file->metadata) : 0;
}

const char *safetensors_metadata_key(const SafetensorsFile *file, int index) {
    if (!file || index < 0) return NULL;
    return json_key(file->metadata, (size_t)index);
}

const char *safetensors_metadata_value(const SafetensorsFile *file, int index) {
    if (!file || index < 0) return NULL;
    return json_string(json_value_at(file->metadata, (size_t)index));
}

// ---- writing ----

typedef struct {
    char *name;
    DType dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const void *data;
    size_t nbytes;
    size_t added;  // position in add order, the tie-break of the layout sort
} WriterEntry;

struct SafetensorsWriter {
    WriterEntry *entries;
    size_t count, capacity;
    size_t *name_table;  // open-addressing hash set of entry index + 1 (0 = empty), for duplicates
    size_t table_size;   // power of two, kept at least twice count
    char **metadata_keys, **metadata_values;
    size_t metadata_count, metadata_capacity;
    char error[512];  // first failure of add/set_metadata, reported again by write
};

SafetensorsWriter *safetensors_writer_new(void) { return calloc(1, sizeof(SafetensorsWriter)); }

void safetensors_writer_free(SafetensorsWriter *writer) {
    if (!writer) return;
    for (size_t i = 0; i < writer->count; i++) free(writer->entries[i].name);
    for (size_t i = 0; i < writer->metadata_count; i++) {
        free(writer->metadata_keys[i]);
        free(writer->metadata_values[i]);
    }
    free(writer->entries);
    free(writer->name_table);
    free(writer->metadata_keys);
    free(writer->metadata_values);
    free(writer);
}

const char *safetensors_writer_error(const SafetensorsWriter *writer) {
    return writer ? writer->error : "no writer";
}

__attribute__((format(printf, 2, 3))) static int writer_fail(SafetensorsWriter *writer,
                                                             const char *format, ...) {
    if (writer->error[0]) return -1;  // keep the first failure
    va_list args;
    va_start(args, format);
    vsnprintf(writer->error, sizeof writer->error, format, args);
    va_end(args);
    return -1;
}

static uint64_t hash_name(const char *name) {  // FNV-1a
    uint64_t hash = 1469598103934665603ull;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++)
        hash = (hash ^ *s) * 1099511628211ull;
    return hash;
}

// Slot of name in the hash set: either the slot holding it or the empty slot where it would go.
static size_t name_slot(const SafetensorsWriter *writer, const char *name) {
    size_t mask = writer->table_size - 1;
    size_t i = (size_t)hash_name(name) & mask;
    while (writer->name_table[i] && strcmp(writer->entries[writer->name_table[i] - 1].name, name))
        i = (i + 1) & mask;
    return i;
}

static int grow_name_table(SafetensorsWriter *writer) {
    size_t size = writer->table_size ? writer->table_size * 2 : 64;
    size_t *table = calloc(size, sizeof *table);
    if (!table) return -1;
    free(writer->name_table);
    writer->name_table = table;
    writer->table_size = size;
    for (size_t e = 0; e < writer->count; e++) table[name_slot(writer, writer->entries[e].name)] = e + 1;
    return 0;
}

int safetensors_writer_add(SafetensorsWriter *writer, const char *name, DType dtype, int ndim,
                           const int64_t *shape, const void *data) {
    if (!writer) return -1;
    char shown[256];
    if (!name) return writer_fail(writer, "tensor name is NULL");
    printable(name, shown, sizeof shown);
    if (!json_utf8_valid(name, strlen(name)))
        return writer_fail(writer, "tensor '%s': name is not valid UTF-8", shown);
    if (strcmp(name, "__metadata__") == 0)
        return writer_fail(writer, "tensor '__metadata__': the name is reserved for metadata");
    if ((int)dtype < 0 || dtype >= DTYPE_COUNT)
        return writer_fail(writer, "tensor '%s': unknown dtype %d", shown, (int)dtype);
    if (ndim < 0 || ndim > SAFETENSORS_MAX_DIMS)
        return writer_fail(writer, "tensor '%s': ndim %d is outside [0, %d]", shown, ndim,
                           SAFETENSORS_MAX_DIMS);
    if (ndim > 0 && !shape) return writer_fail(writer, "tensor '%s': shape is NULL", shown);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return writer_fail(writer, "tensor '%s': shape[%d] is %lld, must be >= 0", shown, d,
                               (long long)shape[d]);
    uint64_t nbytes;  // same overflow rule as the reader, so what we write, we can read
    if (shape_byte_size(shape, ndim, dtype_size(dtype), &nbytes))
        return writer_fail(writer, "tensor '%s': byte size overflows", shown);
    if (nbytes > 0 && !data) return writer_fail(writer, "tensor '%s': data is NULL", shown);

    if (2 * (writer->count + 1) > writer->table_size && grow_name_table(writer))
        return writer_fail(writer, "out of memory");
    size_t slot = name_slot(writer, name);
    if (writer->name_table[slot])
        return writer_fail(writer, "tensor '%s': added twice", shown);
    if (writer->count == writer->capacity) {
        size_t capacity = writer->capacity ? writer->capacity * 2 : 16;
        WriterEntry *grown = realloc(writer->entries, capacity * sizeof *grown);
        if (!grown) return writer_fail(writer, "out of memory");
        writer->entries = grown;
        writer->capacity = capacity;
    }
    WriterEntry *entry = &writer->entries[writer->count];
    memset(entry, 0, sizeof *entry);
    entry->name = strdup(name);
    if (!entry->name) return writer_fail(writer, "out of memory");
    entry->dtype = dtype;
    entry->ndim = ndim;
    for (int d = 0; d < ndim; d++) entry->shape[d] = shape[d];
    entry->data = data;
    entry->nbytes = (size_t)nbytes;
    entry->added = writer->count;
    writer->name_table[slot] = writer->count + 1;
    writer->count++;
    return 0;
}

void safetensors_writer_set_metadata(SafetensorsWriter *writer, const char *key, const char *value) {
    if (!writer) return;
    if (!key || !value) {
        writer_fail(writer, "__metadata__: NULL key or value");
        return;
    }
    char shown[256];
    if (!json_utf8_valid(key, strlen(key)) || !json_utf8_valid(value, strlen(value))) {
        writer_fail(writer, "__metadata__ '%s': key or value is not valid UTF-8",
                    printable(key, shown, sizeof shown));
        return;
    }
    for (size_t i = 0; i < writer->metadata_count; i++) {
        if (strcmp(writer->metadata_keys[i], key) == 0) {
            char *copy = strdup(value);
            if (!copy) {
                writer_fail(writer, "out of memory");
                return;
            }
            free(writer->metadata_values[i]);
            writer->metadata_values[i] = copy;
            return;
        }
    }
    if (writer->metadata_count == writer->metadata_capacity) {
        size_t capacity = writer->metadata_capacity ? writer->metadata_capacity * 2 : 8;
        char **keys = realloc(writer->metadata_keys, capacity * sizeof *keys);
        if (keys) writer->metadata_keys = keys;
        char **values = keys ? realloc(writer->metadata_values, capacity * sizeof *values) : NULL;
        if (values) writer->metadata_values = values;
        if (!keys || !values) {
            writer_fail(writer, "out of memory");
            return;
        }
        writer->metadata_capacity = capacity;
    }
    char *key_copy = strdup(key), *value_copy = strdup(value);
    if (!key_copy || !value_copy) {
        free(key_copy);
        free(value_copy);
        writer_fail(writer, "out of memory");
        return;
    }
    writer->metadata_keys[writer->metadata_count] = key_copy;
    writer->metadata_values[writer->metadata_count] = value_copy;
    writer->metadata_count++;
}

// Larger elements first, then add order: with an 8-aligned data start, every tensor then starts
// at a multiple of its own element size (each earlier tensor's size is a multiple of it).
static int compare_layout(const void *a, const void *b) {
    const WriterEntry *x = *(const WriterEntry *const *)a, *y = *(const WriterEntry *const *)b;
    size_t sx = dtype_size(x->dtype), sy = dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return (x->added > y->added) - (x->added < y->added);
}

static int write_all(FILE *f, const void *bytes, size_t n) {
    return n == 0 || fwrite(bytes, 1, n, f) == n ? 0 : -1;
}

int safetensors_writer_write(SafetensorsWriter *writer, const char *path, char *error,
                             size_t error_size) {
    if (error && error_size) error[0] = '\0';
    if (!writer || !path) {
        report(error, error_size, path ? path : "(null)", NULL, "invalid arguments");
        return -1;
    }
    if (writer->error[0]) {
        report(error, error_size, path, NULL, "%s", writer->error);
        return -1;
    }
    const WriterEntry **order = malloc((writer->count ? writer->count : 1) * sizeof *order);
    if (!order) {
        report(error, error_size, path, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < writer->count; i++) order[i] = &writer->entries[i];
    qsort(order, writer->count, sizeof *order, compare_layout);

    // Header: {"__metadata__":{...},"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},...}
    JsonBuffer header = {0};
    json_buffer_append(&header, "{", 1);
    int first = 1;
    if (writer->metadata_count) {
        json_buffer_append(&header, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < writer->metadata_count; i++) {
            if (i) json_buffer_append(&header, ",", 1);
            json_buffer_append_string(&header, writer->metadata_keys[i]);
            json_buffer_append(&header, ":", 1);
            json_buffer_append_string(&header, writer->metadata_values[i]);
        }
        json_buffer_append(&header, "}", 1);
        first = 0;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < writer->count; i++) {
        const WriterEntry *entry = order[i];
        if (!first) json_buffer_append(&header, ",", 1);
        first = 0;
        json_buffer_append_string(&header, entry->name);
        json_buffer_printf(&header, ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(entry->dtype));
        for (int d = 0; d < entry->ndim; d++)
            json_buffer_printf(&header, d ? ",%lld" : "%lld", (long long)entry->shape[d]);
        if (offset > UINT64_MAX - entry->nbytes) {
            json_buffer_free(&header);
            free(order);
            report(error, error_size, path, NULL, "total data size overflows");
            return -1;
        }
        json_buffer_printf(&header, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                           (unsigned long long)(offset + entry->nbytes));
        offset += entry->nbytes;
    }
    json_buffer_append(&header, "}", 1);
    while (!header.failed && header.length % 8 != 0) json_buffer_append(&header, " ", 1);
    if (header.failed) {
        json_buffer_free(&header);
        free(order);
        report(error, error_size, path, NULL, "out of memory");
        return -1;
    }
    if (header.length > SAFETENSORS_MAX_HEADER_BYTES) {
        report(error, error_size, path, NULL, "header would be %zu bytes, over the %d-byte limit",
               header.length, SAFETENSORS_MAX_HEADER_BYTES);
        json_buffer_free(&header);
        free(order);
        return -1;
    }

    size_t temporary_size = strlen(path) + 32;
    char *temporary = malloc(temporary_size);
    if (!temporary) {
        json_buffer_free(&header);
        free(order);
        report(error, error_size, path, NULL, "out of memory");
        return -1;
    }
    snprintf(temporary, temporary_size, "%s.tmp.%ld", path, (long)getpid());
    int result = -1;
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        report(error, error_size, path, NULL, "cannot create temporary file '%s': %s", temporary,
               strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(temporary);
        }
        goto done;
    }
    unsigned char length_bytes[8];
    for (int i = 0; i < 8; i++) length_bytes[i] = (unsigned char)((uint64_t)header.length >> (8 * i));
    int failed = write_all(f, length_bytes, 8) || write_all(f, header.data, header.length);
    for (size_t i = 0; i < writer->count && !failed; i++)
        failed = write_all(f, order[i]->data, order[i]->nbytes);
    // fsync before rename: otherwise after a crash the new name may point to unwritten blocks.
    if (!failed) failed = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int saved_errno = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        saved_errno = errno;
    }
    if (failed) {
        report(error, error_size, path, NULL, "writing '%s' failed: %s", temporary,
               strerror(saved_errno));
        unlink(temporary);
        goto done;
    }
    if (rename(temporary, path) != 0) {
        report(error, error_size, path, NULL, "cannot rename '%s' to it: %s", temporary,
               strerror(errno));
        unlink(temporary);
        goto done;
    }
    // Make the rename itself durable (best effort: some file systems refuse fsync on directories).
    char *slash = strrchr(temporary, '/');
    if (slash) {
        if (slash == temporary)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    int directory = open(slash ? temporary : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory >= 0) {
        fsync(directory);
        close(directory);
    }
    result = 0;
done:
    free(temporary);
    json_buffer_free(&header);
    free(order);
    return result;
}
