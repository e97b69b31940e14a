// models/sd_checkpoint: a tiny SD-1.x-shaped model saved by diffusers as a pipeline folder and the
// same weights in the original LDM single-file naming (tests/golden/sd_tiny/, written by
// tests/ref/gen_sd_checkpoint_goldens.py, which checks with diffusers' own converter that the LDM
// file maps back to the identical tensors). Both load; the tokenizer, text encoder, UNet and VAE
// reproduce diffusers' outputs; both formats give bit-identical weights and outputs. Variants the
// test writes itself (VAE attention stored as Linear, the old text-encoder layout without
// "text_model.", diffusers' deprecated attention names) load to the same weights. The name mapping
// is checked on SD 1.x names (all distinct, spot checks against names of the released files), and
// every user error is one line naming the tensor and the file.
#define _XOPEN_SOURCE 700
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/autograd.h"
#include "engine/fs.h"
#include "engine/safetensors.h"
#include "models/sd_checkpoint.h"
#include "tests/check.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static char root[1024], folder[1200], ldm[1200], scratch[256];
static SafetensorsFile *goldens;

// Outputs: f32 through a few dozen layers summed in other orders than PyTorch's; the UNet's
// timestep embedding takes sin/cos of arguments up to 417 rad. Measured (TAILOR_GOLDEN_ERRORS=1):
// at most 9e-7 of a tensor's scale, 8% of the allowance; as test_unet / test_vae, allow 1e-5.
static const Tolerance FORWARD = {1e-5, 1e-5};

static SdModel *load(const char *path, const SdConfig *config, const char *tokenizer) {
    char error[1024];
    SdLoadOptions options = {.config = config, .tokenizer = tokenizer};
    SdModel *m = sd_model_load(path, &options, error, sizeof error);
    CHECK_MSG(m, "%s", error);
    return m;
}

static char tokenizer_folder[1300];

static SdModel *load_diffusers(void) { return load(folder, NULL, NULL); }

static SdModel *load_ldm_file(const char *path, const SdConfig *config) { return load(path, config, tokenizer_folder); }

// The outputs of a loaded model on the golden inputs.
typedef struct {
    Tensor *hidden, *unet, *decoded, *mean;
} Outputs;

static Outputs run(SdModel *m, const char *label) {
    Outputs o = {0};
    GoldenCase c = {.file = goldens};
    static const char *const prompts[2] = {"a photo of a cat", ""};
    c.name = "text";
    const SafetensorsEntry *ids_entry = golden_get(&c, "ids");
    Tensor *ids = tensor_empty_on(DTYPE_I64, SHAPE(2, 77), device_cpu());
    ClipEncodeOptions encode = clip_options_hf();
    for (int b = 0; b < 2; b++) {
        int32_t row[77];
        clip_tokenizer_encode(m->tokenizer, prompts[b], &encode, row);
        for (int t = 0; t < 77; t++) {
            tensor_i64(ids)[b * 77 + t] = row[t];
            CHECK_MSG(row[t] == (int32_t)golden_entry_get(ids_entry, b * 77 + t), "%s: prompt %d id %d: %d, transformers %d",
                      label, b, t, row[t], (int)golden_entry_get(ids_entry, b * 77 + t));
        }
    }
    o.hidden = clip_text_forward(&m->text_encoder, ids, NULL, NULL);
    golden_compare(&c, "text encoder", o.hidden, golden_get(&c, "hidden"), FORWARD);
    c.name = "unet";
    Tensor *context = golden_entry_tensor(golden_get(&(GoldenCase){.file = goldens, .name = "text"}, "hidden"));
    o.unet = unet_forward(&m->unet, golden_entry_tensor(golden_get(&c, "sample")), golden_entry_tensor(golden_get(&c, "timesteps")),
                          context, NULL);
    golden_compare(&c, "unet", o.unet, golden_get(&c, "out"), FORWARD);
    c.name = "vae";
    o.decoded = vae_decode(&m->vae, golden_entry_tensor(golden_get(&c, "latents")));
    golden_compare(&c, "vae decode", o.decoded, golden_get(&c, "decoded"), FORWARD);
    o.mean = vae_encode(&m->vae, golden_entry_tensor(golden_get(&c, "image")), NULL);
    golden_compare(&c, "vae encode", o.mean, golden_get(&c, "mean"), FORWARD);
    return o;
}

