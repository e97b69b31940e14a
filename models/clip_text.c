#include "models/clip_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json.h"

ClipTextConfig clip_text_sd1_config(void) {
    return (ClipTextConfig){.vocab_size = 49408, .width = 768, .layers = 12, .heads = 12, .intermediate = 3072,
                            .max_positions = 77, .eps = 1e-5, .quick_gelu = true, .eos_token_id = 2, .projection_dim = 0};
}

int clip_text_config_from_json(const char *json_text, ClipTextConfig *config, char *error, size_t error_size) {
    char parse_error[256];
    JsonValue *root = json_parse(json_text, strlen(json_text), parse_error, sizeof parse_error);
    if (!root) return snprintf(error, error_size, "clip text config: %s", parse_error), -1;
    const JsonValue *text = json_get(root, "text_config") ? json_get(root, "text_config") : root;
    // transformers' CLIPTextConfig defaults (the fields a config.json may leave out).
    ClipTextConfig c = {.vocab_size = 49408, .width = 512, .layers = 12, .heads = 8, .intermediate = 2048,
                        .max_positions = 77, .eps = 1e-5, .quick_gelu = true, .eos_token_id = 49407, .projection_dim = 0};
    struct {
        const char *key;
        int64_t *value;
    } ints[] = {{"vocab_size", &c.vocab_size}, {"hidden_size", &c.width}, {"num_hidden_layers", &c.layers},
                {"num_attention_heads", &c.heads}, {"intermediate_size", &c.intermediate},
                {"max_position_embeddings", &c.max_positions}, {"eos_token_id", &c.eos_token_id}};
    int status = 0;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && status == 0; i++) {
        const JsonValue *v = json_get(text, ints[i].key);
        if (v && json_int64(v, ints[i].value) != 0)
            status = -1, snprintf(error, error_size, "clip text config: \"%s\" must be an integer", ints[i].key);
    }
    // A projection exists for CLIPTextModelWithProjection and CLIPModel (whose config nests the text
    // part), not for CLIPTextModel, although its config carries projection_dim too: the
    // "architectures" list that save_pretrained writes tells them apart.
    bool projected = text != root;
    const JsonValue *architectures = json_get(root, "architectures");
    for (size_t i = 0; i < json_length(architectures); i++) {
        const char *a = json_string(json_at(architectures, i));
        projected |= a && (!strcmp(a, "CLIPTextModelWithProjection") || !strcmp(a, "CLIPModel"));
    }
    const JsonValue *projection = json_get(text, "projection_dim") ? json_get(text, "projection_dim") : json_get(root, "projection_dim");
    if (status == 0 && projected && projection && json_int64(projection, &c.projection_dim) != 0)
        status = -1, snprintf(error, error_size, "clip text config: \"projection_dim\" must be an integer");
    if (status == 0 && projected && !projection) c.projection_dim = 512;  // transformers' default
    double eps;
    if (json_double(json_get(text, "layer_norm_eps"), &eps) == 0) c.eps = eps;
    const char *act = json_string(json_get(text, "hidden_act"));
    if (status == 0 && act) {
        if (!strcmp(act, "quick_gelu")) c.quick_gelu = true;
        else if (!strcmp(act, "gelu")) c.quick_gelu = false;
        else status = -1, snprintf(error, error_size, "clip text config: hidden_act \"%s\" is not implemented", act);
    }
    json_free(root);
    if (status == 0 && (c.width < 1 || c.heads < 1 || c.width % c.heads || c.layers < 1 || c.vocab_size < 1 ||
                        c.max_positions < 1 || c.intermediate < 1 || c.projection_dim < 0))
        status = -1, snprintf(error, error_size, "clip text config: inconsistent sizes (hidden %lld, heads %lld, layers %lld)",
                              (long long)c.width, (long long)c.heads, (long long)c.layers);
    if (status == 0) *config = c;
    return status;
}


