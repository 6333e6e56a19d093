"""Registry: decorator, patterns, close-match errors, double registration, entry-point plugins."""

import subprocess
import sys

import pytest

from regbench import ConfigError, RegistryError, create_method, list_datasets, list_methods, register_method
from regbench.registry import Registry


def test_builtins_are_listed_without_importing_them():
    assert "initial" in list_methods()
    assert "synthetic" in list_datasets()
    assert list_methods("init*") == ["initial"]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(RegistryError, match=r"unknown method 'inital'\. Did you mean 'initial'"):
        create_method("inital")


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match=r"method 'initial' has no option 'iterations'"):
        create_method("initial", iterations=3)


def test_registering_a_name_twice_fails():
    reg = Registry("method", "regbench.test-none", {})
    reg.add("a", lambda: None)
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("a", lambda: None)
    with pytest.raises(RegistryError, match="already registered"):
        register_method("initial")(type("Other", (), {}))


def test_resolve_patterns_keeps_order_and_rejects_unmatched():
    reg = Registry("method", "regbench.test-none", {})
    for n in ("b-1", "b-2", "a"):
        reg.add(n, lambda: None)
    assert reg.resolve("a,b-*") == ["a", "b-1", "b-2"]
    with pytest.raises(RegistryError, match="unknown method 'c-\\*'"):
        reg.resolve("c-*")


def test_paper_names_the_papers_ten_methods_and_is_the_reproduce_profiles_default():
    from regbench.config import RunConfig
    from regbench.registry import METHODS

    assert METHODS.resolve("paper") == [
        "initial",
        "demons",
        "syn",
        "voxelmorph-s",
        "voxelmorph-m",
        "voxelmorph-l",
        "hypermorph",
        "gs-agr",
        "gs-pcgrad",
        "gsmorph",
    ]
    assert METHODS.resolve("voxelmorph-diff,paper")[:2] == ["voxelmorph-diff", "initial"]  # order kept, no repeats
    assert RunConfig(profile="reproduce").methods == ["paper"]
    assert RunConfig(profile="quick").methods == ["*"]
    assert RunConfig(profile="reproduce", methods="*").methods == ["*"]  # named methods win


def test_the_reproduce_profile_trains_gs_agr_twice_as_long_and_a_user_option_still_wins():
    from regbench.config import RunConfig
    from regbench.plan import method_options

    epochs = {name: method_options(name, RunConfig(profile="reproduce"), 2)["epochs"] for name in ("gs-agr", "gs-pcgrad", "gsmorph", "voxelmorph-m")}
    assert epochs == {"gs-agr": 240, "gs-pcgrad": 120, "gsmorph": 120, "voxelmorph-m": 120}
    assert method_options("gs-agr", RunConfig(profile="quick"), 2)["epochs"] == 10
    given = RunConfig(profile="reproduce", method_options={"gs-agr": {"epochs": 30}})
    assert method_options("gs-agr", given, 2)["epochs"] == 30


@pytest.mark.slow
def test_entry_point_plugins_appear_everywhere(with_plugins):
    assert {"slow-initial", "flaky"} <= set(list_methods())
    method = create_method("flaky")  # an entry point naming a class (no decorator)
    assert method.name == "flaky"
    assert create_method("slow-initial").name == "slow-initial"  # a module that registers itself
    out = subprocess.run([sys.executable, "-m", "regbench.cli", "methods"], capture_output=True, text=True, check=True)
    assert "slow-initial" in out.stdout.split()


def test_no_top_level_methods_or_datasets_package_is_installed():
    import importlib.util

    import regbench

    for name in ("methods", "datasets"):
        spec = importlib.util.find_spec(name)
        assert spec is None or "regbench" not in str(spec.origin or ""), f"top-level {name!r} comes from regbench"
    assert regbench.methods.__name__ == "regbench.methods" if hasattr(regbench, "methods") else True


PLUGIN_FILE = """
import numpy as np
from regbench import Registration, register_method
from regbench.interface import validate_images


@register_method("half-shift")
class HalfShift:
    '''Registered by the decorator only, in a file that no package installs.'''

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))
"""


@pytest.mark.slow
def test_a_plugin_file_without_a_package_runs_with_plugin_and_the_unknown_name_says_how(tmp_path):
    """A method registered only with the decorator was invisible to the CLI, and the error did not say why."""
    import os

    import pandas as pd

    plugin = tmp_path / "mine.py"
    plugin.write_text(PLUGIN_FILE)
    env = {key: value for key, value in os.environ.items() if key != "REGBENCH_PLUGINS"}
    cli = [sys.executable, "-m", "regbench.cli"]
    smoke = ["run", "--profile", "smoke", "--max-pairs", "2", "--no-progress", "--methods", "initial,half-shift"]
    unknown = subprocess.run([*cli, *smoke, "--out", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2
    assert "unknown method 'half-shift'" in unknown.stderr and "--plugin MODULE_OR_FILE.py (or $REGBENCH_PLUGINS)" in unknown.stderr
    done = subprocess.run([*cli, "--plugin", str(plugin), *smoke, "--out", str(tmp_path / "b")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "b" / "per_case.csv")
    assert (table[table["method"] == "half-shift"]["status"] == "ok").sum() == 2  # scored in worker processes (plugins run isolated)
    listed = subprocess.run([*cli, "methods"], capture_output=True, text=True, env={**env, "REGBENCH_PLUGINS": str(plugin)})
    assert "half-shift" in listed.stdout
    broken = subprocess.run([*cli, "--plugin", "no_such_module_here", "methods"], capture_output=True, text=True, env=env)
    assert broken.returncode == 2 and broken.stderr.strip().splitlines() == [
        "regbench: error: plugin 'no_such_module_here' (--plugin / $REGBENCH_PLUGINS) cannot be imported: ModuleNotFoundError: No module named 'no_such_module_here'"
    ]
