"""Writes safetensors files from numpy arrays, without the safetensors package (not in Debian).

Format: 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
[begin, end) byte offsets in the data section, then the data section. The header is padded with
spaces to a multiple of 8 bytes so that tensor data stays aligned.
"""
import json
import struct

import numpy as np

_DTYPE_NAMES = {
    np.dtype("float32"): "F32",
    np.dtype("float64"): "F64",
    np.dtype("float16"): "F16",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
    np.dtype("uint8"): "U8",
}


def save(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (or torch tensor); metadata: dict str -> str."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        array = tensors[name]
        if hasattr(array, "detach"):
            array = array.detach().cpu().numpy()
        array = np.require(array, requirements="C")  # keeps 0-d scalars as shape ()
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _DTYPE_NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)
