"""How tables and figures name things: methods' and datasets' display names and the λ families figures join,
read from what runs recorded in their manifests (no method code is imported to draw a report). A method that
ran in other arithmetic than FP32 (a deep method's ``precision``: tf32, bf16) carries it in its name,
"VoxelMorph-m (bf16)"; over runs that differ, every precision found ("(bf16/fp32)")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .metrics import MetricSpec, label_key, spec_of
from .study import DEFAULT_STUDY, Study


@dataclass
class Names:
    methods: dict[str, str] = field(default_factory=dict)  # method -> display name
    datasets: dict[str, str] = field(default_factory=dict)  # dataset -> display name
    families: dict[str, tuple[str, float]] = field(default_factory=dict)  # method -> (family label, its value)
    sweep_parameters: dict[str, tuple[str, str]] = field(default_factory=dict)  # method -> (sweep column, its symbol)
    loss_notes: dict[str, str] = field(default_factory=dict)  # method -> what the training-curve figure says of its losses
    labels: dict[str, str] = field(default_factory=dict)  # label key (column suffix) -> display name

    @classmethod
    def from_manifests(cls, manifests: Sequence[Any], study: Study = DEFAULT_STUDY) -> Names:
        """From :class:`regbench.rundir.Manifest` objects; the first run naming a thing wins."""
        names = cls(datasets=dict(study.published_datasets))
        precisions: dict[str, set[str]] = {}  # method -> the arithmetic each run trained it in
        for manifest in manifests:
            dataset = manifest.fingerprint.get("dataset")
            if dataset is not None and manifest.dataset_display_name:
                names.datasets.setdefault(str(dataset), manifest.dataset_display_name)
            for label in manifest.labels:
                names.labels.setdefault(label_key(label), label)
            for method, display in manifest.display_names().items():
                names.methods.setdefault(method, display)
            for method in manifest.methods:
                precisions.setdefault(method, set()).add(manifest.precision(method))
                info = manifest.method_info(method)
                family = info.get("family")
                if isinstance(family, dict) and "label" in family and "value" in family:
                    names.families.setdefault(method, (str(family["label"]), float(family["value"])))
                sweep = info.get("sweep")
                if isinstance(sweep, dict) and "column" in sweep:
                    names.sweep_parameters.setdefault(method, (str(sweep["column"]), str(sweep.get("symbol", sweep["column"]))))
                if isinstance(info.get("loss_note"), str):
                    names.loss_notes.setdefault(method, info["loss_note"])
        # A method that ran in other arithmetic than FP32 says so in its name, in every table and figure.
        for method, found in precisions.items():
            if found != {"fp32"}:
                names.methods[method] = f"{names.method(method)} ({'/'.join(sorted(found))})"
        return names

    def method(self, name: str) -> str:
        return self.methods.get(name, name)

    def dataset(self, name: str) -> str:
        return self.datasets.get(name, name)

    def metric(self, column: str) -> MetricSpec:
        """A per-case column's spec, per-label columns headed by the label's recorded display name."""
        return spec_of(column, self.labels)

    def family_members(self, methods: Sequence[str]) -> dict[str, list[str]]:
        """Family label → its methods among ``methods``, ordered by their declared value."""
        out: dict[str, list[str]] = {}
        for method in sorted((m for m in methods if m in self.families), key=lambda m: self.families[m][1]):
            out.setdefault(self.families[method][0], []).append(method)
        return out
