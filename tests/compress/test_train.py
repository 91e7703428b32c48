import json

import numpy as np
import pytest
import torch

from esc2c.compress.stages import Stage, StageResult, StageRunner, load_model, save_model
from esc2c.compress.train import TrainConfig, evaluate, train
from esc2c.errors import Esc2cError
from esc2c.models.registry import build_model

from _bands import IN, Bands




def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("small", 4, width=0.5, in_shape=IN)


CFG = dict(batch_size=32, progress=False, seed=1)


def test_train_learns_and_keeps_best():
    tr, va = Bands(128, 0), Bands(64, 1)
    m = _model()
    before = evaluate(m, va)["acc"]
    res = train(m, tr, va, "ce_aux", cfg=TrainConfig(epochs=3, **{**CFG, "batch_size": 16}))
    assert res.best_val_acc >= 0.8 and res.best_val_acc > before + 0.3
    assert res.best_val_acc == max(h["val_acc"] for h in res.history)
    assert evaluate(res.model, va)["acc"] == pytest.approx(res.best_val_acc)   # best state is loaded


def test_select_last_keeps_the_final_epoch():
    """select="last": the model after the final epoch, whatever the selection set says; the same trajectory
    as select="best" (selection never changes training)."""
    tr, va = Bands(128, 0), Bands(64, 1)
    states = []

    def grab(epoch, row, model=None):
        states.append({k: v.clone() for k, v in m_last.state_dict().items()})
    cfg = {**CFG, "batch_size": 16}
    m_last = _model()
    last = train(m_last, tr, va, "ce_aux", cfg=TrainConfig(epochs=4, select="last", schedule="cosine",
                                                          warmup_epochs=1.0, **cfg), on_epoch_end=grab)
    assert last.best_epoch == 4 and last.best_val_acc == last.history[-1]["val_acc"]
    assert all(torch.equal(v, states[-1][k]) for k, v in last.model.state_dict().items())
    assert evaluate(last.model, va)["acc"] == pytest.approx(last.history[-1]["val_acc"])
    best = train(_model(), tr, va, "ce_aux", cfg=TrainConfig(epochs=4, schedule="cosine", warmup_epochs=1.0, **cfg))
    assert [h["val_acc"] for h in best.history] == [h["val_acc"] for h in last.history]
    k = best.best_epoch - 1
    assert all(torch.equal(v, states[k][kk]) for kk, v in best.model.state_dict().items())
    with pytest.raises(Esc2cError, match="epoch selection must be one of best, last"):
        train(_model(), tr, va, "ce", cfg=TrainConfig(epochs=1, select="middle", **CFG))


def test_deterministic_on_cpu():
    tr = Bands(64, 0)
    a = train(_model(), tr, None, "ce", cfg=TrainConfig(epochs=2, **CFG)).model.state_dict()
    b = train(_model(), tr, None, "ce", cfg=TrainConfig(epochs=2, **CFG)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


class Kill(Exception):
    pass


def test_resume_continues_at_next_epoch(tmp_path):
    tr, va = Bands(64, 0), Bands(32, 1)
    cfg = TrainConfig(epochs=3, **CFG)
    ref = train(_model(), tr, va, "ce_aux", cfg=cfg)
    ck = tmp_path / "last.pt"

    def kill_after_1(epoch, row):
        if epoch == 1:
            raise Kill
    with pytest.raises(Kill):
        train(_model(), tr, va, "ce_aux", cfg=cfg, checkpoint=ck, on_epoch_end=kill_after_1)
    assert torch.load(ck, weights_only=False)["epoch"] == 1
    seen = []
    res = train(_model(seed=9), tr, va, "ce_aux", cfg=cfg, checkpoint=ck,
                on_epoch_end=lambda e, row: seen.append(e))
    assert seen == [2, 3]                                    # epoch 1 is not redone
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    a, b = ref.model.state_dict(), res.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)           # same weights as the uninterrupted run


