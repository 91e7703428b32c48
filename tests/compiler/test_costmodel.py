"""The compiler's instruction cost model: its counts follow the kernels' loops, its fit recovers known
coefficients, and on a small pruned ESCNet built as firmware and run once on QEMU it is within 10 % of the
measured whole-inference instructions; `esc2c emit` prints it, labelled as an estimate."""
import torch

from esc2c.cli import main as cli_main
from esc2c.compiler import costmodel
from esc2c.compress import cup
from esc2c.compress.deploy_graph import compile_float, quantized_onnx
from esc2c.models.registry import build_model
from esc2c.device.runner import run_qemu

IN = (1, 32, 40)


def _pruned(seed=3, ratio=0.8):
    torch.manual_seed(seed)
    m = build_model("small", 6, width=0.5, in_shape=IN).eval()
    return cup.prune_to_ratio(m, ratio, channel_multiple=2).model.eval()


def test_counts_follow_the_shapes():
    g = compile_float(_pruned(), IN)
    est = costmodel.estimate(g)
    assert len(est.layers) == len(g.layer_ops()) and est.instructions > 0
    ops = {op.name: op for op in g.layer_ops()}
    for L in est.layers:
        c = costmodel.op_counts(ops[L.name], g)
        op = ops[L.name]
        if L.kernel == "esc2c_conv_fast_s8":  # steps of 3 pixels x channel pairs x padded taps cover every MAC
            conv_macs = op.attrs["conv"]["macs"] if op.kind == "conv_pool" else op.macs
            assert conv_macs <= 6 * c["fast.dot"] <= 3 * conv_macs
    wider = compile_float(_pruned(ratio=0.4), IN)
    assert costmodel.estimate(wider).instructions > est.instructions
    assert f"{est.instructions:,} instructions = {est.latency_ms:.2f} ms at 216 MHz (estimate" in est.table()


def test_int8_weights_cost_their_widening(tmp_path):
    """The same model with every fast convolution on int8 weights (a flash budget of 0) is estimated dearer by
    exactly the widening's counts x their coefficients: per 2 taps of a channel pair and 3 pixels, 1.5 more
    instructions in the straight run (two steps share an LDRD, each widens with 2 SXTB16), 2 in the chunked
    run that columns longer than DOT_LONG words take."""
    from esc2c.compiler.driver import compile_model
    from esc2c.compiler.ops.conv_fast import DOT_LONG, FAST_CONV, FAST_CONV_W8, padded_taps
    from esc2c.compiler.options import CompileOptions

    onnx_path = quantized_onnx(_pruned(ratio=0.4), IN, tmp_path / "m.onnx")
    wide = compile_model(onnx_path)
    narrow = compile_model(onnx_path, options=CompileOptions(flash_budget=0))
    assert any(op.kernel == FAST_CONV for op in wide.layer_ops())
    assert [op.kernel == FAST_CONV_W8 for op in narrow.layer_ops()] == [op.kernel == FAST_CONV
                                                                       for op in wide.layer_ops()]
    counts = [costmodel.op_counts(op, narrow) for op in narrow.layer_ops()]
    straight, chunked = (sum(c.get(k, 0.0) for c in counts) for k in ("fast8.dot", "fast8.chunk"))
    dots = sum(costmodel.op_counts(op, wide).get("fast.dot", 0.0) for op in wide.layer_ops())
    assert straight + chunked == dots > 0
    assert (costmodel.COEFFS["fast8.dot"], costmodel.COEFFS["fast8.chunk"]) == (0.75, 1.0)
    diff = costmodel.estimate(narrow).instructions - costmodel.estimate(wide).instructions
    assert abs(diff - (0.75 * straight + chunked)) <= len(wide.layer_ops())  # per-layer rounding
    # which run a layer takes follows its column length
    for op, c in zip(narrow.layer_ops(), counts):
        if op.kernel == FAST_CONV_W8:
            _, kh, kw, cin = op.weights.shape
            long = padded_taps(cin, kh, kw) // 2 > DOT_LONG
            assert (c.get("fast8.chunk", 0.0) > 0, c.get("fast8.dot", 0.0) > 0) == (long, not long)
    from esc2c.compiler.ops.convlike import conv_counts
    for cin, long in ((64, False), (72, True)):  # 288 and 324 words per column
        f: dict = {}
        conv_counts(f, FAST_CONV_W8, cin, 10, 3, 3, 7, [5], 1)
        assert ("fast8.chunk" in f, "fast8.dot" in f) == (long, not long)
        assert f.get("fast8.chunk", f.get("fast8.dot")) == f["fast.dot"]


def test_fit_recovers_known_coefficients():
    g = compile_float(_pruned(), IN)
    counts = [costmodel.op_counts(op, g) for op in g.layer_ops()]
    g2 = compile_float(_pruned(seed=5, ratio=0.5), IN)
    counts += [costmodel.op_counts(op, g2) for op in g2.layer_ops()]
    truth = {k: 0.0 for k in costmodel.COEFFS}
    truth.update({"layer": 150.0, "fast.dot": 4.0, "fast.out": 9.0, "pool.out": 40.0, "avg.win": 6.0, "fc.mac": 2.0})
    samples = [(c, int(round(sum(truth[k] * v for k, v in c.items())))) for c in counts]
    got = costmodel.fit(samples)
    for c, m in samples:
        assert abs(sum(got[k] * v for k, v in c.items()) - m) <= 0.01 * m


def test_estimate_within_10_percent_of_qemu(tmp_path, capsys):
    """One firmware build and one QEMU run of a small pruned model (not one the coefficients were fitted on)."""
    onnx_path = quantized_onnx(_pruned(), IN, tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert cli_main(["emit", str(onnx_path), "-o", str(out), "--vectors", "1"]) == 0
    text = capsys.readouterr().out
    assert "ESTIMATE" in text and "estimated latency:" in text and "ms at 216 MHz (estimate: cost model" in text
    from esc2c.compiler.driver import compile_model

    est = costmodel.estimate(compile_model(onnx_path))
    prof = run_qemu(out, vectors=1, profile=True, echo=lambda s: None).profile
    measured = prof.total_instructions
    assert [L.name for L in est.layers] == [L.name for L in prof.layers]
    assert abs(est.instructions - measured) <= 0.10 * measured, est.table([L.instructions for L in prof.layers])
    assert f"{est.instructions:,}" in text
