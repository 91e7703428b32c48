"""Passes: layout, integer parameters, kernel selection (scratch sizes), static memory plan."""
import numpy as np
import pytest

from _compiler_models import build
from esc2c.compiler.frontend import load_ir
from esc2c.compiler.passes import run_passes
from esc2c.compiler.passes.kernel_select import conv_wrapper_buffer, dw_wrapper_buffer
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
            if s0a <= s1b and s0b <= s1a and not same_buffer:
                assert oa + sa <= ob or ob + sb <= oa, f"{na} and {nb} overlap while both live"
    for r, off, size, *_ in items:
        assert 0 <= off and off + size <= g.arena_size
    st = g.plan_stats
    assert st["lower_bound_bytes"] <= st["peak_bytes"] <= g.arena_size
    assert st["peak_bytes"] < 0.7 * st["sum_of_tensors_bytes"]
    assert st["peak_bytes"] <= 1.05 * st["lower_bound_bytes"]


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
    g = run_passes(load_ir(paths["vgg"]))
    by = {op.name: op for op in g.ops}
    first = g.ops[0]  # 3x3 conv, 1 input channel: im2col of 2 int16 columns of 9 taps, padded to 12 (upstream)
    assert first.kernel == "arm_convolve_wrapper_s8" and first.scratch == 2 * 12 * 2
    dw = next(op for op in g.ops if op.kind == "depthwise_conv")
    assert dw.kernel == "arm_depthwise_conv_wrapper_s8" and dw.scratch == 16 * 3 * 3 * 2  # DSP path size
    pw = next(op for op in g.ops if op.kind == "conv" and op.attrs["kernel"] == (1, 1))
    assert pw.scratch == 0  # arm_convolve_1x1_s8_fast
    assert g.ops[-1].kernel == "arm_convolve_wrapper_s8"  # per-channel FC runs as a 1x1 conv
    gpt = run_passes(load_ir(paths["vgg_pt"]))
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
