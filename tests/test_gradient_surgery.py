"""The gradient-surgery combiners: the layer-wise and global projections (Algorithm 1) on hand-made gradients,
their whole-network (flat) form against the per-tensor loop, GS-Agr's update against the formulas written out here,
and one option resolution for run, train, check-method and perf."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from regbench import create_method
from regbench.cli import main
from regbench.errors import ConfigError
from regbench.methods.gradient_surgery import AgreementRandom, GlobalProjection, LayerwiseProjection, group_sums
from regbench.nn import UNet
from regbench.registry import METHODS


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
    from regbench.methods.gradient_surgery import AgreementRandom, GlobalProjection, LayerwiseProjection

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


# Two "layers". Signs agree at (layer 0: elements 0 and 2, the second a pair of exact zeros) and (layer 1:
# element 0); they disagree elsewhere, including g_sim = 0 against g_reg ≠ 0 and g_sim ≠ 0 against g_reg = 0.
G_SIM = [torch.tensor([1.0, -2.0, 0.0, 3.0]), torch.tensor([[4.0, -1.0], [0.0, 5.0]])]
G_REG = [torch.tensor([2.0, 1.0, 0.0, -1.0]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])]
AGREE = [torch.tensor([True, False, True, False]), torch.tensor([[True, False], [False, False]])]
# Over all N = 8 elements of the network: Σ|agree·g_sim| = 1 + 0 + 4 = 5 over 3 agreeing elements; Σ|g_sim| = 16.
EXPECTED_SCALE = {"masked-mean": 5 / 8, "agreeing-mean": 5 / 3, "mean": 16 / 8}


@pytest.mark.parametrize("form", ["per_tensor", "flat"])
@pytest.mark.parametrize("noise_scale", sorted(EXPECTED_SCALE))
def test_agreement_random_keeps_agreeing_entries_and_puts_scaled_noise_elsewhere(noise_scale, form):
    combiner = AgreementRandom(noise_scale)
    combiner.generator = torch.Generator().manual_seed(7)
    update, conflict = getattr(combiner, form)(G_SIM, G_REG)
    reference = torch.Generator().manual_seed(7)
    if form == "per_tensor":  # the same draws, layer by layer
        noise = [torch.randn(s.shape, generator=reference) for s in G_SIM]
    else:  # the same draws, for the whole network at once
        noise = [piece.view_as(s) for piece, s in zip(torch.randn(8, generator=reference).split([4, 4]), G_SIM)]
    for out, s, a, n in zip(update, G_SIM, AGREE, noise):
        assert torch.equal(out[a], s[a])  # agreeing entries are g_sim, untouched
        assert torch.allclose(out[~a], n[~a] * EXPECTED_SCALE[noise_scale], rtol=1e-6, atol=0)
    assert float(conflict) == pytest.approx(5 / 8)


def test_reference_scale_is_the_default_and_recorded():
    assert AgreementRandom().noise_scale == "masked-mean"
    method = create_method("gs-agr", device="cpu", epochs=1)
    assert method.options()["noise_scale"] == "masked-mean"
    assert create_method("gs-agr", device="cpu", noise_scale="mean").options()["noise_scale"] == "mean"
    with pytest.raises(ConfigError, match="noise_scale must be one of masked-mean, agreeing-mean, mean, got 'masked'"):
        create_method("gs-agr", device="cpu", noise_scale="masked")
    with pytest.raises(ConfigError, match="noise_scale"):
        create_method("gsmorph", device="cpu", noise_scale="mean")  # only GS-Agr has one


class _Built(Exception):
    """Raised by the patched registry once gs-agr is built: the command got as far as building it."""


@pytest.mark.slow
@pytest.mark.kernel_independent
def test_run_train_check_method_and_perf_build_gs_agr_with_the_same_options(monkeypatch, tmp_path):
    from regbench.options import resolved_options

    built: dict[str, dict] = {}
    create = METHODS.create

    def recording_create(name, **options):
        method = create(name, **options)
        if name == "gs-agr":
            built[command] = json.loads(json.dumps(resolved_options(name, options, method), default=str))
            raise _Built
        return method

    monkeypatch.setattr(METHODS, "create", recording_create)
    commands = {
        "run": ["run", "--profile", "reproduce", "--methods", "gs-agr", "--out", str(tmp_path / "run"), "--no-progress"],
        "train": ["train", "gs-agr", "--profile", "reproduce", "--out", str(tmp_path / "train"), "--no-progress"],
        "check-method": ["check-method", "gs-agr", "--profile", "reproduce"],
        "perf": ["perf", "--methods", "gs-agr", "--profile", "reproduce", "--size", "32"],
    }
    for command, argv in commands.items():  # noqa: B007 - read by the patched create() above
        with pytest.raises(_Built):
            main(argv)
    assert built["run"]["epochs"] == 240 and built["run"]["noise_scale"] == "masked-mean"  # the profile's entry for gs-agr
    # check-method's trainings validate once, after their last epoch (no check reads the curve): the one difference.
    validation = {command: options.pop("val_every") for command, options in built.items()}
    assert validation == {"run": 2, "train": 2, "check-method": 240, "perf": 2}
    assert all(options == built["run"] for options in built.values()), built
