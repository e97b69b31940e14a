// diffusion/pipeline: generators as `tailor generate` loads and samples them.
//  - The tiny Stable-Diffusion-shaped folder (tests/golden/sd_tiny/diffusers) sampled from
//    diffusers' starting latents reproduces StableDiffusionPipeline's images (DDIM and Euler, with
//    and without guidance; tests/ref/gen_pipeline_goldens.py).
//  - A folder written by pipeline_save (text- and class-conditional) loads back to the same
//    weights, configuration, tokenizer, class names and prompts.
//  - An image depends on its seed and condition only: the same in any batch; other seeds differ.
//  - A DiT .safetensors with a VAE folder: configuration read off the shapes, sampling equal to
//    the DiT's own denoiser through the sampler and the VAE.
//  - Errors: one line naming the file.
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diffusion/pipeline.h"
#include "engine/autograd.h"
#include "engine/fs.h"
#include "engine/ops.h"
#include "engine/safetensors.h"
#include "tests/check.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static char root[1024], sd_folder[1200], scratch[256];
static SafetensorsFile *goldens;

static Pipeline *load(const char *path, const char *vae) {
    char error[1024];
    PipelineLoadOptions options = {.vae = vae};
    Pipeline *p = pipeline_load(path, &options, error, sizeof error);
    CHECK_MSG(p, "%s", error);
    return p;
}

// Images in [0, 1] after 4 sampler steps (guided UNet calls in f32) and the VAE decoder, summed in
// other orders than PyTorch's. Measured (TAILOR_GOLDEN_ERRORS=1): at most 9e-7; allow 1e-5, as the
// model tests do for one network.
static const Tolerance IMAGES = {1e-5, 1e-5};

static void sd_case(Pipeline *p, const char *name, SamplerKind kind, double guidance) {
    GoldenCase *c = golden_case_begin(goldens, name, false);
    TensorScope scope = tensor_scope_begin();
    static const char *const prompts[2] = {"a photo of a cat", "a red dog"};
    Tensor *states = pipeline_text_states(p, prompts, 2, device_cpu());
    Tensor *latents = op_clone(golden_entry_tensor(safetensors_find(goldens, "latents")));
    PipelineSampling s = pipeline_sampling_defaults();
    s.sampler = kind, s.steps = 4, s.guidance_scale = guidance;
    Tensor *images = pipeline_sample(p, states, latents, NULL, &s, name);
    golden_compare(c, "images", images, golden_get(c, "images"), IMAGES);
    tensor_scope_end(scope);
    golden_case_end(c);
}

TEST(sd_folder_sampling_matches_diffusers) {
    Pipeline *p = load(sd_folder, NULL);
    if (!p) return;
    CHECK(p->condition == PIPELINE_TEXT && p->vae && p->clip_tokenizer && p->context_length == 77);
    CHECK_MSG(p->image_size == 32, "image size %lld (unet sample_size 8 x VAE factor 4)", (long long)p->image_size);
    CHECK(p->scheduler.beta_schedule == BETA_SCALED_LINEAR && p->scheduler.steps_offset == 1 && p->scheduler_spacing_set);
    sd_case(p, "ddim", SAMPLER_DDIM, 3.0);
    sd_case(p, "euler", SAMPLER_EULER, 3.0);
    sd_case(p, "ddim_unguided", SAMPLER_DDIM, 1.0);
    pipeline_free(p);
}

// ---------------------------------------------------------------- folders written here

static UnetConfig tiny_unet(bool text, int64_t classes) {
    UnetConfig c = unet_default_config();
    c.in_channels = c.out_channels = 3;
    c.levels = 2;
    c.block_out_channels[0] = 8, c.block_out_channels[1] = 16;
    c.heads[0] = c.heads[1] = 2;
    c.down_cross_attention[0] = false, c.down_cross_attention[1] = text;
    c.up_cross_attention[0] = text, c.up_cross_attention[1] = false;
    c.mid_block = text ? UNET_MID_CROSS_ATTENTION : UNET_MID_RESNET;
    c.cross_attention_dim = text ? 16 : 0;
    c.norm_groups = 4;
    c.num_class_embeds = classes ? classes + 1 : 0;
    return c;
}

