"""Deep registration: the network, the combiners' exact rules on hand-made gradients, the trainer's two
gradients, training lowers the loss for every variant, and resume equals an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regbench import create_method
from regbench.methods.gradient_surgery import GlobalProjection, LayerwiseProjection, group_sums
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


def grads(*arrays):
    return [torch.tensor(a, dtype=torch.float64) for a in arrays]


FORMS = ["per_tensor", "flat"]  # each combiner's loop (CPU) and whole-network (CUDA) forms


@pytest.mark.parametrize("form", FORMS)
def test_layerwise_projection_is_algorithm_1_per_tensor(form):
    g_sim = grads([1.0, 0.0], [1.0, 1.0])
    g_reg = grads([-1.0, 1.0], [1.0, 0.0])  # group 0 conflicts (dot −1), group 1 does not (dot 1)
    update, share = getattr(LayerwiseProjection(), form)(g_sim, g_reg)
    assert torch.allclose(update[0], torch.tensor([0.5, 0.5], dtype=torch.float64))  # g − (−1/2)·g_reg
    assert torch.equal(update[1], g_sim[1])  # untouched, and g_reg is not added
    assert float(share) == 0.5
    for u, r in zip(update, g_reg):
        assert float((u * r).sum()) >= -1e-12  # no remaining conflict in any group


@pytest.mark.parametrize("form", FORMS)
def test_global_projection_uses_the_whole_network(form):
    project = getattr(GlobalProjection(), form)
    g_sim = grads([1.0, 0.0], [1.0, 1.0])
    g_reg = grads([-3.0, 1.0], [1.0, 0.0])  # group 0 conflicts, group 1 agrees; total dot = −3 + 1 = −2 < 0
    update, share = project(g_sim, g_reg)
    coef = -2.0 / (9 + 1 + 1)
    assert torch.allclose(update[0], g_sim[0] - coef * g_reg[0])
    assert torch.allclose(update[1], g_sim[1] - coef * g_reg[1])  # projected too: one decision for all
    assert float(share) == 1.0
    total = sum(float((u * r).sum()) for u, r in zip(update, g_reg))
    assert abs(total) < 1e-12
    # Whole-network agreement: nothing changes even where a single group conflicts.
    update, share = project(grads([1.0, 0.0], [5.0, 0.0]), grads([-1.0, 0.0], [1.0, 0.0]))
    assert torch.equal(update[0], torch.tensor([1.0, 0.0], dtype=torch.float64)) and float(share) == 0.0


def unet_gradients(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """FP32 gradients shaped as the U-Net's 75 parameter tensors; g_reg's correlation with g_sim drawn per tensor
    from −0.5 to 0.5, so that some tensors conflict, some agree and a few are nearly orthogonal."""
    generator = torch.Generator().manual_seed(seed)
    g_sim, g_reg = [], []
    for p in UNet().parameters():
        s = torch.randn(p.shape, generator=generator)
        rho = float(torch.rand(1, generator=generator)) - 0.5
        g_sim.append(s)
        g_reg.append(0.1 * (rho * s + torch.randn(p.shape, generator=generator)))
    return g_sim, g_reg


@pytest.mark.parametrize("combiner", [LayerwiseProjection, GlobalProjection], ids=lambda c: c.__name__)
def test_flat_form_equals_the_per_tensor_loop_on_network_sized_gradients(combiner, two_threads):
    """Both FP32 forms against the loop in FP64: the same conflict decisions and updates within FP32 rounding (the
    projection coefficient's error is ~ε·Σ|g_sim·g_reg|/‖g_reg‖², a few 1e-6 here on updates of size ~1)."""
    for seed in range(3):
        g_sim, g_reg = unet_gradients(seed)
        exact, exact_share = combiner().per_tensor([g.double() for g in g_sim], [g.double() for g in g_reg])
        loop, loop_share = combiner().per_tensor(g_sim, g_reg)
        flat, flat_share = combiner().flat(g_sim, g_reg)
        assert float(flat_share) == float(loop_share) == float(exact_share)
        assert [u.shape for u in flat] == [g.shape for g in g_sim]
        for a, b, e in zip(flat, loop, exact):
            torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=2e-5)
            torch.testing.assert_close(b.double(), e, rtol=1e-5, atol=2e-5)
    if combiner is LayerwiseProjection:
        assert 0 < float(loop_share) < 1  # the drawn gradients did exercise both branches
    on_cpu, _ = combiner()(g_sim, g_reg)  # CPU gradients take the loop: CPU results are what they were
    assert all(torch.equal(a, b) for a, b in zip(on_cpu, loop))
    assert combiner.form_for(torch.device("cuda", 0)) == "flat" and combiner.form_for(torch.device("cpu")) == "per_tensor"


