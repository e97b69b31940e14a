"""Golden tests of models/clip_text against Hugging Face transformers' CLIP text models.

Setup: the venv of gen_model_goldens.py with transformers pinned to a release that runs on Debian's
torch 1.13:

    /work/venv-ref/bin/pip install "transformers==4.40.2" "tokenizers==0.19.1" "huggingface-hub==0.23.4"

Then, from the repository root:

    /work/venv-ref/bin/python tests/ref/gen_clip_text_goldens.py
        writes tests/golden/clip_text.safetensors (committed; tests/test_clip_text.c reads it).

Cases (tiny configurations, fixed seeds, f32, batch 2, 11 tokens):
  projected  CLIPTextModelWithProjection: quick_gelu, eos_token_id 98 (pooled at the first 98),
             projection to 24; rows padded with the end token as SD's tokenizer does
  legacy     CLIPTextModel: gelu, the legacy eos_token_id 2 (pooled at the largest id), no projection

Layout for each case <c> (metadata "<c>" = the config as JSON, which the C test parses with
clip_text_config_from_json):
  <c>/init/<name>       the state dict (LayerNorm affines and biases perturbed away from 1/0)
  <c>/ids, <c>/weights_last, <c>/weights_pooled
  <c>/last              last_hidden_state (after the final LayerNorm)
  <c>/hidden<i>         hidden_states[i]: the embeddings (i = 0) and each layer's output
  <c>/pooled            pooler_output, or text_embeds with the projection
  <c>/grad/<name>       d (sum(last * weights_last) + sum(pooled * weights_pooled)) / d parameter
"""
import json
import os
import sys

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_min  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(__file__), "..", "golden", "clip_text.safetensors")

COMMON = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=16, bos_token_id=97, pad_token_id=1)
CASES = {
    "projected": (CLIPTextModelWithProjection, dict(COMMON, hidden_act="quick_gelu", eos_token_id=98, projection_dim=24),
                  [[97, 5, 17, 33, 98, 98, 98, 98, 98, 98, 98], [97, 60, 61, 62, 63, 64, 65, 66, 12, 3, 98]]),
    "legacy": (CLIPTextModel, dict(COMMON, hidden_act="gelu", eos_token_id=2, layer_norm_eps=1e-6),
               [[97, 5, 17, 33, 98, 0, 0, 0, 0, 0, 0], [3, 60, 61, 62, 63, 64, 65, 66, 12, 96, 1]]),
}


def main():
    tensors, metadata = {}, {}
    for index, (name, (cls, kwargs, ids)) in enumerate(CASES.items()):
        torch.manual_seed(200 + index)
        config = CLIPTextConfig(**kwargs)
        config.architectures = [cls.__name__]  # as save_pretrained writes it: says whether there is a projection
        model = cls(config).float()
        with torch.no_grad():
            for key, p in model.named_parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.eval()  # no dropout
        ids = torch.tensor(ids)
        out = model(input_ids=ids, output_hidden_states=True)
        pooled = out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
        weights_last = torch.randn_like(out.last_hidden_state)
        weights_pooled = torch.randn_like(pooled)
        ((out.last_hidden_state * weights_last).sum() + (pooled * weights_pooled).sum()).backward()
        metadata[name] = json.dumps(config.to_dict())
        for key, value in model.state_dict().items():
            if key.endswith("position_ids"):
                continue  # a buffer of arange(max_positions), not a weight
            tensors[f"{name}/init/{key}"] = value.detach().clone()
        for key, p in model.named_parameters():
            tensors[f"{name}/grad/{key}"] = p.grad.detach().clone()
        tensors[f"{name}/ids"] = ids
        tensors[f"{name}/weights_last"] = weights_last
        tensors[f"{name}/weights_pooled"] = weights_pooled
        tensors[f"{name}/last"] = out.last_hidden_state.detach()
        tensors[f"{name}/pooled"] = pooled.detach()
        for i, h in enumerate(out.hidden_states):
            tensors[f"{name}/hidden{i}"] = h.detach()
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters")
    safetensors_min.save(OUT_PATH, tensors, metadata)
    print("wrote", os.path.normpath(OUT_PATH))


if __name__ == "__main__":
    main()