// transformers' config.json of a CLIPTextModel (or ...WithProjection when it has a projection).
int clip_text_config_to_json(const ClipTextConfig *c, char *out, size_t size) {
    int n = snprintf(out, size,
                     "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"clip_text_model\",\n  \"vocab_size\": %lld,\n"
                     "  \"hidden_size\": %lld,\n  \"num_hidden_layers\": %lld,\n  \"num_attention_heads\": %lld,\n"
                     "  \"intermediate_size\": %lld,\n  \"max_position_embeddings\": %lld,\n  \"layer_norm_eps\": %.17g,\n"
                     "  \"hidden_act\": \"%s\",\n  \"eos_token_id\": %lld,\n  \"projection_dim\": %lld\n}\n",
                     c->projection_dim > 0 ? "CLIPTextModelWithProjection" : "CLIPTextModel", (long long)c->vocab_size,
                     (long long)c->width, (long long)c->layers, (long long)c->heads, (long long)c->intermediate,
                     (long long)c->max_positions, c->eps, c->quick_gelu ? "quick_gelu" : "gelu", (long long)c->eos_token_id,
                     (long long)(c->projection_dim > 0 ? c->projection_dim : c->width));
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

void clip_text_create(ClipText *net, ParamStore *store, const char *prefix, ClipTextConfig c, Rng *rng) {
    char name[256];
    *net = (ClipText){.config = c};
    int64_t W = c.width;
    net->token_embedding = params_add(store, param_name(name, sizeof name, "%stext_model.embeddings.token_embedding.weight", prefix),
                                      SHAPE(c.vocab_size, W), PARAM_GROUP_DECAY);
    net->position_embedding = params_add(store, param_name(name, sizeof name, "%stext_model.embeddings.position_embedding.weight", prefix),
                                         SHAPE(c.max_positions, W), PARAM_GROUP_DECAY);
    // transformers' CLIP initialisation: embeddings N(0, 0.02); Linear layers as nn.Linear here.
    if (rng) init_normal(net->token_embedding, rng, 0.0, 0.02), init_normal(net->position_embedding, rng, 0.0, 0.01);
    net->layers = calloc((size_t)c.layers, sizeof(ClipTextLayer));
    if (!net->layers) tensor_fatal("clip_text", "out of memory");
    for (int64_t i = 0; i < c.layers; i++) {
        ClipTextLayer *l = &net->layers[i];
        char base[160];
        snprintf(base, sizeof base, "%stext_model.encoder.layers.%lld.", prefix, (long long)i);
        l->norm1 = layernorm_create(store, param_name(name, sizeof name, "%slayer_norm1", base), W, c.eps);
        l->q = linear_create(store, param_name(name, sizeof name, "%sself_attn.q_proj", base), W, W, true, rng);
        l->k = linear_create(store, param_name(name, sizeof name, "%sself_attn.k_proj", base), W, W, true, rng);
        l->v = linear_create(store, param_name(name, sizeof name, "%sself_attn.v_proj", base), W, W, true, rng);
        l->out = linear_create(store, param_name(name, sizeof name, "%sself_attn.out_proj", base), W, W, true, rng);
        l->norm2 = layernorm_create(store, param_name(name, sizeof name, "%slayer_norm2", base), W, c.eps);
        l->fc1 = linear_create(store, param_name(name, sizeof name, "%smlp.fc1", base), W, c.intermediate, true, rng);
        l->fc2 = linear_create(store, param_name(name, sizeof name, "%smlp.fc2", base), c.intermediate, W, true, rng);
    }
    net->final_norm = layernorm_create(store, param_name(name, sizeof name, "%stext_model.final_layer_norm", prefix), W, c.eps);
    if (c.projection_dim > 0)
        net->projection = linear_create(store, param_name(name, sizeof name, "%stext_projection", prefix), W, c.projection_dim, false, rng);
}

void clip_text_free(ClipText *net) {
    free(net->layers);
    net->layers = NULL;
}

// Where each row's end-of-text token is: the first eos_token_id, or, for configs with the legacy
// eos_token_id 2, the position of the largest id (what transformers still does for them).
static Tensor *end_positions(const ClipTextConfig *c, Tensor *ids_host) {
    int64_t B = ids_host->shape[0], T = ids_host->shape[1];
    Tensor *rows = tensor_empty(DTYPE_I64, SHAPE(B));
    for (int64_t b = 0; b < B; b++) {
        const int64_t *row = tensor_i64(ids_host) + b * T;
        int64_t at = 0;
        for (int64_t t = 0; t < T; t++) {
            bool better = c->eos_token_id == 2 ? row[t] > row[at] : (row[t] == c->eos_token_id && row[at] != c->eos_token_id);
            if (better) at = t;
        }
        tensor_i64(rows)[b] = b * T + at;
    }
    return rows;
}

Tensor *clip_text_forward(ClipText *net, Tensor *ids, Tensor **hidden, Tensor **pooled) {
    const ClipTextConfig *c = &net->config;
    char got[96];
    if (ids->ndim != 2 || ids->dtype != DTYPE_I64 || ids->shape[1] < 1 || ids->shape[1] > c->max_positions)
        tensor_fatal("clip_text", "token ids %s: expected [B, T] i64 with 1 <= T <= %lld", tensor_shape_string(ids, got, sizeof got),
                     (long long)c->max_positions);
    int64_t B = ids->shape[0], T = ids->shape[1], W = c->width;
    Tensor *positions = op_narrow(net->position_embedding, 0, 0, T);
    Tensor *x = op_add(op_embedding(net->token_embedding, ids), positions);  // [B, T, W]
    if (hidden) hidden[0] = x;
    for (int64_t i = 0; i < c->layers; i++) {
        ClipTextLayer *l = &net->layers[i];
        // q, k, v projections stacked into one GEMM for the fused causal attention.
        const Linear qkv_layers[3] = {l->q, l->k, l->v};
        Tensor *qkv = linear_stacked_forward(qkv_layers, 3, layernorm_forward(&l->norm1, x));
        x = op_add(x, linear_forward(&l->out, op_self_attention(qkv, (int)c->heads, true, 0)));
        Tensor *h = linear_forward(&l->fc1, layernorm_forward(&l->norm2, x));
        h = c->quick_gelu ? op_quick_gelu(h) : op_gelu(h);
        x = op_add(x, linear_forward(&l->fc2, h));
        if (hidden) hidden[i + 1] = x;
    }
    Tensor *last = layernorm_forward(&net->final_norm, x);
    if (pooled) {
        Tensor *ids_host = tensor_contiguous_raw(tensor_is_cuda(ids) ? tensor_to_device_raw(ids, device_cpu()) : ids);
        Tensor *rows = end_positions(c, ids_host);
        if (tensor_is_cuda(last)) rows = tensor_to_device_raw(rows, last->storage->device);
        Tensor *picked = op_index_select(op_reshape(last, SHAPE(B * T, W)), 0, rows);
        *pooled = net->projection.weight ? linear_forward(&net->projection, picked) : picked;
    }
    return last;
}
