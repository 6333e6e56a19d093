"""Deep registration: the network, the trainer's two gradients, training lowers the loss for every variant, and
resume equals an uninterrupted run (the gradient-surgery combiners' rules: tests/test_gradient_surgery.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regbench import create_method
from regbench.methods.gradient_surgery import LayerwiseProjection
from regbench.methods.voxelmorph import WeightedSum
from regbench.nn import UNet, count_parameters
from regbench.trainer import PlainObjective, TrainSettings

DEEP = ["voxelmorph-s", "voxelmorph-m", "voxelmorph-l", "gs-agr", "gs-pcgrad", "gsmorph"]


def test_unet_matches_the_reference_network():
    net = UNet()
    assert count_parameters(net) == 1_968_002  # the paper's "1.96M"
    assert len(list(net.parameters())) == 75  # parameter groups for layer-wise surgery
    flow = net(torch.rand(2, 1, 128, 128), torch.rand(2, 1, 128, 128))
    assert flow.shape == (2, 2, 128, 128)
    assert flow.abs().max() < 1e-2  # flow head initialised near zero


def test_weighted_sum():
    update, share = WeightedSum(0.1)([torch.tensor([1.0, 2.0], dtype=torch.float64)], [torch.tensor([10.0, -10.0], dtype=torch.float64)])
    assert torch.allclose(update[0], torch.tensor([2.0, 1.0], dtype=torch.float64)) and share is None


def test_trainer_gradients_equal_two_independent_backward_passes(pairs):
    """The two gradients from one forward pass equal those of two separate forward/backward passes."""
    method = create_method("gsmorph", device="cpu", epochs=1, batch_size=2)
    model = method.model.train()
    moving = torch.from_numpy(np.stack([p.moving for p in pairs[:2]])[:, None])
    fixed = torch.from_numpy(np.stack([p.fixed for p in pairs[:2]])[:, None])
    params = [p for p in model.parameters()]
    captured = {}

    def capture(g_sim, g_reg):
        captured["sim"], captured["reg"] = [g.clone() for g in g_sim], [g.clone() for g in g_reg]
        return LayerwiseProjection()(g_sim, g_reg)

    from regbench.trainer import Trainer

    trainer = Trainer(TrainSettings(epochs=1, batch_size=2), capture, torch.device("cpu"))
    capture.needs_separate_gradients = True  # type: ignore[attr-defined]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.SGD(params, lr=0.0)
    trainer.step(model, params, optimiser, PlainObjective(), moving, fixed, None)
    for loss_index, key in ((0, "sim"), (1, "reg")):
        model.load_state_dict(state)
        model.zero_grad()
        losses = PlainObjective()(model, moving, fixed, None)
        losses[loss_index].backward()
        for p, g in zip(params, captured[key]):
            expected = torch.zeros_like(p) if p.grad is None else p.grad
            assert torch.allclose(g, expected, atol=1e-7, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", DEEP)
def test_a_few_training_steps_lower_the_loss(name, small_dataset):
    train = small_dataset.pairs("train")
    method = create_method(name, device="cpu", epochs=6, batch_size=8, lr=5e-3)
    history = method.fit(train)
    first, last = history[0], history[-1]
    assert last.loss_sim < first.loss_sim, [(h.loss_sim, h.loss_reg) for h in history]
    if name != "voxelmorph-s" and name != "gs-agr":
        assert last.conflict_share is not None or name.startswith("voxelmorph")


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_after_interruption_gives_the_same_weights(tmp_path, small_dataset, schedule):
    train = small_dataset.pairs("train")[:16]
    options = dict(device="cpu", epochs=3, batch_size=4, checkpoint_every_s=0, lr_schedule=schedule)
    straight = create_method("gsmorph", **options)
    straight.fit(train, workdir=tmp_path / "straight")

    interrupted = create_method("gsmorph", **options)

    def stop_after_first(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    interrupted.callbacks.append(stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(train, workdir=tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    resumed = create_method("gsmorph", **options)  # a fresh process would build it anew
    history = resumed.fit(train, workdir=tmp_path / "resumed")
    assert [h.epoch for h in history] == [1, 2, 3]
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_cosine_schedule_sets_each_epochs_learning_rate(monkeypatch, pairs):
    from regbench.trainer import Trainer

    used: list[float] = []
    make = Trainer.make_optimiser

    def spy(self, params, *args):
        optimiser = make(self, params, *args)
        original = optimiser.step

        def step(*args, **kwargs):
            used.append(optimiser.param_groups[0]["lr"])
            return original(*args, **kwargs)

        optimiser.step = step
        return optimiser

    monkeypatch.setattr(Trainer, "make_optimiser", spy)
    method = create_method("voxelmorph-m", device="cpu", epochs=4, batch_size=8, lr=4e-3, lr_schedule="cosine")
    method.fit(pairs[:8])  # one step per epoch
    assert used == pytest.approx([4e-3, 4e-3 * (1 + 2**-0.5) / 2, 2e-3, 4e-3 * (1 - 2**-0.5) / 2])
    with pytest.raises(Exception, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        create_method("voxelmorph-m", lr_schedule="linear")


def test_training_treats_subnormal_floats_as_zero(pairs):
    # Adam moments decaying through the subnormal range made HyperMorph's steps ~2x slower on x86 (see
    # regbench.trainer.flush_subnormals); after a training, this thread computes them as zero.
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode (torch.set_flush_denormal returned False)")
    torch.set_flush_denormal(False)
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert float(tiny * 1.0) != 0.0  # subnormals exist here until a training starts
    create_method("voxelmorph-m", device="cpu", epochs=1, batch_size=8).fit(pairs[:8])
    assert float(tiny * 1.0) == 0.0


def test_saved_model_loads_with_weights_only_and_gives_the_same_flow(tmp_path, pairs):
    method = create_method("voxelmorph-m", device="cpu", epochs=1, batch_size=4)
    method.fit(pairs[:8])
    method.save(tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["name"] == "voxelmorph-m"
    clone = create_method("voxelmorph-m", device="cpu")
    clone.load(tmp_path / "m.pt")
    p = pairs[3]
    assert np.array_equal(method.register(p.fixed, p.moving).flow, clone.register(p.fixed, p.moving).flow)


def test_images_not_a_multiple_of_16_are_padded(pairs):
    method = create_method("gsmorph", device="cpu")
    p = pairs[0]
    reg = method.register(p.fixed[:50, :60], p.moving[:50, :60])
    assert reg.flow.shape == (2, 50, 60) and reg.moved.shape == (50, 60)


def test_unknown_training_option_is_named():
    from regbench import ConfigError

    with pytest.raises(ConfigError, match="'gsmorph' has no option 'epoch' \\(did you mean 'epochs'\\?\\)"):
        create_method("gsmorph", epoch=3)
    with pytest.raises(ConfigError, match="epochs must be an integer of at least 1, got 'ten'"):
        create_method("gsmorph", epochs="ten")
    with pytest.raises(ConfigError, match="lr must be a positive number, got '5e-3' \\(YAML reads 5e-3 as text"):
        create_method("voxelmorph-m", lr="5e-3")


# ------------------------------------------------------------------------------------------------ precision
def _trained_state(pairs, precision, name="gsmorph"):
    method = create_method(name, device="cpu", epochs=2, batch_size=4, precision=precision)
    history = method.fit(pairs[:8])
    return method, history, {k: v.clone() for k, v in method.model.state_dict().items()}


def test_precision_is_checked_and_recorded_only_when_not_the_default():
    from regbench import ConfigError

    with pytest.raises(ConfigError, match="precision must be one of fp32, tf32, bf16, got 'fp16'"):
        create_method("gsmorph", precision="fp16")
    assert "precision" not in create_method("gsmorph", device="cpu").options()  # earlier run directories still bind
    assert create_method("gsmorph", device="cpu", precision="bf16").options()["precision"] == "bf16"


def test_precision_mode_sets_the_tf32_flags_on_cuda_and_restores_them():
    """fp32 means FP32 on a GPU: torch's default lets cuDNN convolutions use TF32, which fp32 switches off."""
    from regbench.trainer import precision_mode

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True  # torch's defaults
        for precision, inside in (("fp32", (False, False)), ("tf32", (True, True)), ("bf16", (False, False))):
            with precision_mode(precision, torch.device("cuda")):
                assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == inside, precision
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, True)
        with precision_mode("fp32", torch.device("cpu")):  # a CPU step leaves CUDA's flags alone
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.slow
def test_tf32_on_a_cpu_trains_exactly_as_fp32(pairs):
    *_, fp32 = _trained_state(pairs, "fp32")
    *_, tf32 = _trained_state(pairs, "tf32")
    assert all(torch.equal(fp32[k], tf32[k]) for k in fp32)


