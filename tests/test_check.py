"""check_method: passes on every registered method, and catches a broken plugin."""

import numpy as np
import pytest

from regbench import Registration, check_method, list_methods
from regbench.interface import validate_images

FAST = ["initial", "demons", "demons-fastsym", "syn"]


@pytest.mark.parametrize("name", [m for m in list_methods() if m in FAST])
def test_builtin_methods_conform(name):
    report = check_method(name, profile="smoke")
    assert report.ok, str(report)


def _tagged(name):
    from regbench.registry import METHODS

    return METHODS.meta(name).tagged  # named instances only (fields.TAG, with a folder): tests/test_fields.py


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in list_methods() if m not in FAST and not _tagged(m)])
def test_every_other_registered_method_conforms(name):
    """check-method on every registered method with its smoke options, as a user runs it. Slow by what it
    asserts: a deep method trains six times (fit, the known pair, the determinism retraining; 2-D and 3-D), 25-47 s."""
    from regbench.registry import METHODS

    if (missing := METHODS.missing_extra(name)) is not None:  # tox installs every extra; a bare venv may not
        pytest.skip(missing)
    report = check_method(name, profile="smoke")
    assert report.ok, str(report)


class SwappedChannels:
    """A broken plugin: it shifts the image by columns but reports the flow with channels swapped."""

    name = "swapped"

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        flow = np.zeros((2, *fixed.shape), np.float32)
        flow[1] = 2.0
        from regbench import warp

        return Registration(moved=warp(moving, flow), flow=flow[::-1].copy())


def test_check_method_reports_each_failure_in_one_line():
    report = check_method(SwappedChannels())
    failed = {r.name: r.message for r in report.failures}
    assert "moved agrees with flow" in failed and "they agree if the flow has channels in reverse order (x first)" in failed["moved agrees with flow"]
    assert "identical pair gives ~zero motion" in failed
    assert "rejects images of different shapes" not in failed
    assert all("\n" not in m for m in failed.values())
    assert not report.ok


def test_one_check_runs_by_name_and_a_mistyped_one_is_named(capsys):
    """`regbench check-method M --check NAME`: the chosen checks alone (those reading a registration get one,
    unreported); an unknown name is one error with a did-you-mean."""
    from regbench.check import CHECKS, check_method
    from regbench.cli import main

    report = check_method("initial", only=["consistent", "identity"])
    assert [r.name for r in report.results] == [CHECKS["identity"], CHECKS["consistent"], f"{CHECKS['identity']} (3-D)", f"{CHECKS['consistent']} (3-D)"]
    assert report.ok
    assert main(["check-method", "initial", "--check", "lables"]) == 2
    assert "no check named 'lables' (did you mean 'labels'?)" in capsys.readouterr().err


def test_a_trainable_method_is_checked_with_its_profile_options_validated_once_unless_given():
    """The checks' trainings validate after their last epoch only (no check reads the curve); the rest of the
    options are the profile's, and a val_every the user gives is kept."""
    from regbench.options import resolve_method_options

    report = check_method("voxelmorph-s", only=["name"])
    smoke = resolve_method_options("voxelmorph-s", "smoke", dims=2)
    assert smoke["val_every"] == 1 and report.options["val_every"] == smoke["epochs"] == report.options["epochs"]
    same = set(smoke) - {"val_every", "device"}  # the device as resolved: cpu for auto here
    assert {k: report.options[k] for k in same} == {k: smoke[k] for k in same}
    assert check_method("voxelmorph-s", only=["name"], val_every=1).options["val_every"] == 1
