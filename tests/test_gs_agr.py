"""GS-Agr's update against the formulas written out here, and one option resolution for run, train,
check-method and perf."""

from __future__ import annotations

import json

import pytest
import torch

from regbench import create_method
from regbench.cli import main
from regbench.errors import ConfigError
from regbench.methods.gradient_surgery import AgreementRandom
from regbench.registry import METHODS

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
    assert all(options == built["run"] for options in built.values()), built
