"""cloudcover's metadata inside the model files: task, class names, input/output quantization.

`cloudcover export` embeds it (ONNX: `metadata_props` key "cloudcover"; TFLite: a model metadata buffer
named "cloudcover"), each a JSON object {"task", "class_names", "input", "output"}, so that a model file
compiles and benches on its own, without quant.json beside it. `read_embedded` returns {} when absent
(a model from elsewhere).
"""

from __future__ import annotations

import json
from pathlib import Path

KEY = "cloudcover"


def onnx_embed(path: str | Path, meta: dict) -> None:
    """Add (or replace) the "cloudcover" metadata_props entry of an ONNX file in place."""
    import onnx

    m = onnx.load(str(path))
    props = [p for p in m.metadata_props if p.key != KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(props)
    entry = m.metadata_props.add()
    entry.key, entry.value = KEY, json.dumps(meta, sort_keys=True)
    onnx.save(m, str(path))


def tflite_embed(buf: bytes, meta: dict) -> bytes:
    """The TFLite flatbuffer `buf` with a "cloudcover" metadata buffer (the schema's Model.metadata list),
    re-serialized with ai-edge-litert's own flatbuffer tools (its schema is the converter's)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(buf))
    model.metadata = [md for md in (model.metadata or []) if md.name not in (KEY, KEY.encode())]
    b = schema.BufferT()
    b.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    model.buffers.append(b)
    md = schema.MetadataT()
    md.name, md.buffer = KEY, len(model.buffers) - 1
    model.metadata.append(md)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_embedded(path: str | Path) -> dict:
    """The embedded cloudcover metadata of a .onnx or .tflite file, or {}."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".onnx":
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            for p in m.metadata_props:
                if p.key == KEY:
                    return json.loads(p.value)
        elif path.suffix.lower() == ".tflite":
            import tflite

            buf = path.read_bytes()
            m = tflite.Model.GetRootAsModel(buf, 0)
            for i in range(m.MetadataLength()):
                md = m.Metadata(i)
                if (md.Name() or b"").decode() == KEY:
                    data = m.Buffers(md.Buffer()).DataAsNumpy()
                    return json.loads(bytes(data).decode())
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
    return {}
