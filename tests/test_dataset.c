// Datasets and IDX files: trees and files are built in mkdtemp directories by the test itself.
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset.h"
#include "data/idx.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

static char temp_root[256];

static void path_in_temp(char *out, size_t size, const char *relative) {
    snprintf(out, size, "%s/%s", temp_root, relative);
}

static void make_dir(const char *relative) {
    char path[512];
    path_in_temp(path, sizeof(path), relative);
    mkdir(path, 0755);
}

static void write_bytes(const char *relative, const void *data, size_t size) {
    char path[512];
    path_in_temp(path, sizeof(path), relative);
    FILE *file = fopen(path, "wb");
    if (size) fwrite(data, 1, size, file);
    fclose(file);
}

static void write_text(const char *relative, const char *text) { write_bytes(relative, text, strlen(text)); }

static void write_gzip(const char *relative, const void *data, size_t size) {
    char path[512];
    path_in_temp(path, sizeof(path), relative);
    gzFile file = gzopen(path, "wb");
    gzwrite(file, data, (unsigned)size);
    gzclose(file);
}

// An IDX file image in memory: header + big-endian elements from host values.
static size_t build_idx(unsigned char *out, int type, int ndim, const uint32_t *dims, const void *values) {
    out[0] = 0; out[1] = 0; out[2] = (unsigned char)type; out[3] = (unsigned char)ndim;
    size_t at = 4, count = 1;
    for (int d = 0; d < ndim; d++) {
        out[at++] = dims[d] >> 24; out[at++] = dims[d] >> 16; out[at++] = dims[d] >> 8; out[at++] = dims[d];
        count *= dims[d];
    }
    size_t element = idx_element_size(type);
    const unsigned char *src = values;
    for (size_t i = 0; i < count; i++)
        for (size_t b = 0; b < element; b++) out[at + i * element + b] = src[i * element + element - 1 - b];
    return at + count * element;
}

TEST(idx_each_type_plain_and_gzip) {
    uint8_t u8[6] = {0, 1, 2, 127, 128, 255};
    int8_t i8[6] = {-128, -1, 0, 1, 2, 127};
    int16_t i16[6] = {-32768, -2, 0, 3, 300, 32767};
    int32_t i32[6] = {INT32_MIN, -70000, 0, 1, 70000, INT32_MAX};
    float f32[6] = {-1.5f, 0.0f, 0.25f, 3.0e10f, -7.0f, 1e-20f};
    double f64[6] = {-1.5, 0.0, 0.1, 3.0e100, -7.0, 1e-300};
    const void *values[6] = {u8, i8, i16, i32, f32, f64};
    int types[6] = {IDX_U8, IDX_I8, IDX_I16, IDX_I32, IDX_F32, IDX_F64};
    uint32_t dims[3] = {1, 2, 3};
    unsigned char file[256];
    char error[512];
    for (int t = 0; t < 6; t++) {
        size_t size = build_idx(file, types[t], 3, dims, values[t]);
        for (int gz = 0; gz < 2; gz++) {
            char name[64], path[512];
            snprintf(name, sizeof(name), "t%d%s", t, gz ? ".idx.gz" : ".idx");
            if (gz) write_gzip(name, file, size); else write_bytes(name, file, size);
            path_in_temp(path, sizeof(path), name);
            IdxArray array;
            int status = idx_load(path, &array, error, sizeof(error));
            CHECK_MSG(status == 0, "%s: %s", name, error);
            if (status != 0) continue;
            CHECK((int)array.type == types[t]);
            CHECK(array.ndim == 3 && array.dims[0] == 1 && array.dims[1] == 2 && array.dims[2] == 3);
            CHECK(array.dims[3] == 0);
            CHECK(idx_element_count(&array) == 6);
            CHECK(array.bytes == 6 * idx_element_size(types[t]));
            CHECK_MSG(memcmp(array.data, values[t], array.bytes) == 0, "%s values", name);
            idx_free(&array);
            CHECK(array.data == NULL);
        }
    }
    // Element access as int64.
    size_t size = build_idx(file, IDX_I16, 1, (uint32_t[]){6}, i16);
    write_bytes("i16.idx", file, size);
    char path[512];
    path_in_temp(path, sizeof(path), "i16.idx");
    IdxArray array;
    CHECK(idx_load(path, &array, error, sizeof(error)) == 0);
    CHECK(idx_get_int64(&array, 0) == -32768 && idx_get_int64(&array, 4) == 300);
    idx_free(&array);
}

