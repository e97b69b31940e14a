// CLIP's text transformer (Hugging Face transformers' CLIPTextModel / CLIPTextModelWithProjection,
// the text encoder of Stable Diffusion 1.x and of CLIP): token + learned position embeddings,
// pre-norm layers of causal self-attention and an MLP (quick_gelu in OpenAI's models), a final
// LayerNorm; the pooled feature is the hidden state at the end-of-text token, optionally projected.
// Weights by the transformers names ("text_model.encoder.layers.0.self_attn.q_proj.weight", ...).
#pragma once
#include <stdbool.h>

#include "engine/params.h"
#include "engine/rng.h"
#include "models/nn.h"

typedef struct {
    int64_t vocab_size, width, layers, heads, intermediate, max_positions;
    double eps;
    bool quick_gelu;         // hidden_act "quick_gelu" (OpenAI); false: "gelu" (erf form)
    int64_t eos_token_id;    // 2: the legacy rule (pooled at the largest id), as transformers keeps it
    int64_t projection_dim;  // text_projection (bias-free) to this width; 0: none
} ClipTextConfig;

typedef struct {
    LayerNorm norm1, norm2;
    Linear q, k, v, out, fc1, fc2;
} ClipTextLayer;

typedef struct {
    ClipTextConfig config;
    Tensor *token_embedding, *position_embedding;
    ClipTextLayer *layers;
    LayerNorm final_norm;
    Linear projection;  // weight NULL without projection
} ClipText;

// SD 1.x's text encoder (OpenAI CLIP ViT-L/14): width 768, 12 layers, 12 heads, quick_gelu.
ClipTextConfig clip_text_sd1_config(void);
// Reads a transformers CLIPTextConfig config.json (or the "text_config" of a CLIPConfig). The
// projection is there when "architectures" names CLIPTextModelWithProjection or CLIPModel (or for
// a CLIPConfig). 0, or -1 with one line in error.
int clip_text_config_from_json(const char *json_text, ClipTextConfig *config, char *error, size_t error_size);
// Writes transformers' config.json for the model (CLIPTextModel, or CLIPTextModelWithProjection with a
// projection). 0, or -1 when out (size bytes) is too small.
int clip_text_config_to_json(const ClipTextConfig *config, char *out, size_t size);
// Registers the weights: "<prefix>text_model...." and "<prefix>text_projection.weight".
void clip_text_create(ClipText *net, ParamStore *store, const char *prefix, ClipTextConfig config, Rng *rng);
void clip_text_free(ClipText *net);
// ids [B, T] (i64, T <= max_positions) -> the final hidden states [B, T, width] (after the final
// LayerNorm, what SD conditions on). hidden (optional, layers + 1 entries): the embeddings and each
// layer's output, before the final norm (transformers' hidden_states). pooled (optional): [B, width]
// at the end-of-text token, or [B, projection_dim] when the model has a projection.
Tensor *clip_text_forward(ClipText *net, Tensor *ids, Tensor **hidden, Tensor **pooled);