def test_bf16_trains_in_bf16_with_fp32_parameters_and_registers_in_fp32(pairs):
    """bf16 autocasts the forward pass (its convolutions run in bfloat16: the weights move differently from
    fp32's), while parameters, the optimiser and the returned flow and moved image stay float32."""
    *_, fp32 = _trained_state(pairs, "fp32")
    method, history, bf16 = _trained_state(pairs, "bf16")
    assert all(v.dtype == fp32[k].dtype for k, v in bf16.items())
    assert not all(torch.equal(fp32[k], bf16[k]) for k in fp32)
    assert all(np.isfinite([h.loss_sim, h.loss_reg]).all() for h in history)
    captured = []
    hook = method.model.unet.stem.register_forward_hook(lambda module, args, out: captured.append(out.dtype))
    registration = method.register(pairs[0].fixed, pairs[0].moving)
    hook.remove()
    assert captured == [torch.bfloat16]
    assert registration.flow.dtype == registration.moved.dtype == np.float32 and np.isfinite(registration.flow).all()


@pytest.mark.slow
@pytest.mark.kernel_independent
def test_a_method_trained_in_other_arithmetic_is_named_with_it_in_every_table(tmp_path):
    """Table 1 showed a bf16 row as plain "VoxelMorph-m": its precision was only in the manifest's options."""
    from regbench.cli import main

    config = tmp_path / "run.yaml"
    config.write_text("method_options:\n  voxelmorph-m: {precision: bf16, epochs: 1}\n")
    out = tmp_path / "run"
    args = ["run", "--config", str(config), "--profile", "smoke", "--methods", "initial,voxelmorph-m,voxelmorph-s", "--max-pairs", "2"]
    assert main([*args, "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    report = out / "report"
    for table in ("table1.md", "table1.tex", "table2.tex"):
        text = (report / table).read_text()
        assert "VoxelMorph-m (bf16)" in text, table
        assert "VoxelMorph-s (" not in text and "Initial (" not in text, table  # fp32 rows keep their names


def test_compile_mode_is_checked_and_recorded_only_when_chosen():
    assert "compile_mode" not in create_method("gsmorph", device="cpu").options()  # earlier run directories still bind
    assert create_method("gsmorph", device="cpu", compile_mode="reduce-overhead").options()["compile_mode"] == "reduce-overhead"
    with pytest.raises(Exception, match="compile_mode must be one of none, default, reduce-overhead, got 'max-autotune'"):
        create_method("voxelmorph-m", device="cpu", compile_mode="max-autotune")


@pytest.mark.slow
def test_a_compiled_training_step_moves_the_weights_as_the_eager_one(pairs):
    """compile_mode=default on CPU (inductor compiles the network on the first step): from the same weights, one
    GSMorph step gives the eager step's weights within 1% of the step for all but a few elements (fused kernels
    round differently, and Adam's first step, g/(|g| + 1e-8)·lr, turns a rounding of a near-zero gradient into a
    visible share of the step), and the saved model is the plain network."""
    lr = 1e-3
    weights, losses = {}, {}
    for mode in ("none", "default"):
        method = create_method("gsmorph", device="cpu", epochs=1, batch_size=8, lr=lr, seed=3, compile_mode=mode)
        losses[mode] = method.fit(pairs[:8])[0].loss_sim
        weights[mode] = [p.detach().clone() for p in method.model.parameters()]
        assert type(method.model).__name__ == "RegistrationNet"  # the compiled wrapper is training's only
    assert losses["default"] == pytest.approx(losses["none"], rel=1e-5)
    differences = torch.cat([(a - b).abs().flatten() for a, b in zip(weights["default"], weights["none"])])
    assert float((differences <= 1e-2 * lr).float().mean()) > 0.999
