"""The deep stack on volumes: the network, losses and trainer in 3-D, the network built for the data's
dimension, batches built lazily, and 3-D models saved and loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regbench import ConfigError, create_dataset, create_method
from regbench.methods.gradient_surgery import LayerwiseProjection
from regbench.methods.voxelmorph import integrate_velocity
from regbench.nn import SpatialTransformer, UNet, count_parameters
from regbench.trainer import PairBatches, PlainObjective, Trainer, TrainSettings, ncc_loss, per_sample_smoothness


@pytest.fixture(scope="module")
def volumes():
    """Synthetic short-axis stacks: 10 slices of 32 × 32 px (not a multiple of 16 along any axis but 32)."""
    dataset = create_dataset("synthetic3d", n_subjects=6, image_size=32, seed=4)
    return [p for split in ("train", "val", "test") for p in dataset.pairs(split)]


def _batch(pairs):
    moving = torch.from_numpy(np.stack([p.moving for p in pairs])[:, None])
    fixed = torch.from_numpy(np.stack([p.fixed for p in pairs])[:, None])
    return moving, fixed


def test_the_3d_unet_has_the_papers_layers_in_3d_and_returns_a_flow_of_the_input_size():
    net = UNet(dims=3)
    assert len(list(net.parameters())) == 75  # the same groups for layer-wise surgery as in 2-D
    # 3×3×3 kernels: the 2-D network's conv weights × 3, its biases, BatchNorm and the 3-channel head
    assert count_parameters(net) == 5_895_603
    flow = net(torch.rand(2, 1, 10, 20, 36), torch.rand(2, 1, 10, 20, 36))  # padded to 16 × 32 × 48 inside
    assert flow.shape == (2, 3, 10, 20, 36) and flow.is_contiguous()
    with pytest.raises(ValueError, match="this network is 3-D; it was given images of shape \\(20, 36\\)"):
        net(torch.rand(1, 1, 20, 36), torch.rand(1, 1, 20, 36))


def test_smoothness_averages_the_forward_differences_of_every_axis():
    flow = torch.zeros(1, 3, 6, 5, 4)
    flow[:, 0] = 0.5 * torch.arange(6.0).view(6, 1, 1)  # rows-first component grows along axis 0 only
    # per axis: mean over the three channels of |difference|; only axis 0 has any (0.5 in one channel of three)
    assert float(per_sample_smoothness(flow)) == pytest.approx((0.5 / 3) / 3)
    assert float(per_sample_smoothness(flow, "l2")) == pytest.approx((0.25 / 3) / 3)


def test_ncc_in_3d_is_minus_one_for_a_scaled_image_and_near_zero_for_an_unrelated_one():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 12, 12, 12, generator=generator)
    assert float(ncc_loss(image, 2 * image)) == pytest.approx(-1.0, abs=1e-3)
    # unrelated noise correlates only through the zero padding at the borders (9-voxel windows on 12 voxels)
    assert float(ncc_loss(image, torch.rand(2, 1, 12, 12, 12, generator=generator))) > -0.5


def test_scaling_and_squaring_integrates_a_constant_velocity_to_the_same_shift_in_3d():
    velocity = torch.zeros(1, 3, 8, 12, 12)
    velocity[:, 2] = 1.5  # a constant field: its exponential is the same translation
    flow = integrate_velocity(velocity, SpatialTransformer())
    inside = flow[0, 2, 2:-2, 2:-2, 2:-6]  # away from the far edge, where zero padding enters
    assert torch.allclose(inside, torch.full_like(inside, 1.5), atol=1e-5)


def test_a_3d_training_steps_gradients_equal_two_independent_backward_passes(volumes):
    method = create_method("gsmorph", device="cpu", epochs=1, batch_size=2)
    method.use_dims(3)
    model = method.model.train()
    moving, fixed = _batch(volumes[:2])
    params = list(model.parameters())
    captured = {}

    def capture(g_sim, g_reg):
        captured["sim"], captured["reg"] = [g.clone() for g in g_sim], [g.clone() for g in g_reg]
        return LayerwiseProjection()(g_sim, g_reg)

    capture.needs_separate_gradients = True  # type: ignore[attr-defined]
    trainer = Trainer(TrainSettings(epochs=1, batch_size=2), capture, torch.device("cpu"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.step(model, params, torch.optim.SGD(params, lr=0.0), PlainObjective(), moving, fixed, None)
    assert any(float(g.abs().sum()) > 0 for g in captured["reg"])
    for loss_index, key in ((0, "sim"), (1, "reg")):
        model.load_state_dict(state)
        model.zero_grad()
        PlainObjective()(model, moving, fixed, None)[loss_index].backward()
        for p, g in zip(params, captured[key]):
            expected = torch.zeros_like(p) if p.grad is None else p.grad
            assert torch.allclose(g, expected, atol=1e-7, rtol=1e-5)


def test_batches_built_from_host_memory_train_exactly_as_a_split_stacked_on_the_device(volumes, monkeypatch):
    from regbench import trainer

    stacked = create_method("voxelmorph-m", device="cpu", epochs=2, batch_size=2)
    stacked.fit(volumes[:4])
    assert PairBatches(volumes[:4], torch.device("cpu")).on_device
    monkeypatch.setattr(trainer, "DEVICE_DATA_BUDGET_BYTES", 0)  # every batch stacked from its pairs when asked
    assert not PairBatches(volumes[:4], torch.device("cpu")).on_device
    lazy = create_method("voxelmorph-m", device="cpu", epochs=2, batch_size=2)
    lazy.fit(volumes[:4])
    assert stacked.dims == lazy.dims == 3
    for (key, a), b in zip(stacked.model.state_dict().items(), lazy.model.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("name", ["voxelmorph-diff", "hypermorph"])
def test_a_3d_model_saves_and_loads_with_weights_only_into_a_fresh_method(volumes, tmp_path, name):
    options = {"device": "cpu", "epochs": 1, "batch_size": 2, **({"hyper_units": 2} if name == "hypermorph" else {})}
    trained = create_method(name, **options)
    trained.fit(volumes[:2], volumes[2:3])
    trained.save(tmp_path / "model.pt")
    assert torch.load(tmp_path / "model.pt", weights_only=True)["dims"] == 3
    fresh = create_method(name, **options)  # built for 2-D until it knows better
    fresh.load(tmp_path / "model.pt")
    assert fresh.dims == 3
    pair = volumes[3]
    a, b = trained.register(pair.fixed, pair.moving), fresh.register(pair.fixed, pair.moving)
    assert a.flow.shape == (3, *pair.fixed.shape)
    np.testing.assert_array_equal(a.flow, b.flow)
    with pytest.raises(ConfigError, match=f"{name} was trained for 3-D images; the images to register are 2-D"):
        fresh.register(pair.fixed[5], pair.moving[5])


def test_an_untrained_network_is_rebuilt_for_the_data_with_the_same_seeded_weights(volumes):
    method = create_method("voxelmorph-s", device="cpu")
    two_d = {k: v.clone() for k, v in method.model.state_dict().items()}
    registration = method.register(volumes[0].fixed, volumes[0].moving)  # untrained: rebuilt for volumes
    assert registration.flow.shape == (3, *volumes[0].fixed.shape) and method.dims == 3
    method.use_dims(2)
    assert all(torch.equal(v, two_d[k]) for k, v in method.model.state_dict().items())


@pytest.mark.slow
def test_perf_times_a_3d_training_step_and_counts_its_peak_memory():
    from regbench.perf import format_step_timings, time_training_steps

    (row,) = time_training_steps(["voxelmorph-m"], size=32, steps=1, repeats=1, profile="smoke", dims=3, depth=10)
    assert row.size == "10×32×32" and row.batch == 2 and row.parameters == 5_895_603  # smoke's batch on volumes
    # parameters, gradients and AdamW's two moments in float32, plus the step's activations
    assert row.peak_mb > 4 * 4 * row.parameters / 2**20
    assert row.step_s > 0 and row.inference_ms > 0
    assert "10×32×32" in format_step_timings([row])
