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
    re-serialized with the flatbuffers object API of the `tflite` schema module."""
    import flatbuffers
    import tflite
    from tflite.Buffer import BufferT
    from tflite.Metadata import MetadataT
    from tflite.Model import ModelT

    model = ModelT.InitFromObj(tflite.Model.GetRootAsModel(buf, 0))
    model.metadata = [md for md in (model.metadata or []) if md.name not in (KEY, KEY.encode())]
    b = BufferT()
    b.data = list(json.dumps(meta, sort_keys=True).encode())
    model.buffers.append(b)
    md = MetadataT()
    md.name, md.buffer = KEY, len(model.buffers) - 1
    model.metadata.append(md)
    builder = flatbuffers.Builder(len(buf) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


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
