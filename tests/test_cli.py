"""regbench.cli at its own seam: what a new user types and reads (listing methods, --plugin's place, config keys
that belong elsewhere, method_options that define a method the run does not run)."""

from __future__ import annotations

import pytest

from regbench.cli import main
from regbench.config import load_config
from regbench.plan import precheck
from regbench.registry import METHODS, PLUGINS_ENV

PLUGIN = '''
import numpy as np
from regbench import MethodMeta, Registration, register_method


@register_method("cli-zero", MethodMeta(display_name="CLI zero"))
class CliZero:
    """Zero flow, registered by a file given to --plugin."""

    name = "cli-zero"

    def register(self, fixed, moving):
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))
'''


def test_methods_lists_what_each_is_and_how_tagged_ones_are_named(capsys):
    assert main(["methods"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "fields" not in rows and "voxelmorph" not in rows  # named instances only, said so
    assert "layout channel_first|channel_last" in rows["fields.TAG"] and "units voxel|mm|normalised" in rows["fields.TAG"]
    assert "voxelmorph.1e-3" in rows["voxelmorph.VALUE"] and "2-D/3-D, trained" in rows["gsmorph"]
    assert "Identity transform" in rows["initial"] and "Initial" in rows["initial"]


@pytest.mark.parametrize("before", [True, False])
def test_plugin_is_taken_before_or_after_the_command(tmp_path, monkeypatch, capsys, before):
    """`regbench run --plugin f.py` failed with 'unrecognized arguments' and no hint; both places work now."""
    monkeypatch.setenv(PLUGINS_ENV, "")
    plugin = tmp_path / f"cli_plugin_{before}.py"  # a module of its own per case: a second import would be cached
    plugin.write_text(PLUGIN)
    args = ["--plugin", str(plugin), "methods"] if before else ["methods", "--plugin", str(plugin)]
    try:
        assert main(args) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cli-zero "))
        assert "CLI zero" in row and row.endswith("Zero flow, registered by a file given to --plugin.")
    finally:
        if "cli-zero" in METHODS.names():
            METHODS.remove("cli-zero")


def test_a_dataset_option_at_the_top_of_a_config_says_where_it_belongs(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: acdc\nroot: /data/ACDC\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "unknown key 'root' (an option of dataset 'acdc': put it under dataset_options: {root: ...})" in capsys.readouterr().err


def test_a_named_instance_defined_but_not_run_is_warned(tmp_path, caplog):
    config = tmp_path / "c.yaml"
    config.write_text(f"methods: [initial]\nmethod_options:\n  fields.mine: {{folder: {tmp_path}}}\n")
    precheck(load_config(config, profile="smoke"))  # what `regbench run --config` does before any work
    assert "method_options defines fields.mine, which is not among this run's methods (initial): add it to methods to score it" in caplog.text


def test_the_terminal_summary_is_in_table_1s_units():
    """It printed Dice as a fraction and time in seconds while Table 1 prints % and Table 2 ms."""
    import pandas as pd

    from regbench.cli import summary_text

    summary = pd.DataFrame(
        {"method": ["a"], "n_cases": [2], "n_failed": [0], "dice_mean": [0.9557], "hd95_mean": [1.8575], "mse_mean": [0.0019], "njd_mean": [0.7513]}
        | {"time_s_mean": [0.0099], "epochs": pd.array([10], dtype="Int64"), "converged": pd.array([False], dtype="boolean")}
    )
    header, row = summary_text(summary).splitlines()
    assert header.split() == ["method", "n_cases", "n_failed", "Dice", "(%)", "HD95", "(mm)", "MSE", "(×10⁻²)", "NJD", "(%)", "ms/pair", "epochs", "converged"]
    assert row.split() == ["a", "2", "0", "95.57", "1.86", "0.19", "0.75", "9.9", "10", "False"]