def test_weight_average_is_the_warmed_up_ema_of_the_trained_weights(tmp_path):
    """ema_decay: the model scored each epoch and returned is the moving average of the weights after every
    step (first step copied, then keep min(decay, (1 + n) / (10 + n)) of the average), BatchNorm statistics
    averaged too; training itself is unchanged. One step per epoch, so the epoch ends give every step."""
    from esc2c.compress.averaging import ema_factor
    tr, va = Bands(64, 0), Bands(32, 1)
    cfg = {**CFG, "batch_size": 64}
    raw = []
    m = _model()
    res = train(m, tr, va, "ce_aux", cfg=TrainConfig(epochs=6, select="last", ema_decay=0.3, **cfg),
                on_epoch_end=lambda e, row: raw.append({k: v.clone() for k, v in m.state_dict().items()}))
    plain = train(_model(), tr, va, "ce_aux", cfg=TrainConfig(epochs=6, select="last", **cfg)).model.state_dict()
    assert all(torch.equal(raw[-1][k], plain[k]) for k in plain)      # averaging does not change training
    avg = {k: v.clone().double() for k, v in raw[0].items()}
    for n, w in enumerate(raw[1:], start=1):
        keep = ema_factor(n, 0.3)
        avg = {k: (keep * a + (1 - keep) * w[k].double()) if w[k].is_floating_point() else w[k].double()
               for k, a in avg.items()}
    assert [ema_factor(n, 0.3) for n in (1, 2, 3, 9)] == pytest.approx([2 / 11, 0.25, 0.3, 0.3])
    out = res.model.state_dict()
    for k, v in out.items():
        if v.is_floating_point():
            assert torch.allclose(v.double(), avg[k], rtol=1e-5, atol=1e-6), k
        else:
            assert torch.equal(v, raw[-1][k]), k                     # batch counters are copied
    moved = [k for k, v in out.items() if v.is_floating_point() and not torch.allclose(v, plain[k])]
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)
    assert evaluate(res.model, va)["acc"] == pytest.approx(res.history[-1]["val_acc"])   # scored = returned

    # best epoch: the average's best state; resume continues the average bit for bit
    ck = tmp_path / "ema.pt"
    tc = TrainConfig(epochs=3, ema_decay=0.3, **cfg)
    ref = train(_model(), tr, va, "ce_aux", cfg=tc)

    def kill_after_1(epoch, row):
        if epoch == 1:
            raise Kill
    with pytest.raises(Kill):
        train(_model(), tr, va, "ce_aux", cfg=tc, checkpoint=ck, on_epoch_end=kill_after_1)
    with pytest.raises(Esc2cError, match="different weight-average setting"):
        train(_model(), tr, va, "ce_aux", cfg=TrainConfig(epochs=3, **cfg), checkpoint=ck)
    res = train(_model(seed=9), tr, va, "ce_aux", cfg=tc, checkpoint=ck)
    a, b = ref.model.state_dict(), res.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert evaluate(ref.model, va)["acc"] == pytest.approx(ref.best_val_acc)
    for bad in (1.0, -0.1):
        with pytest.raises(Esc2cError, match="weight-average decay"):
            train(_model(), tr, va, "ce", cfg=TrainConfig(epochs=1, ema_decay=bad, **CFG))


def test_student_with_frozen_teacher():
    tr = Bands(64, 0)
    teacher = _model(seed=3)
    teacher.train()
    t_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    for loss in ("pokd", "fitnet"):
        res = train(_model(), tr, None, loss, teacher=teacher, cfg=TrainConfig(epochs=1, **CFG))
        assert res.history[0]["train_loss"] > 0
    assert not teacher.training
    assert all(torch.equal(t_state[k], v) for k, v in teacher.state_dict().items())  # BN stats untouched too
    with pytest.raises(Esc2cError, match="teacher"):
        train(_model(), tr, None, "kd", cfg=TrainConfig(epochs=1, **CFG))


