"""Checks LiteRT int8 arithmetic under qemu: writes a one-op int8 FULLY_CONNECTED .tflite by hand (no TensorFlow),
runs it with ai_edge_litert and compares with numpy. Usage: [TINY_FC_SHAPE=batch,in,out] python tiny_int8_tflite.py [OUT.tflite]"""

import os
import sys

import flatbuffers
import numpy as np

BATCH, IN, OUT = (int(v) for v in os.environ.get("TINY_FC_SHAPE", "4,256,64").split(","))
S_IN, ZP_IN, S_W, ZP_OUT = 0.05, 3, 0.02, -5
S_OUT = S_IN * S_W * 130 * IN**0.5  # outputs spread over about +-40 LSB, few saturate
INT8, INT32, FULLY_CONNECTED, FC_OPTIONS = 9, 2, 9, 8


def build(weights: np.ndarray, bias: np.ndarray) -> bytes:
    b = flatbuffers.Builder(4096)
    b.ForceDefaults(True)

    def vec(values, prepend, size=4):
        b.StartVector(size, len(values), size)
        for v in reversed(values):
            prepend(v)
        return b.EndVector()

    def ints(values):
        return vec(values, b.PrependInt32)

    def offsets(values):
        return vec(values, b.PrependUOffsetTRelative)

    def table(fields):  # [(slot, kind, value)]: schema.fbs field index, scalar kind or "off" for a reference
        b.StartObject(1 + max((slot for slot, _, _ in fields), default=-1))
        for slot, kind, value in fields:
            {"off": b.PrependUOffsetTRelativeSlot, "u32": b.PrependUint32Slot, "i32": b.PrependInt32Slot,
             "u8": b.PrependUint8Slot, "i8": b.PrependInt8Slot}[kind](slot, value, 0)
        return b.EndObject()

    def data(raw: bytes):  # Buffer.data is force_align 16
        b.StartVector(1, len(raw), 16)
        b.head -= len(raw)
        b.Bytes[b.head:b.head + len(raw)] = raw
        return b.EndVector()

    def quant(scale, zp):  # QuantizationParameters.scale (2), .zero_point (3)
        return table([(2, "off", vec([scale], b.PrependFloat32)), (3, "off", vec([zp], b.PrependInt64, 8))])

    buffers = [table([])] + [table([(0, "off", data(d))]) for d in (weights.tobytes(), bias.tobytes())]
    buffers += [table([]), table([])]
    specs = [("input", [BATCH, IN], INT8, 3, quant(S_IN, ZP_IN)), ("weights", [OUT, IN], INT8, 1, quant(S_W, 0)),
             ("bias", [OUT], INT32, 2, quant(S_IN * S_W, 0)), ("output", [BATCH, OUT], INT8, 4, quant(S_OUT, ZP_OUT))]
    tensors = []
    for name, shape, dtype, buf, q in specs:
        n = b.CreateString(name)
        shp = ints(shape)
        tensors.append(table([(0, "off", shp), (1, "u8", dtype), (2, "u32", buf), (3, "off", n), (4, "off", q)]))
    options = table([(0, "i8", 0)])
    op = table([(0, "u32", 0), (1, "off", ints([0, 1, 2])), (2, "off", ints([3])),
                (3, "u8", FC_OPTIONS), (4, "off", options)])
    tvec = offsets(tensors)
    subgraph = table([(0, "off", tvec), (1, "off", ints([0])),
                      (2, "off", ints([3])), (3, "off", offsets([op]))])
    opcode = table([(0, "i8", FULLY_CONNECTED), (2, "i32", 1), (3, "i32", FULLY_CONNECTED)])
    model = table([(0, "u32", 3), (1, "off", offsets([opcode])),
                   (2, "off", offsets([subgraph])),
                   (4, "off", offsets(buffers))])
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (OUT, IN), dtype=np.int8)
    bias = rng.integers(-2000, 2000, OUT, dtype=np.int32)
    x = rng.integers(-128, 128, (BATCH, IN), dtype=np.int8)
    model = build(weights, bias)
    if len(sys.argv) > 1:
        open(sys.argv[1], "wb").write(model)
    acc = (x.astype(np.int64) - ZP_IN) @ weights.T.astype(np.int64) + bias
    want = np.clip(np.round(acc * (S_IN * S_W / S_OUT)) + ZP_OUT, -128, 127).astype(np.int8)
    it = Interpreter(model_content=model)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    diff = int(np.abs(got.astype(int) - want.astype(int)).max())
    print(f"litert int8 FC {BATCH}x{IN}->{OUT}: max |litert - numpy| = {diff} LSB, "
          f"{np.mean(np.abs(want.astype(int)) >= 127):.0%} saturated")
    sys.exit(0 if diff <= 1 else 1)


if __name__ == "__main__":
    main()
