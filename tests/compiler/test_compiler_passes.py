"""Passes: layout, integer parameters, kernel selection (scratch sizes), static memory plan."""
import numpy as np
import pytest

from _compiler_models import build
from esc2c.compiler.importer import load_ir
from esc2c.compiler.ops.conv import conv_wrapper_buffer
from esc2c.compiler.ops.depthwise_conv import dw_wrapper_buffer
from esc2c.compiler.passes import run_passes
from esc2c.quant import intparams


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("passes")
    return {"vgg": build("vgg", tmp), "resnet": build("resnet", tmp), "vgg_pt": build("vgg", tmp, per_channel=False)}


def _live(g):
    """Independent liveness: (first, last) op index of each tensor's bytes (views share their source)."""
    root = {n: n for n in g.tensors}
    for op in g.ops:
        if op.kind == "reshape":
            root[op.output] = root[op.inputs[0]]
    span = {g.inputs[0]: [-1, -1]}
    for i, op in enumerate(g.ops):
        for t in op.outputs:
            span.setdefault(root[t], [i, i])
        for t in op.inputs:
            span[root[t]][1] = max(span[root[t]][1], i)
    span[root[g.outputs[0]]][1] = len(g.ops)
    return root, span


@pytest.mark.parametrize("kind", ["vgg", "resnet"])
def test_memory_plan_is_valid_and_tight(paths, kind):
    g = run_passes(load_ir(paths[kind]))
    root, span = _live(g)
    items = [(r, g.tensors[r].offset, g.tensors[r].size, *span[r]) for r in span]
    for i, op in enumerate(g.ops):
        if op.scratch:
            items.append((f"scratch{i}", op.attrs["scratch_offset"], op.scratch, i, i))
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            na, oa, sa, s0a, s1a = items[a]
            nb, ob, sb, s0b, s1b = items[b]
            same_buffer = any(op.attrs.get("in_place") in (na, nb) and op.output in (na, nb) for op in g.ops)
            ov = next((op for op in g.ops if op.output in (na, nb) and op.attrs.get("overlap", ("",))[0] in (na, nb)),
                      None)
            if ov is not None:  # output may start up to `gap` bytes before its input, over consumed bytes
                gap = ov.attrs["overlap"][1]
                o, i = (oa, ob) if na == ov.output else (ob, oa)
                i_size = sb if na == ov.output else sa
                assert o <= i - min(gap, g.tensors[ov.output].size) or o >= i + i_size
            elif s0a <= s1b and s0b <= s1a and not same_buffer:
                assert oa + sa <= ob or ob + sb <= oa, f"{na} and {nb} overlap while both live"
    for r, off, size, *_ in items:
        assert 0 <= off and off + size <= g.arena_size
    st = g.plan_stats
    assert st["peak_bytes"] <= g.arena_size
    assert st["peak_bytes"] < 0.6 * st["sum_of_tensors_bytes"]
    assert st["peak_bytes"] < st["lower_bound_bytes"]  # output-over-input overlap beats the disjoint bound
    assert st["overlapped_ops"] >= 1


def _raster_kernel_in_shared_memory(mem, in_off, out_off, shape_in, shape_out, kernel, stride, pads, reduce):
    """Python model of a raster-order pool reading and writing one shared byte array (writes visible)."""
    h, w, c = shape_in
    oh, ow, _ = shape_out
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * stride[0] - pads[0], ox * stride[1] - pads[1]
            acc = None
            for ky in range(max(0, -y0), min(kernel[0], h - y0)):
                for kx in range(max(0, -x0), min(kernel[1], w - x0)):
                    p = in_off + ((y0 + ky) * w + x0 + kx) * c
                    v = mem[p:p + c].copy()
                    acc = v if acc is None else reduce(acc, v)
                    mem[out_off + (oy * ow + ox) * c: out_off + (oy * ow + ox + 1) * c] = acc  # partial writes


@pytest.mark.parametrize("kernel,stride,pads,hw", [((2, 2), (2, 2), (0, 0), (9, 7)), ((3, 3), (1, 1), (1, 1), (6, 5)),
                                                   ((3, 2), (2, 1), (1, 0), (7, 6))])