static bool same_bits(Tensor *a, Tensor *b) {
    if (!a || !b || !shape_equal(tensor_shape(a), tensor_shape(b))) return false;
    a = tensor_contiguous_raw(a), b = tensor_contiguous_raw(b);
    return !memcmp(tensor_data(a), tensor_data(b), (size_t)tensor_numel(a) * sizeof(float));
}

// Every parameter of the three stores bit-identical (f32 flat buffers of the same layout).
static bool same_weights(const SdModel *a, const SdModel *b) {
    const ParamStore *pa[3] = {a->unet_params, a->vae_params, a->text_params}, *pb[3] = {b->unet_params, b->vae_params, b->text_params};
    for (int i = 0; i < 3; i++) {
        if (pa[i]->numel != pb[i]->numel || pa[i]->count != pb[i]->count) return false;
        if (memcmp(params_values(pa[i]), params_values(pb[i]), (size_t)pa[i]->numel * sizeof(float))) return false;
    }
    return true;
}

TEST(diffusers_folder_matches_diffusers) {
    TensorScope scope = tensor_scope_begin();
    SdModel *m = load_diffusers();
    if (m) {
        run(m, "diffusers folder");
        CHECK(m->format == SD_FORMAT_DIFFUSERS && m->config.unet.levels == 3 && m->config.vae.levels == 3);
        CHECK_MSG(m->ignored == 0, "%d ignored", m->ignored);
        CHECK(strstr(m->report, "diffusers folder") && strstr(m->report, "UNet 36800, VAE 22019, text encoder 6000 parameters"));
    }
    sd_model_free(m);
    tensor_scope_end(scope);
}

// The single file with the tiny configurations (those of the diffusers folder) and its tokenizer.
TEST(single_file_matches_diffusers_and_the_folder_bitwise) {
    TensorScope scope = tensor_scope_begin();
    SdModel *folder_model = load_diffusers();
    SdModel *m = folder_model ? load_ldm_file(ldm, &folder_model->config) : NULL;
    if (m) {
        CHECK(m->format == SD_FORMAT_LDM);
        // 12 schedule buffers, position_ids, model_ema.decay / num_updates / one EMA weight.
        CHECK_MSG(m->ignored == 16, "%d ignored", m->ignored);
        CHECK(same_weights(m, folder_model));
        Outputs a = run(m, "LDM file"), b = run(folder_model, "diffusers folder");
        CHECK(same_bits(a.hidden, b.hidden) && same_bits(a.unet, b.unet) && same_bits(a.decoded, b.decoded) && same_bits(a.mean, b.mean));
    }
    sd_model_free(m);
    sd_model_free(folder_model);
    tensor_scope_end(scope);
}

// ---------------------------------------------------------------- rewritten copies

// Rewrites src into dst: edit(name, shape, ndim) may rename (name buffer), reshape, or drop (return false).
typedef bool (*EditFn)(char *name, size_t size, int64_t *shape, int *ndim);