typedef struct {
    ParamStore *store;
    Unet unet;
    ClipText text;
    UnetConfig unet_config;
    ClipTextConfig text_config;
    WordTokenizer *tokenizer;
} Trained;

static const char *const CAPTIONS[] = {"a red digit seven", "a blue letter a", "a green coat on a photo background"};

static void make_trained(Trained *t, bool text, int64_t classes, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->store = params_new();
    Rng rng = rng_make(seed, 0);
    t->unet_config = tiny_unet(text, classes);
    unet_create(&t->unet, t->store, "unet.", t->unet_config, &rng);
    if (text) {
        t->tokenizer = word_tokenizer_build(CAPTIONS, 3, word_vocab_defaults());
        t->text_config = (ClipTextConfig){.vocab_size = word_tokenizer_vocab_size(t->tokenizer), .width = 16, .layers = 1,
                                          .heads = 2, .intermediate = 32, .max_positions = 8, .eps = 1e-5,
                                          .quick_gelu = true, .eos_token_id = WORD_EOS_ID};
        clip_text_create(&t->text, t->store, "text_encoder.", t->text_config, &rng);
    }
    params_finalize(t->store);
    // The UNet's output layers start at PyTorch's defaults (not zero), so outputs depend on every weight.
}

static void free_trained(Trained *t) {
    unet_free(&t->unet);
    if (t->tokenizer) clip_text_free(&t->text);
    word_tokenizer_free(t->tokenizer);
    params_free(t->store);
}

static int save(Trained *t, const char *folder, const char *const *names, int64_t n_names) {
    SamplerConfig scheduler = sampler_config_defaults(SAMPLER_DDIM);
    scheduler.beta_schedule = BETA_SQUAREDCOS_CAP_V2;
    scheduler.prediction_type = PREDICTION_V;
    static const char *const prompts[] = {"a red digit seven", "a \"quoted\" prompt"};
    PipelineSaveSpec spec = {.unet = &t->unet_config, .text = t->tokenizer ? &t->text_config : NULL,
                             .tokenizer = t->tokenizer, .scheduler = &scheduler, .image_size = 16, .context_length = 6,
                             .class_names = names, .n_class_names = n_names, .sample_prompts = prompts,
                             .n_sample_prompts = 2, .extra_json = "\"trained_steps\": 7"};
    char error[1024];
    int status = pipeline_save(folder, t->store, &spec, error, sizeof error);
    CHECK_MSG(status == 0, "%s", error);
    return status;
}

static bool same_values(Tensor *a, Tensor *b) {
    Tensor *x = op_contiguous(a), *y = op_contiguous(b);
    return tensor_numel(x) == tensor_numel(y) && !memcmp(tensor_f32(x), tensor_f32(y), (size_t)tensor_numel(x) * sizeof(float));
}