def test_overlap_gap_is_safe_and_tight_for_raster_kernels(kernel, stride, pads, hw):
    from esc2c.compiler.ir import Graph, Op, Tensor
    from esc2c.compiler.passes.memplan import overlap_gap

    c = 3
    h, w = hw
    oh = (h + 2 * pads[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * pads[1] - kernel[1]) // stride[1] + 1
    g = Graph({"x": Tensor("x", (1, h, w, c), 1.0, 0), "y": Tensor("y", (1, oh, ow, c), 1.0, 0)},
              [Op("p", "max_pool", ["x"], ["y"], attrs={"kernel": kernel, "stride": stride, "pads": pads + pads})],
              ["x"], ["y"], layout="NHWC")
    gap = overlap_gap(g.ops[0], g)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, h * w * c).astype(np.int8)
    size = h * w * c + oh * ow * c + 64
    ref = np.zeros(size, np.int8)
    ref[:x.size] = x
    def mix(a, v):  # order-sensitive and not idempotent: any read of an overwritten byte shows
        return (a.astype(np.int16) * 3 + v + 1).astype(np.int8)

    _raster_kernel_in_shared_memory(ref, 0, x.size, (h, w, c), (oh, ow, c), kernel, stride, pads, mix)
    want = ref[x.size:x.size + oh * ow * c].copy()
    base = abs(gap) + 4 * c + 8

    def safe(shift):  # output starts `shift` bytes before the input, in one shared memory
        mem = np.zeros(size + 2 * base, np.int8)
        mem[base:base + x.size] = x
        _raster_kernel_in_shared_memory(mem, base, base - shift, (h, w, c), (oh, ow, c), kernel, stride, pads, mix)
        return np.array_equal(mem[base - shift: base - shift + oh * ow * c], want)

    assert safe(gap)  # the planned placement computes the same as separate buffers
    smallest = min(sh for sh in range(gap - 3 * c, gap + 1) if all(safe(t) for t in range(sh, gap + 1)))
    assert gap - smallest <= c  # and the rule is within one pixel of the closest safe placement
    assert not safe(smallest - 1)


def test_residual_adds_run_in_place(paths):
    g = run_passes(load_ir(paths["resnet"]))
    adds = [op for op in g.ops if op.kind == "add"]
    assert len(adds) == 3
    for op in adds:
        assert op.attrs.get("in_place") in op.inputs
        assert g.tensors[op.output].offset == g.tensors[op.attrs["in_place"]].offset


def test_integer_params_come_from_intparams(paths):
    g = run_passes(load_ir(paths["vgg"]))
    conv = g.ops[0]
    m, s = intparams.conv_requant(g.tensors[conv.inputs[0]].scale, conv.weight_scales, g.tensors[conv.output].scale)
    assert np.array_equal(conv.multiplier, m) and np.array_equal(conv.shift, s)
    gap = [op for op in g.ops if op.kind == "avg_pool"][-1]
    assert gap.kernel == "esc2c_avgpool_rescale_s8"  # ORT gives the global average pool its own scale
    x, y = g.tensors[gap.inputs[0]], g.tensors[gap.output]
    mt, stt = intparams.avgpool_rescale_table(x.scale, y.scale, int(np.prod(gap.attrs["kernel"])))
    assert np.array_equal(gap.avg_mult, mt) and np.array_equal(gap.avg_shift, stt)


def test_kernel_selection_and_scratch_sizes(paths):
    g = run_passes(load_ir(paths["vgg"]), kernels="cmsis")  # CMSIS-NN for every conv (tests/compiler/test_conv_fast.py: fast)
    by = {op.name: op for op in g.ops}
    first = g.ops[0]  # 3x3 conv, 1 input channel: im2col of 2 int16 columns of 9 taps, padded to 12 (upstream)
    assert first.kernel == "arm_convolve_wrapper_s8" and first.scratch == 2 * 12 * 2
    dw = next(op for op in g.ops if op.kind == "depthwise_conv")
    assert dw.kernel == "arm_depthwise_conv_wrapper_s8" and dw.scratch == 16 * 3 * 3 * 2  # DSP path size
    pw = next(op for op in g.ops if op.kind == "conv" and op.attrs["kernel"] == (1, 1))
    assert pw.scratch == 0  # arm_convolve_1x1_s8_fast
    assert g.ops[-1].kernel == "arm_convolve_wrapper_s8"  # per-channel FC runs as a 1x1 conv
    gpt = run_passes(load_ir(paths["vgg_pt"]), kernels="cmsis")
    assert gpt.ops[-1].kernel == "arm_fully_connected_s8" and gpt.ops[-1].multiplier.size == 5
    assert conv_wrapper_buffer((1, 1, 16, 8), (1, 1, 16, 4), (1, 3), (1, 1), (0, 1, 0, 1)) == {"dsp": 96, "host": 96}
    assert dw_wrapper_buffer((1, 5, 5, 8), (1, 5, 5, 16), (3, 3)) == {"dsp": 0, "host": 0}
    assert len(by) == len(g.ops)


def test_layout_nhwc_permutes_fc_columns_after_spatial_flatten(paths):
    g0 = load_ir(paths["resnet"])
    w_onnx = g0.ops[-1].weights.copy()
    g = run_passes(g0)
    fc = g.ops[-1]
    c, h, w = 16, 6, 3
    assert np.array_equal(fc.weights, w_onnx.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(w_onnx.shape[0], -1))
    assert g.tensors[g.ops[0].output].shape == (1, 21, 11, 8)
    assert g.ops[0].weights.shape == (8, 3, 3, 1)  # OHWI