TEST(idx_zero_dims_and_empty) {
    unsigned char file[64];
    char error[512], path[512];
    IdxArray array;
    uint8_t v = 42;
    write_bytes("scalar.idx", file, build_idx(file, IDX_U8, 0, NULL, &v));
    path_in_temp(path, sizeof(path), "scalar.idx");
    CHECK_MSG(idx_load(path, &array, error, sizeof(error)) == 0, "%s", error);
    CHECK(array.ndim == 0 && idx_element_count(&array) == 1 && ((uint8_t *)array.data)[0] == 42);
    idx_free(&array);
    write_bytes("empty_rows.idx", file, build_idx(file, IDX_F32, 2, (uint32_t[]){0, 28}, NULL));
    path_in_temp(path, sizeof(path), "empty_rows.idx");
    CHECK_MSG(idx_load(path, &array, error, sizeof(error)) == 0, "%s", error);
    CHECK(array.bytes == 0 && array.dims[1] == 28);
    idx_free(&array);
}

// Loads `name` expecting failure and a message naming the file and containing `problem`.
static void expect_idx_error(const char *name, const char *problem) {
    char path[512], error[512] = "";
    path_in_temp(path, sizeof(path), name);
    IdxArray array;
    memset(&array, 0x5a, sizeof(array));
    int status = idx_load(path, &array, error, sizeof(error));
    CHECK_MSG(status == -1, "%s loaded", name);
    CHECK(array.data == NULL && array.bytes == 0);
    CHECK_MSG(strstr(error, path) != NULL && strstr(error, problem) != NULL,
              "%s: expected '%s' in '%s'", name, problem, error);
    CHECK_MSG(strchr(error, '\n') == NULL, "multi-line: %s", error);
}