@pytest.mark.parametrize("loss", ["pokd", "fitnet"])
def test_cached_teacher_outputs_change_nothing(loss):
    tr = Bands(64, 0)
    teacher = _model(seed=3).eval()
    a = train(_model(), tr, None, loss, teacher=teacher, cfg=TrainConfig(epochs=2, cache_teacher=True, **CFG))
    b = train(_model(), tr, None, loss, teacher=teacher, cfg=TrainConfig(epochs=2, cache_teacher=False, **CFG))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5)


def test_model_prepare_hook_and_device_errors():
    tr = Bands(32, 0)
    calls = []

    def prepare(m):
        calls.append(type(m).__name__)
        return m.drop_aux_heads()
    res = train(_model(), tr, None, "ce", cfg=TrainConfig(epochs=1, **CFG), model_prepare=prepare)
    assert calls == ["ESCNet"] and len(res.model.aux_heads) == 0
    with pytest.raises(Esc2cError, match="device"):
        train(_model(), tr, None, "ce", cfg=TrainConfig(epochs=1, device="tpu", **CFG))
    if not torch.cuda.is_available():
        with pytest.raises(Esc2cError, match="CUDA"):
            train(_model(), tr, None, "ce", cfg=TrainConfig(epochs=1, device="cuda", **CFG))
    with pytest.raises(Esc2cError, match="training data"):
        train(_model(), (np.zeros((3, 16, 24), np.float32), np.zeros(3, np.int64)), None, "ce",
              cfg=TrainConfig(epochs=1, **CFG))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_on_cuda():
    res = train(_model(), Bands(64, 0), Bands(32, 1), "pokd", teacher=_model(3),
                cfg=TrainConfig(epochs=1, device="cuda", **CFG))
    assert next(res.model.parameters()).is_cuda


def _stages(calls, kill_at=None):
    tr, va = Bands(64, 0), Bands(32, 1)

    def teacher(ctx):
        calls.append("teacher")

        def hook(epoch, row):
            calls.append(("teacher-epoch", epoch))
            if kill_at == epoch:
                raise Kill
        res = train(_model(), tr, va, "ce_aux", cfg=TrainConfig(epochs=2, **CFG), checkpoint=ctx.train_checkpoint,
                    checkpoint_extra=ctx.checkpoint_extra(), on_epoch_end=hook)
        return res.model, res.metrics

    def student(ctx):
        calls.append("student")
        t = ctx.results["teacher"].model
        res = train(_model(5), tr, va, "pokd", teacher=t, cfg=TrainConfig(epochs=1, **CFG),
                    checkpoint=ctx.train_checkpoint)
        return StageResult(res.model, {"acc": res.best_val_acc})
    return [Stage("teacher", teacher, {"epochs": 2}), Stage("student", student, {"epochs": 1})]


def test_stage_runner_skips_done_and_resumes(tmp_path):
    spec = {"n_mels": 16, "frames": 24}
    calls = []
    with pytest.raises(Kill):
        StageRunner(tmp_path, {"arch": "small"}, spec, log=lambda s: None).run(_stages(calls, kill_at=1))
    assert calls == ["teacher", ("teacher-epoch", 1)]
    assert not (tmp_path / "teacher" / "DONE").exists() and (tmp_path / "teacher" / "last.pt").exists()

    calls.clear()
    res = StageRunner(tmp_path, {"arch": "small"}, spec, log=lambda s: None).run(_stages(calls))
    assert calls == ["teacher", ("teacher-epoch", 2), "student"]      # resumed at epoch 2, not 1
    done = json.loads((tmp_path / "teacher" / "DONE").read_text())
    assert done["metrics"]["epochs"] == 2 and not (tmp_path / "teacher" / "last.pt").exists()
    model, ck = load_model(tmp_path / "teacher" / "model.pt")
    assert ck["spec"] == spec and ck["stage_config"] == {"epochs": 2} and ck["metrics"]["epochs"] == 2

    calls.clear()
    again = StageRunner(tmp_path, {"arch": "small"}, spec, log=lambda s: None).run(_stages(calls))
    assert calls == []                                                  # both finished: nothing rerun
    a, b = res["student"].model.state_dict(), again["student"].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again["student"].metrics == res["student"].metrics

    st = _stages(calls)
    st[0].config = {"epochs": 5}
    with pytest.raises(Esc2cError, match="different stage_config"):
        StageRunner(tmp_path, {"arch": "small"}, spec, log=lambda s: None).run(st)