def test_flat_form_keeps_each_gradients_memory_layout(two_threads):
    """Channels-last similarity gradients (as a channels-last network's), smoothness gradients in mixed layouts
    and one non-dense tensor: the flat form pairs the same elements as the loop, and hands every dense gradient
    back with its strides (the trainer then copies nothing into its parameter's layout)."""
    from regbench.methods.gradient_surgery import AgreementRandom

    g_sim, g_reg = unet_gradients(4)
    g_sim = [g.contiguous(memory_format=torch.channels_last) if g.dim() == 4 else g for g in g_sim]
    g_reg = [g if i % 2 else g.contiguous(memory_format=torch.channels_last) if g.dim() == 4 else g for i, g in enumerate(g_reg)]
    g_sim[1] = g_sim[1].transpose(2, 3)  # not dense in a standard order: flattened from a contiguous copy
    g_reg[1] = g_reg[1].transpose(2, 3)
    assert g_sim[0].stride() != g_sim[0].contiguous().stride()
    for combiner in (LayerwiseProjection(), GlobalProjection()):
        loop, loop_share = combiner.per_tensor(g_sim, g_reg)
        flat, flat_share = combiner.flat(g_sim, g_reg)
        assert float(flat_share) == float(loop_share)
        for i, (a, b, g) in enumerate(zip(flat, loop, g_sim)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)
            if i != 1:
                assert a.stride() == g.stride()
    agr = AgreementRandom()
    agr.generator = torch.Generator().manual_seed(0)
    update, share = agr.flat(g_sim, g_reg)
    _, loop_share = agr.per_tensor(g_sim, g_reg)
    assert float(share) == pytest.approx(float(loop_share), abs=1e-6)
    for u, s_, r in zip(update, g_sim, g_reg):
        agree = torch.sign(s_) == torch.sign(r)
        assert torch.equal(u[agree], s_[agree])


@pytest.mark.parametrize("name", ["gsmorph", "gs-pcgrad"])
def test_training_with_the_flat_form_follows_the_loop(monkeypatch, pairs, name):
    """The CUDA form inside the trainer (views of one flat update handed to fused AdamW), run here on CPU: from the
    same weights, one step moves every weight as the loop's step does. One step: Adam amplifies rounding where a
    gradient element is near zero, and after three steps even 1 vs 2 threads differ by a fifth of the movement."""
    from regbench.methods import gradient_surgery

    lr = 1e-3
    weights = {}
    for form in ("per_tensor", "flat"):
        monkeypatch.setattr(gradient_surgery._Combiner, "__call__", lambda self, s, r, form=form: getattr(self, form)(s, r))
        method = create_method(name, device="cpu", epochs=1, batch_size=8, lr=lr, seed=3)
        initial = [p.detach().clone() for p in method.model.parameters()]
        history = method.fit(pairs[:8])  # one step
        assert np.isfinite(history[0].loss_sim)
        weights[form] = (initial, [p.detach().clone() for p in method.model.parameters()])
    (initial, loop), (flat_initial, flat) = weights["per_tensor"], weights["flat"]
    assert all(torch.equal(a, b) for a, b in zip(initial, flat_initial))
    assert max(float((b - a).abs().max()) for a, b in zip(initial, loop)) > 0.5 * lr  # the step moved the weights
    for a, b in zip(flat, loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3 * lr)


def test_group_sums_are_signed_sums_within_a_plain_sums_error(two_threads):
    generator = torch.Generator().manual_seed(0)
    sizes = [1, 3, 1000, 7, 250_000, 2]
    x = torch.randn(sum(sizes), generator=generator) * torch.rand(sum(sizes), generator=generator).exp()
    x[sizes[0] : sizes[0] + sizes[1]] = 0.0  # an all-zero group
    exact = torch.stack([piece.double().sum() for piece in x.split(sizes)])
    bound = torch.stack([piece.double().abs().sum() for piece in x.split(sizes)]) * 1e-6
    got = group_sums(x, sizes).double()
    assert torch.all((got - exact).abs() <= bound)
    assert float(got[1]) == 0.0 and float(got[0]) == float(x[0])


def test_weighted_sum():
    update, share = WeightedSum(0.1)(grads([1.0, 2.0]), grads([10.0, -10.0]))
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
