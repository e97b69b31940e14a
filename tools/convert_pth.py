#!/usr/bin/python3
"""Converts a PyTorch state dict (.pth / .pt / .bin) to safetensors for Tailor's model loaders.

Optional: only needed for checkpoints that are not distributed as safetensors already. Needs
PyTorch (Debian: apt-get install python3-torch; run it with /usr/bin/python3) and numpy.

    /usr/bin/python3 tools/convert_pth.py resnet50-11ad3fa6.pth resnet50.safetensors
    /usr/bin/python3 tools/convert_pth.py checkpoint.pth.tar model.safetensors --strip-prefix module.
    /usr/bin/python3 tools/convert_pth.py deit_small_patch16_224-cd65a155.pth deit-small.safetensors
    /usr/bin/python3 tools/convert_pth.py tllib_checkpoint.pth out.safetensors --strip-prefix backbone.
    /usr/bin/python3 tools/convert_pth.py model.pth --list          # names, shapes and dtypes only

What it accepts: a plain state dict (name -> tensor), or a training checkpoint dict holding one
under "state_dict", "model", "model_state_dict", "ema_state_dict" or "net" (the first present; pick
another with --key, e.g. --key ema_state_dict). Names are kept as they are — Tailor's models use
the reference implementations' names (torchvision, timm, FixMatch-pytorch) — except for the
prefixes removed with --strip-prefix (repeatable; each is removed from every name that starts with
it: "module." from DataParallel/DDP checkpoints, "backbone." from tllib). Entries that are not
tensors (a step counter, an optimizer state nested under the key) are skipped and listed.

Values keep their dtype (F32, F16, BF16, F64, I64, I32, U8; bool becomes U8) unless --dtype f32
converts every floating-point tensor; Tailor converts F16/BF16/F64 to f32 when loading anyway, and
loads integer buffers such as BatchNorm's num_batches_tracked. Metadata: "format": "pt" and
"tailor.source": the input file name.

Loading uses torch.load(weights_only=True), which refuses arbitrary pickled objects; a checkpoint
that pickles other classes (argparse.Namespace in old training scripts, numpy scalars) needs
--unsafe-pickle — only for files you trust, since unpickling can run code.

Writing follows the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
little-endian header length, a JSON header (padded with spaces to a multiple of 8) and the data,
larger elements first and then by name, so that every tensor is aligned to its element size. The file is written to "<out>.tmp" and renamed when complete.
"""
import argparse
import json
import os
import struct
import sys

CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "ema_state_dict", "net")


def fail(message):
    print(f"convert_pth: {message}", file=sys.stderr)
    sys.exit(2)


def load(path, unsafe):
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except Exception as e:  # an unpickling refusal, a corrupt zip, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if unsafe else " (if the file pickles other objects and you trust it: --unsafe-pickle)"
        fail(f"{path}: cannot load: {first}{hint}")


def pick_state_dict(obj, key, path):
    import torch
    if not isinstance(obj, dict):
        fail(f"{path}: holds a {type(obj).__name__}, not a state dict (save model.state_dict(), not the model)")
    if key is not None:
        if key not in obj:
            fail(f"{path}: no key '{key}' (keys: {', '.join(map(str, list(obj)[:20]))})")
        obj = obj[key]
    elif not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in CHECKPOINT_KEYS:
            if isinstance(obj.get(k), dict):
                print(f"using the state dict under '{k}'")
                obj = obj[k]
                break
        else:
            fail(f"{path}: no tensors at the top level and none of the keys {', '.join(CHECKPOINT_KEYS)} "
                 f"(keys: {', '.join(map(str, list(obj)[:20]))}); name one with --key")
    if not isinstance(obj, dict):
        fail(f"{path}: the selected entry is a {type(obj).__name__}, not a state dict")
    return obj


def to_bytes(tensor, dtype_name):
    """Little-endian bytes of a contiguous CPU tensor and the safetensors dtype."""
    import torch
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
    if dtype_name == "f32" and t.is_floating_point():
        t = t.to(torch.float32)
    if t.dtype not in names:
        return None, str(t.dtype)
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        data = t.view(torch.int16).numpy().astype("<i2").tobytes()
    else:
        array = t.numpy()
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return data, names[t.dtype]


def main():
    parser = argparse.ArgumentParser(description="PyTorch state dict -> safetensors",
                                     epilog="See the top of this file for details.")
    parser.add_argument("input", help=".pth/.pt/.bin file")
    parser.add_argument("output", nargs="?", help=".safetensors file to write")
    parser.add_argument("--key", help="the checkpoint entry holding the state dict (default: the first of "
                        + ", ".join(CHECKPOINT_KEYS) + " when the top level has no tensors)")
    parser.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX",
                        help="remove PREFIX from names that start with it (repeatable), e.g. module.")
    parser.add_argument("--dtype", choices=("keep", "f32"), default="keep",
                        help="keep each tensor's dtype (default) or convert floating-point tensors to f32")
    parser.add_argument("--list", action="store_true", help="print names, shapes and dtypes; write nothing")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="allow arbitrary pickled objects (torch.load weights_only=False); trusted files only")
    args = parser.parse_args()
    if not args.list and not args.output:
        fail("give an output file (or --list)")

    import torch
    state = pick_state_dict(load(args.input, args.unsafe_pickle), args.key, args.input)
    tensors, skipped = {}, []
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            skipped.append(f"{name} ({type(value).__name__})")
            continue
        new = str(name)
        for prefix in args.strip_prefix:
            if new.startswith(prefix):
                new = new[len(prefix):]
        if new in tensors:
            fail(f"two tensors named '{new}' after stripping prefixes")
        tensors[new] = value
    if not tensors:
        fail(f"{args.input}: no tensors in the state dict")
    if skipped:
        print(f"skipped {len(skipped)} entries that are not tensors: {', '.join(skipped[:10])}"
              f"{' ...' if len(skipped) > 10 else ''}")
    if args.list:
        for name in sorted(tensors):
            t = tensors[name]
            print(f"{name}\t{list(t.shape)}\t{str(t.dtype).replace('torch.', '')}")
        print(f"{len(tensors)} tensors, {sum(t.numel() for t in tensors.values())} elements")
        return

    header, chunks, offset = {}, [], 0
    converted = {}
    for name in tensors:
        converted[name] = to_bytes(tensors[name], args.dtype)
        if converted[name][0] is None:
            fail(f"tensor '{name}': dtype {converted[name][1]} has no safetensors equivalent that Tailor reads")
    sizes = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "U8": 1}
    # Larger elements first, then by name (as the reference writer): with the padded header every
    # tensor's data stays aligned to its element size.
    for name in sorted(tensors, key=lambda n: (-sizes[converted[n][1]], n)):
        data, dtype = converted[name]
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt", "tailor.source": os.path.basename(args.input)}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    temporary = args.output + ".tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(struct.pack("<Q", len(encoded)))
            f.write(encoded)
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, args.output)
    except OSError as e:
        fail(f"{args.output}: {e.strerror}")
    print(f"{args.output}: {len(tensors)} tensors, {offset} bytes of data")


if __name__ == "__main__":
    main()
