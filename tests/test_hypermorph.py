"""HyperMorph: per-sample weights, the parameter count, λ selection on validation data, λ at inference,
save/load, the runner's λ sweep, and λ's effect on smoothness after a little training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from regbench import create_method
from regbench.config import load_config
from regbench.errors import ConfigError
from regbench.methods.hypermorph import HyperRegistrationNet, voxelmorph_lambda
from regbench.nn import UNet, count_parameters
from regbench.runner import run

TINY = dict(device="cpu", hyper_units=4, epochs=2, batch_size=4, recalibrate_bn=True)


def _randomise_heads(model: HyperRegistrationNet, seed: int = 0) -> None:
    """Heads start at zero (λ-independent); give them values so λ matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in model.hyper_convs:
            conv.weight_head.weight.copy_(torch.randn(conv.weight_head.weight.shape, generator=g) * 0.05)


def test_per_sample_lambdas_equal_one_lambda_at_a_time():
    torch.manual_seed(0)
    model = HyperRegistrationNet(hyper_layers=2, hyper_units=4).eval()
    _randomise_heads(model)
    moving, fixed = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    together = model(moving, fixed, torch.tensor([0.2, 0.8]))
    first = model(moving[:1], fixed[:1], 0.2)
    second = model(moving[1:], fixed[1:], 0.8)
    assert torch.allclose(together, torch.cat([first, second]), atol=1e-5)
    assert not torch.allclose(first, model(moving[:1], fixed[:1], 0.8), atol=1e-5)  # λ changes the field


def test_inference_cache_follows_lambda_and_training():
    torch.manual_seed(0)
    model = HyperRegistrationNet(hyper_layers=2, hyper_units=4).eval()
    _randomise_heads(model)
    moving, fixed = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a = model(moving, fixed, 0.3)
        model(moving, fixed, 0.9)
        assert torch.equal(model(moving, fixed, 0.3), a)
        _randomise_heads(model, seed=1)
        model.train().eval()  # training invalidates the generated weights
        assert not torch.allclose(model(moving, fixed, 0.3), a)


def test_hypernetwork_generates_every_conv_of_the_paper_unet():
    units, layers = 64, 4
    model = HyperRegistrationNet(hyper_layers=layers, hyper_units=units)
    plain = UNet()
    plain_convs = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)][:-1]  # all but the flow head
    assert [c.shape for c in model.hyper_convs] == [tuple(c.weight.shape) for c in plain_convs]
    conv_params = sum(c.weight.numel() + (c.bias.numel() if c.bias is not None else 0) for c in plain_convs)
    rest = count_parameters(plain) - conv_params  # BatchNorm and the ordinary flow head
    dense = (1 * units + units) + (layers - 1) * (units * units + units)
    assert count_parameters(model) == (units + 1) * conv_params + rest + dense
    assert 120e6 < count_parameters(model) < 130e6  # the paper reports 126M for its HyperMorph


def test_voxelmorph_equivalent_lambda():
    assert voxelmorph_lambda(0.8) == pytest.approx(0.01)  # VoxelMorph-m
    assert voxelmorph_lambda(0.0) == 0.0 and voxelmorph_lambda(1.0) == float("inf")


@pytest.fixture(scope="module")
def trained(small_dataset, tmp_path_factory):
    method = create_method("hypermorph", **TINY, selection_grid=[0.0, 0.5, 0.9, 1.0])
    workdir = tmp_path_factory.mktemp("hypermorph")
    method.fit(small_dataset.pairs("train"), small_dataset.pairs("val"), workdir=workdir)
    return method, workdir


def test_chosen_lambda_is_the_validation_grid_best(trained, small_dataset):
    method, workdir = trained
    curve = pd.read_csv(workdir / "lambda_selection.csv")
    assert list(curve["lam"]) == [0.0, 0.5, 0.9, 1.0]
    assert curve["chosen"].sum() == 1
    best = curve.loc[curve["dice_mean"].idxmax()]
    assert method.lam == best["lam"] and bool(best["chosen"])
    # The curve is the suite's metrics on the validation pairs, not on any other split.
    rows = method.sweep(small_dataset.pairs("val"), [float(best["lam"])])
    assert np.nanmean([r["dice"] for r in rows]) == pytest.approx(best["dice_mean"])