TEST(text_folder_round_trip) {
    Trained t;
    make_trained(&t, true, 0, 3);
    char folder[400];
    snprintf(folder, sizeof folder, "%s/text", scratch);
    if (save(&t, folder, NULL, 0) != 0) return free_trained(&t);
    // Saving again replaces the folder whole.
    if (save(&t, folder, NULL, 0) != 0) return free_trained(&t);
    Pipeline *p = load(folder, NULL);
    if (!p) return free_trained(&t);
    CHECK(p->condition == PIPELINE_TEXT && !p->vae && p->word_tokenizer && !p->clip_tokenizer);
    CHECK(p->context_length == 6 && p->image_size == 16 && p->latent_factor == 1 && p->latent_channels == 3);
    CHECK(p->scheduler.beta_schedule == BETA_SQUAREDCOS_CAP_V2 && p->scheduler.prediction_type == PREDICTION_V);
    CHECK(p->n_sample_prompts == 2 && !strcmp(p->sample_prompts[1], "a \"quoted\" prompt"));
    TensorScope scope = tensor_scope_begin();
    // Same prompts -> same ids and states; same inputs -> the same UNet output, bit for bit.
    static const char *const prompts[2] = {"a red digit seven", "a blue coat"};
    Tensor *ids = pipeline_tokenize(p, prompts, 2);
    CHECK(ids->shape[1] == 6 && tensor_i64(ids)[0] == WORD_BOS_ID);
    Tensor *states = pipeline_text_states(p, prompts, 2, device_cpu());
    Tensor *expected_states = clip_text_forward(&t.text, ids, NULL, NULL);
    CHECK(same_values(states, expected_states));
    Rng rng = rng_make(9, 0);
    Tensor *x = diffusion_randn(&rng, DTYPE_F32, SHAPE(2, 3, 16, 16), device_cpu());
    double steps[2] = {10, 700};
    Tensor *timesteps = diffusion_values_tensor(x, steps, 2);
    CHECK(same_values(pipeline_denoiser(x, timesteps, states, p), unet_forward(&t.unet, x, timesteps, expected_states, NULL)));
    tensor_scope_end(scope);
    pipeline_free(p);
    free_trained(&t);
}

TEST(class_folder_round_trip) {
    Trained t;
    make_trained(&t, false, 3, 4);
    char folder[400];
    snprintf(folder, sizeof folder, "%s/class", scratch);
    static const char *const names[3] = {"zero", "one", "two"};
    if (save(&t, folder, names, 3) != 0) return free_trained(&t);
    Pipeline *p = load(folder, NULL);
    if (!p) return free_trained(&t);
    CHECK(p->condition == PIPELINE_CLASS && p->num_classes == 3 && !p->text_encoder);
    CHECK(pipeline_class_id(p, "two") == 2 && pipeline_class_id(p, "1") == 1 && pipeline_class_id(p, "3") == -1 &&
          pipeline_class_id(p, "seven") == -1);
    TensorScope scope = tensor_scope_begin();
    Tensor *null = pipeline_null_condition(p, device_cpu());
    CHECK(null && tensor_i64(null)[0] == 3);
    int64_t ids[2] = {0, 2};
    Tensor *labels = pipeline_class_labels(p, ids, 2, device_cpu());
    Rng rng = rng_make(2, 0);
    Tensor *x = diffusion_randn(&rng, DTYPE_F32, SHAPE(2, 3, 16, 16), device_cpu());
    double steps[2] = {5, 999};
    Tensor *timesteps = diffusion_values_tensor(x, steps, 2);
    CHECK(same_values(pipeline_denoiser(x, timesteps, labels, p), unet_forward(&t.unet, x, timesteps, NULL, labels)));
    tensor_scope_end(scope);
    pipeline_free(p);
    free_trained(&t);
}

