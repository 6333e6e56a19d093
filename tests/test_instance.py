"""Test-time optimisation (io-gsmorph, io-lambda): the trainer's one step on each pair's flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regbench import create_dataset, create_method
from regbench.metrics import evaluate, mse


@pytest.fixture(scope="module")
def pair():
    return create_dataset("synthetic", n_subjects=4, image_size=64).pairs("test")[0]


def test_test_time_projection_lowers_the_loss_and_raises_dice_on_a_pair(pair):
    method = create_method("io-gsmorph", iterations=40)
    registration = method.register(pair.fixed, pair.moving)
    assert registration.flow.shape == (2, *pair.fixed.shape) and registration.flow.dtype == np.float32
    assert mse(registration.moved, pair.fixed) < 0.5 * mse(pair.moving, pair.fixed)
    assert evaluate(pair, registration)["dice"] > evaluate(pair, create_method("initial").register(pair.fixed, pair.moving))["dice"] + 0.05
    shares = [s for s in method.history if s is not None]
    assert len(method.history) == 40 and all(0.0 <= s <= 1.0 for s in shares)  # the conflict share of each step


def test_it_equals_its_lambda_counterpart_while_the_gradients_do_not_conflict(pair):
    probe = create_method("io-gsmorph", iterations=20)
    probe.register(pair.fixed, pair.moving)
    first_conflict = next(i for i, share in enumerate(probe.history) if share > 0)
    assert first_conflict >= 1  # the first step starts from a zero flow, whose smoothness gradient is 0
    # until the two gradients first conflict the projection leaves g_sim alone: the same steps as λ = 0
    projected = create_method("io-gsmorph", iterations=first_conflict).register(pair.fixed, pair.moving)
    weighted = create_method("io-lambda", iterations=first_conflict, lam=0.0).register(pair.fixed, pair.moving)
    np.testing.assert_array_equal(projected.flow, weighted.flow)
    after = create_method("io-gsmorph", iterations=first_conflict + 1).register(pair.fixed, pair.moving)
    assert not np.array_equal(after.flow, create_method("io-lambda", iterations=first_conflict + 1, lam=0.0).register(pair.fixed, pair.moving).flow)


def test_the_projection_rule_is_the_weighted_sum_at_lambda_0_where_the_gradients_agree():
    from regbench.methods.gradient_surgery import LayerwiseProjection
    from regbench.methods.voxelmorph import WeightedSum

    g_sim = [torch.randn(2, 8, 8), torch.randn(2, 4, 4)]
    g_reg = [0.5 * g + 0.01 * torch.randn_like(g) for g in g_sim]  # agreeing with g_sim in every layer
    update, share = LayerwiseProjection()(g_sim, g_reg)
    assert float(share) == 0.0 and all(torch.equal(u, w) for u, w in zip(update, WeightedSum(0.0)(g_sim, g_reg)[0]))


def test_a_gradient_in_another_memory_layout_is_applied_element_for_element():
    """autograd.grad through grid_sample returns channels-last gradients; the trainer lays them out as their
    parameter before the fused optimiser reads them (a misread once turned a step's sign around)."""
    from regbench.methods.gradient_surgery import LayerwiseProjection
    from regbench.methods.voxelmorph import WeightedSum
    from regbench.trainer import Trainer, TrainSettings

    steps = []
    for combiner in (LayerwiseProjection(), WeightedSum(0.0)):
        weights = torch.nn.Parameter(torch.zeros(1, 2, 6, 5))
        trainer = Trainer(TrainSettings(lr=0.1), combiner, torch.device("cpu"), progress=False)
        optimiser = trainer.make_optimiser([weights])
        target = torch.arange(60.0).reshape(1, 6, 5, 2).permute(0, 3, 1, 2)  # channels-last strides

        def objective(model, moving, fixed, generator, target=target, weights=weights):
            return ((weights - target) ** 2).sum(), (weights**2).sum() * 0.0

        trainer.step(None, [weights], optimiser, objective, None, None, None)
        steps.append(weights.detach().clone())
    np.testing.assert_array_equal(steps[0].numpy(), steps[1].numpy())
    assert (steps[0][target > 0] > 0).all()  # every element stepped towards its target


def test_volumes_register_too():
    pair = create_dataset("synthetic3d", n_subjects=5, image_size=32).pairs("test")[0]
    registration = create_method("io-lambda", iterations=20).register(pair.fixed, pair.moving)
    assert registration.flow.shape == (3, *pair.fixed.shape) and np.isfinite(registration.flow).all()
    assert mse(registration.moved, pair.fixed) < mse(pair.moving, pair.fixed)