TEST(idx_malformed_files) {
    unsigned char file[512];
    uint8_t values[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint32_t dims[2] = {3, 4};
    size_t size = build_idx(file, IDX_U8, 2, dims, values);
    expect_idx_error("does_not_exist.idx", "No such file");
    write_text("text.idx", "hello, this is not IDX\n");
    expect_idx_error("text.idx", "not an IDX file");
    write_bytes("tiny.idx", "\0\0", 2);
    expect_idx_error("tiny.idx", "not an IDX file");
    write_bytes("empty.idx", "", 0);
    expect_idx_error("empty.idx", "not an IDX file");
    unsigned char bad_type[sizeof(file)];
    memcpy(bad_type, file, size);
    bad_type[2] = 0x0A;
    write_bytes("badtype.idx", bad_type, size);
    expect_idx_error("badtype.idx", "unknown IDX element type 0x0a");
    unsigned char many[64] = {0, 0, IDX_U8, 9};
    write_bytes("manydims.idx", many, sizeof(many));
    expect_idx_error("manydims.idx", "too many dimensions: 9");
    write_bytes("shortheader.idx", file, 7);  // 2 dims need 12 header bytes
    expect_idx_error("shortheader.idx", "file too short");
    write_bytes("truncated.idx", file, size - 1);
    expect_idx_error("truncated.idx", "size mismatch");
    expect_idx_error("truncated.idx", "truncated");
    expect_idx_error("truncated.idx", "[3x4]");
    unsigned char longer[sizeof(file)];
    memcpy(longer, file, size);
    longer[size] = 0;
    write_bytes("long.idx", longer, size + 1);
    expect_idx_error("long.idx", "trailing bytes");
    write_gzip("truncated_data.idx.gz", file, size - 3);  // valid gzip, short IDX inside
    expect_idx_error("truncated_data.idx.gz", "size mismatch");
    // Overflow: 8 dims of 2^32-1 bytes each.
    unsigned char huge[4 + 32] = {0, 0, IDX_F64, 8};
    memset(huge + 4, 0xff, 32);
    write_bytes("huge.idx", huge, sizeof(huge));
    expect_idx_error("huge.idx", "overflow");
    // Corrupt gzip: a real gzip stream cut short, and one with damaged deflate data.
    char path[512];
    write_gzip("good.idx.gz", file, size);
    path_in_temp(path, sizeof(path), "good.idx.gz");
    FILE *handle = fopen(path, "rb");
    unsigned char gz[1024];
    size_t gz_size = fread(gz, 1, sizeof(gz), handle);
    fclose(handle);
    CHECK(gz_size > 20 && gz[0] == 0x1f && gz[1] == 0x8b);
    write_bytes("cut.idx.gz", gz, gz_size - 12);
    expect_idx_error("cut.idx.gz", "corrupt gzip");
    unsigned char damaged[1024];
    memcpy(damaged, gz, gz_size);
    damaged[gz_size - 5] ^= 0xff;  // inside the CRC/length trailer
    write_bytes("crc.idx.gz", damaged, gz_size);
    expect_idx_error("crc.idx.gz", "corrupt gzip");
    write_bytes("header_only.gz", "\x1f\x8b", 2);
    expect_idx_error("header_only.gz", "corrupt gzip");
    unsigned char junk[32] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memset(junk + 10, 0xff, sizeof(junk) - 10);
    write_bytes("junk.gz", junk, sizeof(junk));
    expect_idx_error("junk.gz", "corrupt gzip");
}

TEST(image_folder_sorted_and_filtered) {
    // Created in unsorted order; hidden entries, non-images, a top-level file, a nested dir.
    make_dir("folder");
    make_dir("folder/zebra");
    make_dir("folder/Apple");
    make_dir("folder/cat");
    make_dir("folder/empty");
    make_dir("folder/.hidden_class");
    write_text("folder/.hidden_class/a.png", "x");
    write_text("folder/readme.png", "top-level file is not a class");
    write_text("folder/zebra/b.PNG", "x");
    write_text("folder/zebra/a.jpeg", "x");
    write_text("folder/zebra/notes.txt", "x");
    write_text("folder/zebra/.secret.png", "x");
    write_text("folder/zebra/png", "x");
    write_text("folder/cat/c.Jpg", "x");
    make_dir("folder/cat/sub");
    write_text("folder/cat/sub/a.bmp", "x");
    make_dir("folder/cat/.cache");
    write_text("folder/cat/.cache/a.png", "x");
    write_text("folder/cat/z.gif", "x");
    write_text("folder/cat/a.pgm", "x");
    write_text("folder/cat/b.ppm", "x");
    write_text("folder/Apple/x.png", "x");
    write_text("folder/empty/not_an_image.txt", "x");
    char root[512], error[512];
    path_in_temp(root, sizeof(root), "folder");
    Dataset *ds = dataset_image_folder(root, error, sizeof(error));
    CHECK_MSG(ds != NULL, "%s", error);
    if (!ds) return;
    CHECK(ds->class_count == 4);
    const char *names[4] = {"Apple", "cat", "empty", "zebra"};  // strcmp: upper case first
    for (int c = 0; c < 4 && c < ds->class_count; c++) CHECK_MSG(strcmp(ds->class_names[c], names[c]) == 0, "class %d is %s", c, ds->class_names[c]);
    CHECK(ds->empty_class_count == 1);
    // os.walk order: files of cat/ sorted, then cat/sub/.
    const char *files[] = {"Apple/x.png", "cat/a.pgm", "cat/b.ppm", "cat/c.Jpg", "cat/z.gif",
                           "cat/sub/a.bmp", "zebra/a.jpeg", "zebra/b.PNG"};
    int64_t labels[] = {0, 1, 1, 1, 1, 1, 3, 3};
    CHECK_MSG(ds->count == 8, "count %lld", (long long)ds->count);
    for (int64_t i = 0; i < ds->count && i < 8; i++) {
        char expected[600];
        snprintf(expected, sizeof(expected), "%s/%s", root, files[i]);
        CHECK_MSG(strcmp(ds->samples[i].path, expected) == 0, "sample %lld: %s", (long long)i, ds->samples[i].path);
        CHECK(ds->samples[i].label == labels[i]);
    }
    int64_t counts[4];
    dataset_class_counts(ds, counts);
    CHECK(counts[0] == 1 && counts[1] == 5 && counts[2] == 0 && counts[3] == 2);
    CHECK(strcmp(ds->source, root) == 0);
    dataset_free(ds);
}

TEST(image_folder_errors) {
    char root[512], error[512] = "";
    path_in_temp(root, sizeof(root), "no_such_folder");
    CHECK(dataset_image_folder(root, error, sizeof(error)) == NULL);
    CHECK_MSG(strstr(error, root) && strstr(error, "No such file"), "%s", error);
    make_dir("flat");
    write_text("flat/a.png", "x");
    make_dir("flat/.git");
    path_in_temp(root, sizeof(root), "flat");
    CHECK(dataset_image_folder(root, error, sizeof(error)) == NULL);
    CHECK_MSG(strstr(error, root) && strstr(error, "no class folders"), "%s", error);
    path_in_temp(root, sizeof(root), "flat/a.png");
    CHECK(dataset_image_folder(root, error, sizeof(error)) == NULL);
    CHECK_MSG(strstr(error, root) && strstr(error, "not a directory"), "%s", error);
}

TEST(image_list_parsing) {
    write_text("list.txt",
               "# Office-31 amazon, tllib layout\n"
               "amazon/images/back_pack/frame_0001.jpg 0\n"
               "\n"
               "   \t\n"
               "amazon/images/bike/frame 0002.jpg\t1\r\n"
               "/abs/path/x.png 4\n"
               "  amazon/images/bike/frame_0003.jpg 1  \n");
    char list[512], error[512] = "";
    path_in_temp(list, sizeof(list), "list.txt");
    Dataset *ds = dataset_image_list(list, "/data/office31", 0, error, sizeof(error));
    CHECK_MSG(ds != NULL, "%s", error);
    if (!ds) return;
    CHECK(ds->count == 4 && ds->class_count == 5 && ds->class_names == NULL);
    CHECK(strcmp(ds->samples[0].path, "/data/office31/amazon/images/back_pack/frame_0001.jpg") == 0);
    CHECK_MSG(strcmp(ds->samples[1].path, "/data/office31/amazon/images/bike/frame 0002.jpg") == 0, "%s", ds->samples[1].path);
    CHECK(strcmp(ds->samples[2].path, "/abs/path/x.png") == 0);
    CHECK(strcmp(ds->samples[3].path, "/data/office31/amazon/images/bike/frame_0003.jpg") == 0);
    CHECK(ds->samples[0].label == 0 && ds->samples[1].label == 1 && ds->samples[2].label == 4 && ds->samples[3].label == 1);
    dataset_free(ds);
    // No image root: paths as written; a given class count is kept.
    ds = dataset_image_list(list, NULL, 31, error, sizeof(error));
    CHECK_MSG(ds != NULL, "%s", error);
    if (ds) {
        CHECK(strcmp(ds->samples[0].path, "amazon/images/back_pack/frame_0001.jpg") == 0);
        CHECK(ds->class_count == 31);
    }
    dataset_free(ds);
    ds = dataset_image_list(list, NULL, 4, error, sizeof(error));
    CHECK(ds == NULL);
    CHECK_MSG(strstr(error, "list.txt:6:") && strstr(error, "out of range"), "%s", error);
}

static void expect_list_error(const char *name, const char *text, const char *problem) {
    char list[512], error[512] = "";
    write_text(name, text);
    path_in_temp(list, sizeof(list), name);
    Dataset *ds = dataset_image_list(list, "/root", 0, error, sizeof(error));
    CHECK_MSG(ds == NULL, "%s parsed", name);
    dataset_free(ds);
    CHECK_MSG(strstr(error, list) && strstr(error, problem) && !strchr(error, '\n'),
              "%s: expected '%s' in '%s'", name, problem, error);
}

TEST(image_list_errors) {
    expect_list_error("one_field.txt", "a.png 0\n\nb.png\n", ":3: expected '<path> <label>'");
    expect_list_error("negative.txt", "a.png 0\nb.png -1\n", ":2: label '-1' is not a non-negative integer");
    expect_list_error("word.txt", "a.png cat\n", ":1: label 'cat'");
    expect_list_error("float.txt", "a.png 1.0\n", ":1: label '1.0'");
    expect_list_error("huge.txt", "a.png 99999999999999999999999\n", ":1: label");
    expect_list_error("empty_list.txt", "# nothing\n\n", "no samples");
    char error[512] = "";
    CHECK(dataset_image_list("/nonexistent/list.txt", NULL, 0, error, sizeof(error)) == NULL);
    CHECK_MSG(strstr(error, "/nonexistent/list.txt") && strstr(error, "No such file"), "%s", error);
}

// A list dataset with `per_class[c]` samples of class c, interleaved.
static Dataset *make_list_dataset(const char *name, const int *per_class, int classes) {
    char text[8192] = "", line[64], path[512], error[512];
    int remaining = 1;
    for (int round = 0; remaining; round++) {
        remaining = 0;
        for (int c = 0; c < classes; c++)
            if (round < per_class[c]) {
                snprintf(line, sizeof(line), "c%d/img%03d.png %d\n", c, round, c);
                strcat(text, line);
                remaining = 1;
            }
    }
    write_text(name, text);
    path_in_temp(path, sizeof(path), name);
    Dataset *ds = dataset_image_list(path, NULL, classes, error, sizeof(error));
    CHECK_MSG(ds != NULL, "%s", error);
    return ds;
}

static int same_samples(const Dataset *a, const Dataset *b) {
    if (a->count != b->count) return 0;
    for (int64_t i = 0; i < a->count; i++)
        if (strcmp(a->samples[i].path, b->samples[i].path) != 0 || a->samples[i].label != b->samples[i].label) return 0;
    return 1;
}

TEST(subset_per_class) {
    int per_class[3] = {20, 12, 30};
    Dataset *ds = make_list_dataset("subset.txt", per_class, 3);
    if (!ds) return;
    char error[512] = "";
    Dataset *a = NULL, *a_rest = NULL, *b = NULL, *c = NULL, *c_rest = NULL;
    CHECK(dataset_subset_per_class(ds, 4, 7, &a, &a_rest, error, sizeof(error)) == 0);
    CHECK(dataset_subset_per_class(ds, 4, 7, &b, NULL, error, sizeof(error)) == 0);
    CHECK(dataset_subset_per_class(ds, 4, 8, &c, &c_rest, error, sizeof(error)) == 0);
    if (a && b && c && a_rest && c_rest) {
        CHECK(same_samples(a, b));   // same seed, same subset
        CHECK(!same_samples(a, c));  // another seed, another subset
        int64_t counts[3], rest_counts[3];
        dataset_class_counts(a, counts);
        dataset_class_counts(a_rest, rest_counts);
        for (int k = 0; k < 3; k++) {
            CHECK(counts[k] == 4);
            CHECK(rest_counts[k] == per_class[k] - 4);
        }
        CHECK(a->class_count == 3 && a_rest->count == 62 - 12);
        // Selected and rest partition the dataset: every path once, both in dataset order.
        int64_t i = 0, j = 0;
        for (int64_t k = 0; k < ds->count; k++) {
            const char *p = ds->samples[k].path;
            if (i < a->count && strcmp(a->samples[i].path, p) == 0) i++;
            else if (j < a_rest->count && strcmp(a_rest->samples[j].path, p) == 0) j++;
        }
        CHECK(i == a->count && j == a_rest->count);
        // Subsets own their samples: they outlive the parent (checked below after the free).
    }
    dataset_free(ds);
    if (a) CHECK(strncmp(a->samples[0].path, "c", 1) == 0);
    // A class with too few samples.
    ds = make_list_dataset("subset2.txt", per_class, 3);
    Dataset *d = NULL, *d_rest = NULL;
    CHECK(dataset_subset_per_class(ds, 13, 1, &d, &d_rest, error, sizeof(error)) == -1);
    CHECK(d == NULL && d_rest == NULL);
    CHECK_MSG(strstr(error, "subset2.txt") && strstr(error, "class 1 has 12 samples") &&
              strstr(error, "fewer than the 13"), "%s", error);
    // n = 0: everything in the rest.
    CHECK(dataset_subset_per_class(ds, 0, 1, &d, &d_rest, error, sizeof(error)) == 0);
    if (d && d_rest) CHECK(d->count == 0 && d_rest->count == ds->count);
    dataset_free(d);
    dataset_free(d_rest);
    dataset_free(ds);
    dataset_free(a);
    dataset_free(a_rest);
    dataset_free(b);
    dataset_free(c);
    dataset_free(c_rest);
}

TEST(subset_of_image_folder_keeps_names) {
    char root[512], error[512];
    path_in_temp(root, sizeof(root), "folder");  // built by image_folder_sorted_and_filtered
    Dataset *ds = dataset_image_folder(root, error, sizeof(error));
    CHECK(ds != NULL);
    if (!ds) return;
    Dataset *one = NULL;
    CHECK(dataset_subset_per_class(ds, 1, 3, &one, NULL, error, sizeof(error)) == -1);  // "empty" has 0
    CHECK_MSG(strstr(error, "class 2 ('empty') has 0 samples"), "%s", error);
    CHECK(dataset_subset_per_class(ds, 0, 3, &one, NULL, error, sizeof(error)) == 0);
    if (one) CHECK(one->class_names && strcmp(one->class_names[3], "zebra") == 0);
    dataset_free(one);
    dataset_free(ds);
}

TEST(idx_labels_dataset) {
    unsigned char file[64];
    uint8_t labels[5] = {3, 0, 9, 3, 1};
    write_gzip("labels-idx1-ubyte.gz", file, build_idx(file, IDX_U8, 1, (uint32_t[]){5}, labels));
    char path[512], error[512];
    path_in_temp(path, sizeof(path), "labels-idx1-ubyte.gz");
    IdxArray array;
    CHECK_MSG(idx_load(path, &array, error, sizeof(error)) == 0, "%s", error);
    Dataset *ds = dataset_from_idx_labels(&array, path, error, sizeof(error));
    CHECK_MSG(ds != NULL, "%s", error);
    if (ds) {
        CHECK(ds->count == 5 && ds->class_count == 10);
        CHECK(ds->samples[2].path == NULL && ds->samples[2].index == 2 && ds->samples[2].label == 9);
    }
    dataset_free(ds);
    idx_free(&array);
    int8_t negative[2] = {1, -1};
    write_bytes("neg.idx", file, build_idx(file, IDX_I8, 1, (uint32_t[]){2}, negative));
    path_in_temp(path, sizeof(path), "neg.idx");
    CHECK(idx_load(path, &array, error, sizeof(error)) == 0);
    CHECK(dataset_from_idx_labels(&array, path, error, sizeof(error)) == NULL);
    CHECK_MSG(strstr(error, "neg.idx") && strstr(error, "negative"), "%s", error);
    idx_free(&array);
    uint8_t grid[4] = {0};
    write_bytes("grid.idx", file, build_idx(file, IDX_U8, 2, (uint32_t[]){2, 2}, grid));
    path_in_temp(path, sizeof(path), "grid.idx");
    CHECK(idx_load(path, &array, error, sizeof(error)) == 0);
    CHECK(dataset_from_idx_labels(&array, path, error, sizeof(error)) == NULL);
    CHECK_MSG(strstr(error, "grid.idx") && strstr(error, "1-D"), "%s", error);
    idx_free(&array);
}

TEST(domain_pair_checks_classes) {
    int three[3] = {2, 2, 2}, four[4] = {2, 2, 2, 2};
    Dataset *source = make_list_dataset("source.txt", three, 3);
    Dataset *target = make_list_dataset("target.txt", three, 3);
    Dataset *target_test = make_list_dataset("target_test.txt", four, 4);
    if (!source || !target || !target_test) return;
    DomainPair pair;
    char error[512] = "";
    CHECK(domain_pair_make(source, target, target, &pair, error, sizeof(error)) == 0);
    CHECK(pair.source_labelled == source && pair.target_unlabelled == target && pair.target_test == target);
    CHECK(domain_pair_make(source, target, target_test, &pair, error, sizeof(error)) == -1);
    CHECK(pair.source_labelled == NULL);
    CHECK_MSG(strstr(error, "class counts differ") && strstr(error, "source.txt") &&
              strstr(error, "target_test.txt") && strstr(error, "has 4"), "%s", error);
    CHECK(domain_pair_make(source, NULL, target, &pair, error, sizeof(error)) == -1);
    CHECK_MSG(strstr(error, "target unlabelled"), "%s", error);
    // Same count, different class names.
    make_dir("dom_a"); make_dir("dom_a/cat"); make_dir("dom_a/dog");
    make_dir("dom_b"); make_dir("dom_b/cat"); make_dir("dom_b/fox");
    write_text("dom_a/cat/1.png", "x"); write_text("dom_a/dog/1.png", "x");
    write_text("dom_b/cat/1.png", "x"); write_text("dom_b/fox/1.png", "x");
    char root_a[512], root_b[512];
    path_in_temp(root_a, sizeof(root_a), "dom_a");
    path_in_temp(root_b, sizeof(root_b), "dom_b");
    Dataset *a = dataset_image_folder(root_a, error, sizeof(error));
    Dataset *b = dataset_image_folder(root_b, error, sizeof(error));
    if (a && b) {
        CHECK(domain_pair_make(a, b, b, &pair, error, sizeof(error)) == -1);
        CHECK_MSG(strstr(error, "class 1 is 'dog'") && strstr(error, "'fox'"), "%s", error);
        CHECK(domain_pair_make(a, a, a, &pair, error, sizeof(error)) == 0);
    }
    dataset_free(a);
    dataset_free(b);
    dataset_free(source);
    dataset_free(target);
    dataset_free(target_test);
}

int main(void) {
    snprintf(temp_root, sizeof(temp_root), "%s/tailor_dataset_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(temp_root)) {
        printf("cannot create a temporary directory under %s\n", temp_root);
        return 1;
    }
    RUN_TEST(idx_each_type_plain_and_gzip);
    RUN_TEST(idx_zero_dims_and_empty);
    RUN_TEST(idx_malformed_files);
    RUN_TEST(image_folder_sorted_and_filtered);
    RUN_TEST(image_folder_errors);
    RUN_TEST(image_list_parsing);
    RUN_TEST(image_list_errors);
    RUN_TEST(subset_per_class);
    RUN_TEST(subset_of_image_folder_keeps_names);
    RUN_TEST(idx_labels_dataset);
    RUN_TEST(domain_pair_checks_classes);
    char command[600];
    snprintf(command, sizeof(command), "rm -rf '%s'", temp_root);
    if (system(command) != 0) printf("note: could not remove %s\n", temp_root);
    return test_summary();
}