// Image k of a batch equals the same seed and prompt generated alone, for a deterministic (DDIM)
// and a noisy (Euler-ancestral) sampler; other seeds give other images.
TEST(images_depend_on_their_seed_only) {
    Trained t;
    make_trained(&t, true, 0, 5);
    char folder[400];
    snprintf(folder, sizeof folder, "%s/seeds", scratch);
    if (save(&t, folder, NULL, 0) != 0) return free_trained(&t);
    Pipeline *p = load(folder, NULL);
    if (!p) return free_trained(&t);
    SamplerKind kinds[2] = {SAMPLER_DDIM, SAMPLER_EULER_ANCESTRAL};
    for (int k = 0; k < 2; k++) {
        TensorScope scope = tensor_scope_begin();
        PipelineSampling s = pipeline_sampling_defaults();
        s.sampler = kinds[k], s.steps = 3;
        static const char *const prompts[3] = {"a blue letter a", "a red digit seven", "a green coat"};
        uint64_t seeds[3] = {5, 6, 7};
        Tensor *batch = pipeline_generate(p, pipeline_text_states(p, prompts, 3, device_cpu()), 3, seeds, &s, "test");
        Tensor *alone = pipeline_generate(p, pipeline_text_states(p, prompts + 1, 1, device_cpu()), 1, seeds + 1, &s, "test");
        CHECK(batch->ndim == 4 && batch->shape[0] == 3 && batch->shape[1] == 3 && batch->shape[2] == 16);
        Tensor *in_batch = op_contiguous(op_narrow(batch, 0, 1, 1));
        double worst = 0;
        for (int64_t i = 0; i < tensor_numel(alone); i++) {
            double d = fabs((double)tensor_f32(in_batch)[i] - (double)tensor_f32(alone)[i]);
            worst = d > worst ? d : worst;
        }
        // The GEMMs block a batch of 3 and of 1 differently, so sums round differently: equal up to
        // f32 rounding through the steps, not bit for bit. Measured 1.1e-6 (DDIM) and 1.1e-4
        // (Euler-ancestral: 3 large steps from sigma ~ 14 amplify it); another seed's noise moves
        // pixels by O(0.1). Bound: a quarter of the 1/255 step of a saved pixel.
        CHECK_MSG(worst < 1e-3, "%s: image 1 of the batch differs from the same seed alone by %g",
                  sampler_kind_name(kinds[k]), worst);
        if (golden_print_errors) printf("  %s: batch vs alone %g\n", sampler_kind_name(kinds[k]), worst);
        uint64_t other = 8;
        Tensor *reseeded = pipeline_generate(p, pipeline_text_states(p, prompts + 1, 1, device_cpu()), 1, &other, &s, "test");
        CHECK(!same_values(reseeded, alone));
        float lo = 1, hi = 0;
        for (int64_t i = 0; i < tensor_numel(batch); i++) {
            float v = tensor_f32(batch)[i];
            lo = v < lo ? v : lo, hi = v > hi ? v : hi;
        }
        CHECK_MSG(lo >= 0 && hi <= 1 && hi > lo, "images in [%g, %g]", lo, hi);
        tensor_scope_end(scope);
    }
    pipeline_free(p);
    free_trained(&t);
}

// A tiny DiT (official names) as a .safetensors file, with the tiny SD VAE.
TEST(dit_file_with_a_vae) {
    DitConfig c = {.depth = 2, .hidden = 64, .heads = 1, .patch_size = 2, .input_size = 8, .in_channels = 4,
                   .num_classes = 5, .learn_sigma = true, .null_class = true, .mlp_ratio = 4.0};
    ParamStore *store = params_new();
    Dit dit;
    Rng rng = rng_make(11, 0);
    dit_create(&dit, store, "", c, &rng);
    params_finalize(store);
    // adaLN-Zero starts every block and the output at zero: give them values so the test sees them.
    Rng fill = rng_make(12, 0);
    rng_fill_normal_f32(&fill, params_values(store), store->numel, 0.0f, 0.05f);
    char path[400], vae[1300], error[1024];
    snprintf(path, sizeof path, "%s/dit.safetensors", scratch);
    snprintf(vae, sizeof vae, "%s/vae", sd_folder);
    CHECK_MSG(params_save(store, path, NULL, error, sizeof error) == 0, "%s", error);
    PipelineLoadOptions none = {0};
    CHECK(!pipeline_load(path, &none, error, sizeof error) && strstr(error, "--vae") && strstr(error, path));
    Pipeline *p = load(path, vae);
    if (p) {
        const DitConfig *d = &p->dit->config;
        CHECK_MSG(d->depth == 2 && d->hidden == 64 && d->patch_size == 2 && d->input_size == 8 && d->in_channels == 4 &&
                      d->num_classes == 5 && d->learn_sigma,
                  "read %d deep, %lld wide, patch %lld, input %lld, %lld classes", d->depth, (long long)d->hidden,
                  (long long)d->patch_size, (long long)d->input_size, (long long)d->num_classes);
        CHECK(p->condition == PIPELINE_CLASS && p->image_size == 32 && p->vae);
        p->dit->config.heads = 1;  // as created (64 wide would read as 1 head anyway)
        TensorScope scope = tensor_scope_begin();
        int64_t ids[2] = {4, 0};
        PipelineSampling s = pipeline_sampling_defaults();
        s.steps = 3;
        Rng noise_rng = rng_make(13, 0);
        Tensor *noise = diffusion_randn(&noise_rng, DTYPE_F32, SHAPE(2, 4, 8, 8), device_cpu());
        Tensor *images = pipeline_sample(p, pipeline_class_labels(p, ids, 2, device_cpu()), noise, NULL, &s, "test");
        // The same by hand: the sampler over dit_denoiser with the null class, then the VAE.
        Sampler sampler = sampler_make(sampler_config_defaults(SAMPLER_DDIM), 3, "test");
        GuidedModel model = guided_model(dit_denoiser, &dit, pipeline_class_labels(p, ids, 2, device_cpu()));
        model.null_condition = dit_null_labels(&dit, 1);
        model.guidance_scale = s.guidance_scale;
        Rng unused = rng_make(0, 0);
        Tensor *latents = sampler_sample(&sampler, &model, noise, &unused);
        Tensor *expected = op_clamp(op_add_scalar(op_mul_scalar(vae_decode(p->vae, op_mul_scalar(latents, 1 / 0.18215)), 0.5), 0.5), 0, 1);
        CHECK(images->shape[2] == 32 && same_values(images, expected));
        sampler_free(&sampler);
        tensor_scope_end(scope);
        pipeline_free(p);
    }
    dit_free(&dit);
    params_free(store);
}