def test_done_stage_whose_checkpoint_does_not_load_is_one_line(tmp_path):
    def fit(ctx):
        return _model(), {}

    def load(ck, ctx):
        return ck["qat_state"]                       # an entry this checkpoint does not have
    stage = Stage("quantized", fit, {"epochs": 1}, save=lambda m: {"weights": m.state_dict()}, load=load)
    StageRunner(tmp_path, {}, None, log=lambda s: None).run_stage(stage)
    with pytest.raises(Esc2cError, match=r"model.pt: stage 'quantized' checkpoint does not load \(KeyError"):
        StageRunner(tmp_path, {}, None, log=lambda s: None).run_stage(stage)


def test_save_and_load_model(tmp_path):
    m = _model()
    save_model(tmp_path / "m.pt", m, {"acc": 0.5}, {"n_mels": 16})
    m2, ck = load_model(tmp_path / "m.pt")
    x = torch.randn(2, *IN)
    m.eval(), m2.eval()
    assert torch.equal(m(x), m2(x)) and ck["metrics"] == {"acc": 0.5}
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Esc2cError, match="bad.pt"):
        load_model(tmp_path / "bad.pt")


@pytest.mark.slow
def test_synthetic_teacher_prune_pokd_chain(tmp_path):
    """End to end on the built-in synthetic set: teacher -> CUP -> PoKD through the stage runner."""
    from esc2c.compress.cup import prune_to_ratio
    from esc2c.data.loader import load_features
    from esc2c.features import FeatureSpec
    from esc2c.models.counting import count_params

    spec = FeatureSpec(n_mels=40, hop_length=1024)
    feats = load_features("synthetic", None, None, spec, cache_dir=tmp_path / "cache", progress=False)
    mean, std = feats.subset([1, 2, 3]).stats()
    spec = spec.with_stats(mean, std)
    feats = feats.normalised(spec)
    tr, va, te = feats.subset([1, 2, 3]), feats.subset([4]), feats.subset([5])
    cfg = lambda e: TrainConfig(epochs=e, progress=False, seed=0)   # noqa: E731

    def teacher(ctx):
        torch.manual_seed(0)
        m = build_model("small", 10, in_shape=tuple(feats.x.shape[1:]))
        return train(m, tr, va, "ce_aux", cfg=cfg(6), checkpoint=ctx.train_checkpoint).model, {}

    def prune(ctx):
        res = prune_to_ratio(ctx.results["teacher"].model, 0.8)
        return res.model, res.summary()

    def pokd(ctx):
        import copy
        s = copy.deepcopy(ctx.results["prune"].model)
        res = train(s, tr, va, "pokd", teacher=ctx.results["teacher"].model, cfg=cfg(5),
                    checkpoint=ctx.train_checkpoint)
        return res.model, res.metrics

    stages = [Stage("teacher", teacher), Stage("prune", prune), Stage("pokd", pokd)]
    out = StageRunner(tmp_path / "run", spec=spec.to_dict(), log=lambda s: None).run(stages)
    acc = {k: evaluate(v.model, te)["acc"] for k, v in out.items()}
    assert acc["teacher"] > 0.6                                   # 10 classes: chance is 0.1
    assert acc["pokd"] > max(0.4, acc["prune"])                   # distillation recovers the pruned model
    assert abs(1 - count_params(out["pokd"].model) / count_params(out["teacher"].model) - 0.8) <= 0.005
