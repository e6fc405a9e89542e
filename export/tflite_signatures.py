"""Several single-subgraph int8 .tflite files -> one multi-signature file (signatures exit0, exit1, ...).

`tinyexit import` uses it to give the agent (LiteRT) the same multi-signature file
`tinyexit export` writes.  The per-segment files themselves are kept byte for
byte (TFLite Micro and the C generator read those); this file is re-serialized
through the schema's object API: subgraphs are appended, buffers and operator
codes renumbered, metadata dropped, and one SignatureDef per segment names its
I/O x / logits / features.
"""
from __future__ import annotations

from tinyexit.export.tflite_graph import _schema


def merge_segments(blobs: list[bytes], roles: list[dict]) -> bytes:
    """`roles[k]`: {"x": tensor index, "logits": index, "features": index or None} of file k's subgraph 0."""
    import flatbuffers

    fb = _schema()
    out = fb.ModelT()
    out.version, out.description = 3, "tinyexit import: one signature per exit"
    out.buffers, out.operatorCodes, out.subgraphs, out.signatureDefs = [fb.BufferT()], [], [], []
    for k, (blob, role) in enumerate(zip(blobs, roles)):
        m = fb.ModelT.InitFromPackedBuf(bytearray(blob), 0)
        buf_map = {0: 0}
        for i, b in enumerate(m.buffers or []):
            if i:
                buf_map[i] = len(out.buffers)
                out.buffers.append(b)
        code_map = {i: _code_index(out.operatorCodes, c) for i, c in enumerate(m.operatorCodes or [])}
        sg = m.subgraphs[0]
        for t in sg.tensors or []:
            t.buffer = buf_map.get(t.buffer, 0)
        for op in sg.operators or []:
            op.opcodeIndex = code_map[op.opcodeIndex]
        out.subgraphs.append(sg)
        sig = fb.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = f"exit{k}", k
        sig.inputs = [_tensor_map(fb, "x", role["x"])]
        sig.outputs = [_tensor_map(fb, n, role[n]) for n in ("logits", "features") if role.get(n) is not None]
        out.signatureDefs.append(sig)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(out.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _code_index(codes: list, code) -> int:
    key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
    for i, c in enumerate(codes):
        if (c.builtinCode, c.deprecatedBuiltinCode, c.customCode, c.version) == key:
            return i
    codes.append(code)
    return len(codes) - 1


def _tensor_map(fb, name: str, index: int):
    tm = fb.TensorMapT()
    tm.name, tm.tensorIndex = name, int(index)
    return tm