TEST(errors_name_the_file) {
    char error[1024], path[600];
    PipelineLoadOptions none = {0};
    snprintf(path, sizeof path, "%s/missing", scratch);
    CHECK(!pipeline_load(path, &none, error, sizeof error) && strstr(error, path) && strstr(error, "no such file"));
    snprintf(path, sizeof path, "%s/empty", scratch);
    fs_make_directories(path);
    CHECK(!pipeline_load(path, &none, error, sizeof error) && strstr(error, "no model_index.json"));
    // A tailor.json of another format.
    Trained t;
    make_trained(&t, true, 0, 6);
    snprintf(path, sizeof path, "%s/badformat", scratch);
    if (save(&t, path, NULL, 0) == 0) {
        char file[700];
        snprintf(file, sizeof file, "%s/tailor.json", path);
        fs_write_text(file, "{\"format\": \"something-else\"}");
        CHECK_MSG(!pipeline_load(path, &none, error, sizeof error) && strstr(error, "tailor.json") && strstr(error, "something-else"),
                  "%s", error);
        // A missing weight file names the component folder.
        fs_write_text(file, "{\"format\": \"" PIPELINE_FORMAT "\"}");
        snprintf(file, sizeof file, "%s/text_encoder/model.safetensors", path);
        unlink(file);
        CHECK_MSG(!pipeline_load(path, &none, error, sizeof error) && strstr(error, "text_encoder") && strstr(error, "model.safetensors"),
                  "%s", error);
    }
    free_trained(&t);
}

int main(void) {
    const char *env = getenv("TAILOR_ROOT");
    snprintf(root, sizeof root, "%s", env ? env : ".");
    snprintf(sd_folder, sizeof sd_folder, "%s/tests/golden/sd_tiny/diffusers", root);
    goldens = golden_open("pipeline.safetensors");
    snprintf(scratch, sizeof scratch, "/tmp/tailor_pipeline_XXXXXX");
    if (!mkdtemp(scratch)) tensor_fatal("test_pipeline", "cannot make a scratch folder");
    setenv("TAILOR_ROOT", root, 0);
    autograd_set_enabled(false);
    RUN_TEST(sd_folder_sampling_matches_diffusers);
    RUN_TEST(text_folder_round_trip);
    RUN_TEST(class_folder_round_trip);
    RUN_TEST(images_depend_on_their_seed_only);
    RUN_TEST(dit_file_with_a_vae);
    RUN_TEST(errors_name_the_file);
    fs_remove_tree(scratch);
    if (goldens) safetensors_close(goldens);
    return test_summary();
}