def test_njd_bound_restricts_the_choice(trained, small_dataset):
    method, _ = trained
    curve = pd.DataFrame(method.selection)
    bound = float(curve["njd_mean"].min())
    method.max_njd = bound
    try:
        chosen = method.select_lambda(small_dataset.pairs("val"))
        allowed = curve[curve["njd_mean"] <= bound]
        assert chosen == allowed.loc[allowed["dice_mean"].idxmax(), "lam"]
        method.max_njd = bound - 1.0
        with pytest.raises(ConfigError, match="max_njd"):
            method.select_lambda(small_dataset.pairs("val"))
    finally:
        method.max_njd = None
        method.select_lambda(small_dataset.pairs("val"))


def test_register_at_another_lambda_leaves_the_chosen_one(trained, pairs):
    method, _ = trained
    p = pairs[0]
    before = method.register(p.fixed, p.moving).flow
    method.register(p.fixed, p.moving, lam=1.0 if method.lam != 1.0 else 0.0)
    assert np.array_equal(method.register(p.fixed, p.moving).flow, before)
    with pytest.raises(ConfigError, match="λ must be in"):
        method.register(p.fixed, p.moving, lam=1.5)


def test_save_and_load_keep_the_chosen_lambda(trained, tmp_path, pairs):
    method, _ = trained
    method.save(tmp_path / "final.pt")
    loaded = create_method("hypermorph", **TINY)
    loaded.load(tmp_path / "final.pt")
    assert loaded.lam == method.lam and loaded.selection == method.selection
    p = pairs[0]
    assert np.array_equal(loaded.register(p.fixed, p.moving).flow, method.register(p.fixed, p.moving).flow)
    voxelmorph = create_method("voxelmorph-m", device="cpu")
    voxelmorph.save(tmp_path / "vxm.pt")
    with pytest.raises(ConfigError, match="holds 'voxelmorph-m'"):
        loaded.load(tmp_path / "vxm.pt")


@pytest.mark.parametrize(
    "options, message",
    [({"lam": 1.5}, "lam must be in"), ({"similarity": "ncc"}, "similarity must be 'mse'"),
     ({"selection_grid": []}, "selection_grid"), ({"sweep_grid": [0.5, 2.0]}, "sweep_grid")],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        create_method("hypermorph", device="cpu", hyper_units=2, **options)


@pytest.mark.slow
def test_run_writes_the_lambda_sweep_and_resumes_without_recomputing(tmp_path):
    config = load_config(
        None, methods=["hypermorph"], profile="smoke", out=str(tmp_path / "run"), max_test_pairs=3,
        method_options={"hypermorph": {"hyper_units": 4, "sweep_grid": [0.0, 0.5, 1.0]}},
    )
    run(config, progress=False)
    sweep_path = tmp_path / "run" / "curves" / "hypermorph_sweep.csv"
    sweep = pd.read_csv(sweep_path)
    assert sorted(sweep["lam"].unique()) == [0.0, 0.5, 1.0]
    assert len(sweep) == 3 * 3 and {"dice", "njd", "lambda_vxm", "subject", "slice"} <= set(sweep.columns)
    assert (tmp_path / "run" / "models" / "hypermorph" / "lambda_selection.csv").exists()
    assert not (tmp_path / "run" / "models" / "hypermorph" / "checkpoint.pt").exists()
    stamp = sweep_path.stat().st_mtime_ns
    result = run(config, progress=False)
    assert result.evaluated == {} and sweep_path.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_larger_lambda_gives_a_smoother_field_after_a_little_training(small_dataset):
    method = create_method("hypermorph", device="cpu", hyper_units=16, epochs=40, batch_size=8, lam=0.5, recalibrate_bn=True)
    method.fit(small_dataset.pairs("train"))
    pair = small_dataset.pairs("test")[0]

    def mean_abs_gradient(lam: float) -> float:
        flow = method.register(pair.fixed, pair.moving, lam=lam).flow
        return float(np.abs(np.diff(flow, axis=1)).mean() + np.abs(np.diff(flow, axis=2)).mean())

    roughness = [mean_abs_gradient(lam) for lam in (0.0, 0.5, 0.9, 1.0)]
    assert all(b <= a * 1.001 for a, b in zip(roughness, roughness[1:])), roughness
    assert roughness[-1] < 0.98 * roughness[0], roughness