static void rewrite(const char *src, const char *dst, EditFn edit, const char *extra_name) {
    char error[512];
    SafetensorsFile *file;
    if (safetensors_open(src, &file, error, sizeof error) != 0) {
        CHECK_MSG(false, "%s", error);
        return;
    }
    SafetensorsWriter *w = safetensors_writer_new();
    for (int i = 0; i < safetensors_count(file); i++) {
        const SafetensorsEntry *e = safetensors_entry(file, i);
        char name[256];
        int64_t shape[SAFETENSORS_MAX_DIMS];
        int ndim = e->ndim;
        snprintf(name, sizeof name, "%s", e->name);
        memcpy(shape, e->shape, sizeof shape);
        if (edit && !edit(name, sizeof name, shape, &ndim)) continue;
        safetensors_writer_add(w, name, e->dtype, ndim, shape, e->data);
    }
    static const float extra[2] = {1, 2};
    if (extra_name) safetensors_writer_add(w, extra_name, DTYPE_F32, 1, (int64_t[]){2}, extra);
    CHECK_MSG(safetensors_writer_write(w, dst, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(w);
    safetensors_close(file);
}

static bool replace_part(char *name, size_t size, const char *from, const char *to) {
    char *at = strstr(name, from);
    if (!at) return false;
    char rest[256];
    snprintf(rest, sizeof rest, "%s", at + strlen(from));
    snprintf(at, size - (size_t)(at - name), "%s%s", to, rest);
    return true;
}

// The LDM VAE attention as Linear weights, and the text encoder without "text_model.".
static bool linear_attention_old_text_layout(char *name, size_t size, int64_t *shape, int *ndim) {
    if (strstr(name, "mid.attn_1.") && *ndim == 4) *ndim = 2;
    replace_part(name, size, "cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.");
    return true;
}

// diffusers' deprecated VAE attention names, the projections stored as 1x1 convs.
static bool deprecated_attention(char *name, size_t size, int64_t *shape, int *ndim) {
    static const char *const pairs[][2] = {{".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}};
    for (int i = 0; i < 4; i++)
        if (replace_part(name, size, pairs[i][0], pairs[i][1]) && strstr(name, ".weight")) {
            shape[2] = shape[3] = 1;
            *ndim = 4;
        }
    return true;
}

static bool drop_skip_connection(char *name, size_t size, int64_t *shape, int *ndim) {
    return strcmp(name, "model.diffusion_model.input_blocks.4.0.skip_connection.weight") != 0;
}

static bool wrong_shape(char *name, size_t size, int64_t *shape, int *ndim) {
    if (!strcmp(name, "decoder.conv_in.weight")) shape[0] /= 2, shape[1] *= 2;  // same bytes, other shape
    return true;
}

static void path_in_scratch(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", scratch, name); }

// A diffusers folder in scratch/<name>: links to the committed components, except those given.
static void make_folder(const char *name, bool with_unet, const char *vae_weights) {
    char dir[512], link_path[600], target[1400];
    path_in_scratch(dir, sizeof dir, name);
    CHECK(mkdir(dir, 0777) == 0);
    const char *entries[] = {"model_index.json", "text_encoder", "tokenizer", "scheduler", with_unet ? "unet" : NULL};
    for (int i = 0; i < 5; i++) {
        if (!entries[i]) continue;
        snprintf(link_path, sizeof link_path, "%s/%s", dir, entries[i]);
        snprintf(target, sizeof target, "%s/%s", folder, entries[i]);
        CHECK(symlink(target, link_path) == 0);
    }
    snprintf(link_path, sizeof link_path, "%s/vae", dir);
    CHECK(mkdir(link_path, 0777) == 0);
    snprintf(link_path, sizeof link_path, "%s/vae/config.json", dir);
    snprintf(target, sizeof target, "%s/vae/config.json", folder);
    CHECK(symlink(target, link_path) == 0);
    snprintf(link_path, sizeof link_path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    snprintf(target, sizeof target, "%s/vae/diffusion_pytorch_model.safetensors", folder);
    if (vae_weights) rewrite(target, link_path, vae_weights[0] == 'd' ? deprecated_attention : wrong_shape, NULL);
    else CHECK(symlink(target, link_path) == 0);
}

TEST(other_spellings_load_the_same_weights) {
    TensorScope scope = tensor_scope_begin();
    SdModel *reference = load_diffusers();
    char path[512];
    path_in_scratch(path, sizeof path, "linear_attention.safetensors");
    rewrite(ldm, path, linear_attention_old_text_layout, NULL);
    SdModel *m = reference ? load_ldm_file(path, &reference->config) : NULL;
    CHECK(m && same_weights(m, reference));
    sd_model_free(m);
    make_folder("deprecated", true, "deprecated");
    path_in_scratch(path, sizeof path, "deprecated");
    m = load(path, NULL, NULL);
    CHECK(m && same_weights(m, reference));
    sd_model_free(m);
    sd_model_free(reference);
    tensor_scope_end(scope);
}

// ---------------------------------------------------------------- the mapping

static void expect_name(SdFormat format, SdPart part, const SdConfig *config, const char *name, int alternative, const char *expected) {
    char out[256] = "";
    int status = sd_checkpoint_tensor_name(format, part, config, name, alternative, out, sizeof out);
    CHECK_MSG(expected ? status == 0 && !strcmp(out, expected) : status != 0, "%s -> %s, expected %s", name, status ? "(none)" : out,
              expected ? expected : "(none)");
}

// pairs[i] = {diffusers name, LDM name without the part's prefix}.
static void expect_ldm_names(SdPart part, const SdConfig *config, const char *prefix, const char *const (*pairs)[2], size_t count) {
    for (size_t i = 0; i < count; i++) {
        char expected[256];
        snprintf(expected, sizeof expected, "%s%s", prefix, pairs[i][1]);
        expect_name(SD_FORMAT_LDM, part, config, pairs[i][0], 0, expected);
    }
}

// Names from runwayml/stable-diffusion-v1-5's v1-5-pruned-emaonly.safetensors and its diffusers folders.
TEST(sd1_names_map_as_in_the_released_files) {
    SdConfig c = sd1_config();
    const SdFormat L = SD_FORMAT_LDM;
    static const char *const unet[][2] = {
        {"down_blocks.0.resnets.1.conv1.weight", "input_blocks.2.0.in_layers.2.weight"},
        {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"},
        {"down_blocks.1.resnets.0.conv_shortcut.bias", "input_blocks.4.0.skip_connection.bias"},
        {"down_blocks.2.downsamplers.0.conv.weight", "input_blocks.9.0.op.weight"},
        {"down_blocks.3.resnets.1.time_emb_proj.weight", "input_blocks.11.0.emb_layers.1.weight"},
        {"mid_block.resnets.1.norm2.weight", "middle_block.2.out_layers.0.weight"},
        {"mid_block.attentions.0.proj_in.weight", "middle_block.1.proj_in.weight"},
        {"up_blocks.0.resnets.2.conv2.bias", "output_blocks.2.0.out_layers.3.bias"},
        {"up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight"},
        {"up_blocks.1.upsamplers.0.conv.weight", "output_blocks.5.2.conv.weight"},
        {"up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight", "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight"},
        {"time_embedding.linear_2.bias", "time_embed.2.bias"},
        {"conv_in.weight", "input_blocks.0.0.weight"},
        {"conv_norm_out.weight", "out.0.weight"},
        {"conv_out.bias", "out.2.bias"},
    };
    expect_ldm_names(SD_PART_UNET, &c, "model.diffusion_model.", unet, sizeof unet / sizeof unet[0]);
    static const char *const vae[][2] = {
        {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.down.1.block.0.nin_shortcut.weight"},
        {"encoder.down_blocks.0.downsamplers.0.conv.bias", "encoder.down.0.downsample.conv.bias"},
        {"encoder.mid_block.attentions.0.to_out.0.weight", "encoder.mid.attn_1.proj_out.weight"},
        {"decoder.mid_block.attentions.0.group_norm.bias", "decoder.mid.attn_1.norm.bias"},
        {"decoder.mid_block.resnets.1.conv2.weight", "decoder.mid.block_2.conv2.weight"},
        {"decoder.up_blocks.0.resnets.2.conv2.weight", "decoder.up.3.block.2.conv2.weight"},
        {"decoder.up_blocks.0.upsamplers.0.conv.weight", "decoder.up.3.upsample.conv.weight"},
        {"decoder.up_blocks.3.resnets.0.norm1.weight", "decoder.up.0.block.0.norm1.weight"},
        {"encoder.conv_norm_out.bias", "encoder.norm_out.bias"},
        {"decoder.conv_in.weight", "decoder.conv_in.weight"},
        {"quant_conv.weight", "quant_conv.weight"},
    };
    expect_ldm_names(SD_PART_VAE, &c, "first_stage_model.", vae, sizeof vae / sizeof vae[0]);
    expect_name(L, SD_PART_TEXT, &c, "text_model.encoder.layers.11.mlp.fc2.bias", 0,
                "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.bias");
    expect_name(L, SD_PART_TEXT, &c, "text_model.encoder.layers.11.mlp.fc2.bias", 1, "cond_stage_model.transformer.encoder.layers.11.mlp.fc2.bias");
    expect_name(L, SD_PART_UNET, &c, "conv_in.weight", 1, NULL);
    expect_name(SD_FORMAT_DIFFUSERS, SD_PART_VAE, &c, "encoder.mid_block.attentions.0.to_q.weight", 1,
                "encoder.mid_block.attentions.0.query.weight");
    expect_name(SD_FORMAT_DIFFUSERS, SD_PART_VAE, &c, "decoder.mid_block.attentions.0.to_out.0.bias", 1,
                "decoder.mid_block.attentions.0.proj_attn.bias");
    expect_name(SD_FORMAT_DIFFUSERS, SD_PART_UNET, &c, "down_blocks.0.attentions.0.proj_in.weight", 0,
                "down_blocks.0.attentions.0.proj_in.weight");
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Every weight of the full-size SD 1.x models (created without initialising) gets an LDM name with
// its part's prefix, and no two share one: 686 + 248 + 196 tensors.
TEST(sd1_mapping_is_one_to_one) {
    SdConfig c = sd1_config();
    ParamStore *stores[3] = {params_new(), params_new(), params_new()};
    Unet unet;
    Vae vae;
    ClipText text;
    unet_create(&unet, stores[0], "", c.unet, NULL);
    vae_create(&vae, stores[1], "", c.vae, NULL);
    clip_text_create(&text, stores[2], "", c.text, NULL);
    int total = stores[0]->count + stores[1]->count + stores[2]->count, n = 0;
    char **names = calloc((size_t)total, sizeof *names);
    static const char *const prefixes[3] = {"model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model."};
    for (int part = 0; part < 3; part++)
        for (int i = 0; i < stores[part]->count; i++) {
            char out[256];
            int status = sd_checkpoint_tensor_name(SD_FORMAT_LDM, (SdPart)part, &c, stores[part]->items[i].name, 0, out, sizeof out);
            CHECK_MSG(status == 0 && !strncmp(out, prefixes[part], strlen(prefixes[part])), "%s -> %s", stores[part]->items[i].name, out);
            names[n++] = strdup(out);
        }
    CHECK_MSG(total == 686 + 248 + 196, "%d + %d + %d weights", stores[0]->count, stores[1]->count, stores[2]->count);
    qsort(names, (size_t)n, sizeof *names, compare_strings);
    for (int i = 1; i < n; i++) CHECK_MSG(strcmp(names[i - 1], names[i]) != 0, "two weights map to %s", names[i]);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    unet_free(&unet);
    vae_free(&vae);
    clip_text_free(&text);
    for (int i = 0; i < 3; i++) params_free(stores[i]);
}

// ---------------------------------------------------------------- errors

// Loading fails with one line holding every expected piece.
static void expect_error(const char *path, const SdConfig *config, const char *tokenizer, const char *const *pieces) {
    char error[1024] = "";
    SdLoadOptions options = {.config = config, .tokenizer = tokenizer};
    SdModel *m = sd_model_load(path, &options, error, sizeof error);
    CHECK_MSG(!m, "%s loaded", path);
    sd_model_free(m);
    CHECK_MSG(!strchr(error, '\n') && error[0], "not one line: '%s'", error);
    for (int i = 0; pieces[i]; i++) CHECK_MSG(strstr(error, pieces[i]), "'%s' lacks '%s'", error, pieces[i]);
}

TEST(errors_name_the_tensor_and_the_file) {
    TensorScope scope = tensor_scope_begin();
    SdModel *reference = load_diffusers();
    if (!reference) return;
    const SdConfig *tiny = &reference->config;
    char path[512];

    path_in_scratch(path, sizeof path, "missing.safetensors");
    rewrite(ldm, path, drop_skip_connection, NULL);
    expect_error(path, tiny, tokenizer_folder,
                 (const char *[]){path, ": tensor 'model.diffusion_model.input_blocks.4.0.skip_connection.weight' is missing "
                                        "(the UNet's down_blocks.1.resnets.0.conv_shortcut.weight)", NULL});

    path_in_scratch(path, sizeof path, "unexpected.safetensors");
    rewrite(ldm, path, NULL, "first_stage_model.encoder.mid.attn_2.q.weight");
    expect_error(path, tiny, tokenizer_folder,
                 (const char *[]){path, ": unexpected tensor 'first_stage_model.encoder.mid.attn_2.q.weight'", NULL});

    make_folder("wrong_shape", true, "wrong_shape");
    path_in_scratch(path, sizeof path, "wrong_shape");
    expect_error(path, NULL, NULL,
                 (const char *[]){"wrong_shape/vae/diffusion_pytorch_model.safetensors: tensor 'decoder.conv_in.weight' has shape "
                                  "[4, 8, 3, 3], expected [8, 4, 3, 3]", NULL});

    path_in_scratch(path, sizeof path, "truncated.safetensors");
    FILE *in = fopen(ldm, "rb"), *out = fopen(path, "wb");
    char buffer[4096];
    size_t n, total = 0;
    while (in && out && (n = fread(buffer, 1, sizeof buffer, in)) > 0 && total < 200000) total += fwrite(buffer, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
    expect_error(path, tiny, tokenizer_folder, (const char *[]){path, "beyond the end", NULL});

    make_folder("no_unet", false, NULL);
    path_in_scratch(path, sizeof path, "no_unet");
    expect_error(path, NULL, NULL, (const char *[]){path, ": no unet/ folder", NULL});

    path_in_scratch(path, sizeof path, "nothing_here");
    expect_error(path, NULL, NULL, (const char *[]){path, ": cannot open: No such file or directory", NULL});

    // No tokenizer given: a single file takes the OpenAI vocabulary (49,408 ids), too large here.
    expect_error(ldm, tiny, NULL, (const char *[]){ldm, "has 49408 ids, but the text encoder's vocabulary has 521 rows", NULL});
    // And the SD 1.x configurations are the default: the tiny file's first weight does not fit.
    expect_error(ldm, NULL, tokenizer_folder, (const char *[]){ldm, "tensor 'model.diffusion_model.time_embed.0.weight' has shape [16, 4], expected [1280, 320] (the UNet's time_embedding.linear_1.weight)", NULL});

    sd_model_free(reference);
    tensor_scope_end(scope);
}

int main(void) {
    const char *env = getenv("TAILOR_ROOT");
    snprintf(root, sizeof root, "%s", env ? env : ".");
    snprintf(folder, sizeof folder, "%s/tests/golden/sd_tiny/diffusers", root);
    snprintf(ldm, sizeof ldm, "%s/tests/golden/sd_tiny/ldm.safetensors", root);
    snprintf(tokenizer_folder, sizeof tokenizer_folder, "%s/tokenizer", folder);
    if (root[0] != '/') {  // symlinks in the scratch folder need absolute targets
        char cwd[128];
        if (getcwd(cwd, sizeof cwd) && strlen(root) < 512) {
            snprintf(folder, sizeof folder, "%s/%.512s/tests/golden/sd_tiny/diffusers", cwd, root);
            snprintf(tokenizer_folder, sizeof tokenizer_folder, "%s/tokenizer", folder);
        }
    }
    char path[1200], error[512];
    snprintf(path, sizeof path, "%s/tests/golden/sd_tiny/goldens.safetensors", root);
    if (safetensors_open(path, &goldens, error, sizeof error) != 0) printf("  cannot read %s: %s\n", path, error);
    snprintf(scratch, sizeof scratch, "/tmp/tailor_sd_checkpoint_XXXXXX");
    if (!mkdtemp(scratch)) tensor_fatal("test_sd_checkpoint", "cannot make a scratch folder");
    setenv("TAILOR_ROOT", root, 0);
    golden_print_errors = getenv("TAILOR_GOLDEN_ERRORS") != NULL;
    autograd_set_enabled(false);
    RUN_TEST(diffusers_folder_matches_diffusers);
    RUN_TEST(single_file_matches_diffusers_and_the_folder_bitwise);
    RUN_TEST(other_spellings_load_the_same_weights);
    RUN_TEST(sd1_names_map_as_in_the_released_files);
    RUN_TEST(sd1_mapping_is_one_to_one);
    RUN_TEST(errors_name_the_tensor_and_the_file);
    fs_remove_tree(scratch);
    if (goldens) safetensors_close(goldens);
    return test_summary();
}
