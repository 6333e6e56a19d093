"""Name → factory registries for methods and datasets, with lazy built-ins and entry-point plugins.

Built-in plugins are imported only when one of their names is asked for (importing torch or ANTs to list
names would cost seconds). Third-party packages add names through the entry-point groups
``regbench.methods`` and ``regbench.datasets``; an entry point may point at a module that registers with the
decorator, or at a factory object, which is then registered under the entry point's name.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import fnmatch
import functools
import importlib
import inspect
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, cast

from .errors import ConfigError, MissingExtraError, RegbenchError, RegistryError
from .interface import TRAINING_HOOKS, Dataset, has_training_hooks
from .study import DEFAULT_STUDY, STUDIES


@dataclass(frozen=True)
class MethodMeta:
    """What a method plugin declares about itself, given once at registration
    (``@register_method("name", MethodMeta(...))``). Generic code reads these fields, never the method's code.

    A plugin registered without one is described by the same-named attributes of its factory (a class's class
    attributes), each optional: the declarations third-party plugins made before this class existed."""

    display_name: str | None = None  # how tables and figures name it (default: the registered name)
    trainable: bool = False  # has fit/save/load and a model directory (regbench.interface.TrainableMethod)
    requires: tuple[str, ...] = ()  # distributions it needs beyond regbench's own; missing ones leave it out of patterns
    install_hint: str | None = None  # the command that installs them
    option_names: Collection[str] | None = None  # keyword options it takes (None: its factory's signature says)
    default_options: Mapping[str, Any] = field(default_factory=dict)  # bound into the run directory
    # Its own settings per profile (training budget): called (profile), or (profile, dims=D) where it takes dims.
    profile_options: Callable[..., dict[str, Any]] | None = None
    parallel_safe: bool = True  # its cases may run in several worker processes at once
    time_measured: bool = True  # False: its registration time says nothing of the tool (read from files): n/a in Table 2
    isolate_cases: bool | None = None  # run each case in a worker even with --jobs 1 (None: plugins yes, built-ins no)
    dims: tuple[int, ...] = (2,)  # image dimensions it registers
    # Training seconds per epoch relative to VoxelMorph's: trainings that run side by side start longest first
    # (epochs × this), so that the longest one is not left running alone at the end.
    epoch_cost: float = 1.0
    family: tuple[str, float] | None = None  # (label, value): figures join a family's points in the order of value
    sweep: tuple[str, str] | None = None  # (column, symbol) of the parameter its ``sweep(pairs)`` varies
    loss_note: str | None = None  # what the training-curve figure says of its losses, when they are on another scale
    # Named instances only, as timm's ``name.tag`` variants: ``NAME.TAG`` is a row of its own built by this factory
    # with that name's method_options (the fields of one tool's folder); patterns never match the bare name.
    tagged: bool = False
    # A tagged base whose tag is a number: each NAME.TAG is a member of ``family`` at value float(TAG)
    # (voxelmorph.1e-3: VoxelMorph at λ = 0.001), and the factory receives the tag (a ``tag`` parameter).
    family_value_from_tag: bool = False


@dataclass(frozen=True)
class DatasetMeta:
    """What a dataset plugin declares about itself at registration."""

    display_name: str | None = None
    dims: tuple[int, ...] = (2,)
    # Its labels: display name → value in its label maps (columns dice_<name>, hd95_<name>); {}: none; None: not
    # declared (scored on regbench.metrics.UNDECLARED_LABELS, the default study's).
    labels: Mapping[str, int] | None = None
    requires: tuple[str, ...] = ()
    install_hint: str | None = None
    option_names: Collection[str] | None = None
    # Metric conventions its runs score beside the strict ones unless the run says otherwise (RunConfig.conventions).
    conventions: tuple[str, ...] = ()
    # Group attributes of its test pairs (Pair.groups) that are levels of one quantity, numbers as text (name →
    # the quantity as a figure's axis names it): the report tabulates and draws each metric against them (stress).
    levels: Mapping[str, str] | None = None


_ATTRIBUTE_FIELDS = (
    "display_name",
    "requires",
    "install_hint",
    "option_names",
    "default_options",
    "profile_options",
    "parallel_safe",
    "time_measured",
    "isolate_cases",
    "dims",
)


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    """Top-level module → distributions, scanned once per process (every installed distribution's files)."""
    from importlib import metadata

    return metadata.packages_distributions()


def _dims_text(dims: Collection[int]) -> str:
    return " or ".join(f"{d}-D" for d in sorted(dims))


def _meta_from_attributes(factory: Any, kind: type) -> Any:
    """The metadata a factory's attributes declare (plugins that give no MethodMeta/DatasetMeta)."""
    if kind is DatasetMeta:
        return DatasetMeta(
            display_name=getattr(factory, "display_name", None),
            requires=tuple(getattr(factory, "requires", ())),
            install_hint=getattr(factory, "install_hint", None),
        )
    values: dict[str, Any] = {}
    for name in _ATTRIBUTE_FIELDS:
        value = getattr(factory, name, None)
        if value is not None and not (inspect.isclass(factory) and isinstance(value, property)):
            values[name] = value() if name == "option_names" and callable(value) else value
    for name in ("requires", "dims"):
        if name in values:
            values[name] = tuple(values[name])
    values["trainable"] = has_training_hooks(factory)
    return MethodMeta(**values)


class Registry:
    """One kind of plugin (methods or datasets): names, their factories and where they come from."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str], aliases: dict[str, list[str]] | None = None, meta_type: type = MethodMeta) -> None:
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)  # name -> module that registers it on import
        self.meta_type = meta_type  # MethodMeta or DatasetMeta
        self.aliases = dict(aliases or {})  # a name for a list of names (``paper``: the paper's ten methods)
        self._factories: dict[str, Callable[..., Any]] = {}
        self._meta: dict[str, tuple[Any, Any]] = {}  # name -> (factory, its metadata)
        self._origins: dict[str, str] = {}
        self._providers: dict[str, str] = {}  # name -> "distribution version" for entry-point plugins
        self._entry_points: dict[str, Any] | None = None
        self._declared: set[str] = set()  # names registered with metadata (not read from attributes)
        # Built-ins' declarations read without importing their modules (regbench.catalogue, the dry run's)
        self._declarations: Mapping[str, Any] | None = None

    def use_declarations(self, declarations: Mapping[str, Any] | None) -> None:
        """While set (:func:`regbench.catalogue.declarations_only`), a built-in not imported yet is described by
        its entry there (``meta``, ``parameters``, ``accepted``) instead of by importing its module; None ends it."""
        self._declarations = declarations

    def _declaration(self, name: str) -> Any:
        """The catalogue's entry for a built-in not imported yet, while declarations are in use; else None."""
        if self._declarations is None:
            return None
        name = (self.tagged_base(name) or name) if "." in name else name  # a named instance declares its base's
        if name in self._factories or name not in self._builtins:
            return None
        return self._declarations.get(name)

    # -- registration -----------------------------------------------------------------------------
    def register(self, name: str, meta: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@register_method("name", MethodMeta(...))`` on a class or factory function."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, factory, meta)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., Any], meta: Any = None) -> None:
        if not name or name != name.strip().lower() or "," in name:
            raise RegistryError(f"{self.kind} name {name!r} must be non-empty, lower-case and contain no comma")
        origin = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"
        if name in self._factories:
            raise RegistryError(f"{self.kind} {name!r} is already registered (by {self._origins[name]}); cannot register it again for {origin}")
        if meta is not None and not isinstance(meta, self.meta_type):
            raise RegistryError(f"{self.kind} {name!r}: metadata must be a {self.meta_type.__name__}, got {type(meta).__name__}")
        self._factories[name] = factory
        self._origins[name] = origin
        if meta is not None:
            self._meta[name] = (factory, meta)
            self._declared.add(name)

    def remove(self, name: str) -> None:
        """Forget a registered name (tests, interactive sessions); built-ins and entry points load again on use."""
        for table in (self._factories, self._origins, self._providers, self._meta):
            table.pop(name, None)
        self._declared.discard(name)

    def tagged_base(self, name: str) -> str | None:
        """For ``BASE.TAG`` where BASE declares ``tagged``: BASE; else None."""
        base, dot, tag = name.partition(".")
        if not dot or not tag or base not in self.names():
            return None
        return base if self._is_tagged(base) else None

    def meta(self, name: str) -> Any:
        """What ``name`` declares (its MethodMeta / DatasetMeta, or one read from its factory's attributes); a
        tagged instance ``BASE.TAG`` declares BASE's, with the tag in its display name."""
        if (base := self.tagged_base(name)) is not None:
            meta = self.meta(base)
            tag = name.partition(".")[2]
            changes: dict[str, Any] = {"display_name": f"{meta.display_name or base} ({tag})"}
            if isinstance(meta, MethodMeta) and meta.family_value_from_tag and meta.family is not None:
                try:
                    changes["family"] = (meta.family[0], float(tag))
                except ValueError:
                    raise ConfigError(f"{self.kind} {name!r}: its tag {tag!r} must be a number, the value it is run at (e.g. {base}.1e-3)") from None
            return dataclasses.replace(meta, **changes)
        if (declared := self._declaration(name)) is not None:
            return declared.meta
        factory = self.get(name)
        cached = self._meta.get(name)
        if cached is None or cached[0] is not factory:
            cached = self._meta[name] = (factory, _meta_from_attributes(factory, self.meta_type))
        return cached[1]

    # -- discovery --------------------------------------------------------------------------------
    def _plugin_entry_points(self) -> dict[str, Any]:
        load_env_plugins()  # modules named by --plugin / $REGBENCH_PLUGINS register themselves on import
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def names(self) -> list[str]:
        """Every known name, built-in or plugin, without importing any plugin (but those of $REGBENCH_PLUGINS)."""
        entry_points = self._plugin_entry_points()  # first: it imports $REGBENCH_PLUGINS, which register names
        return sorted(set(self._builtins) | set(self._factories) | set(entry_points))

    def list(self, pattern: str = "*") -> list[str]:
        """Names matching a shell-style pattern (``voxelmorph-*``); several patterns may be comma-separated."""
        patterns = [p.strip() for p in pattern.split(",") if p.strip()] or ["*"]
        return [n for n in self.names() if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    def resolve(
        self, spec: str | builtins.list[str], skipped: dict[str, str] | None = None, dims: Collection[int] | None = None, dataset: str = "the dataset"
    ) -> builtins.list[str]:
        """Expand comma-separated names, aliases and patterns, keeping order; an unmatched entry is an error.

        A pattern (``*``, ``voxelmorph-*``) or an alias (``paper``) leaves out names whose optional
        dependencies are missing and, with ``dims`` (the image dimensions of ``dataset``), methods whose declared
        ``MethodMeta.dims`` share none of them; with ``skipped`` given, each is recorded there with why. A name
        given explicitly is kept when its extra is missing (building it then raises :class:`MissingExtraError`),
        and refused at once (ConfigError) when its dims do not fit."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        out: builtins.list[str] = []

        def add(names: Iterable[str], explicit: bool) -> None:
            for name in names:
                why = None if explicit else self.missing_extra(name)
                if why is None and dims is not None and (declared := self.meta(name).dims) and not set(declared) & set(dims):
                    why = f"{self.kind} {name!r} registers {_dims_text(declared)} images (its declared dims); {dataset} is {_dims_text(dims)}"
                    if explicit:
                        raise ConfigError(f"{why}: leave it out of --methods")
                if why is not None:
                    if skipped is not None:
                        skipped[name] = why
                elif name not in out:
                    out.append(name)

        for item in (i.strip() for i in items):
            if not item:
                continue
            if any(c in item for c in "*?["):
                matched = self.list(item)
                if not matched:
                    raise RegistryError(self._unknown_message(item))
                add([m for m in matched if not self._is_tagged(m)], explicit=False)
            elif item in self.names() and self._is_tagged(item):
                raise ConfigError(f"{self.kind} {item!r} has named instances only: name one as {item}.TAG, with its options in method_options")
            elif item in self.names() or self.tagged_base(item) is not None:
                add([item], explicit=True)
            elif item in self.aliases:
                add(self.aliases[item], explicit=False)
            else:
                raise RegistryError(self._unknown_message(item))
        return out

    def _is_tagged(self, name: str) -> bool:
        return self.meta_type is MethodMeta and bool(self.meta(name).tagged)

    def missing_extra(self, name: str) -> str | None:
        """Why ``name`` cannot be built here (a distribution in its factory's ``requires`` is not installed),
        with the pip command that fixes it (its ``install_hint``); None when it can. Importing the plugin
        module itself stays cheap: plugins import their optional packages only when built."""
        from importlib import metadata

        def installed(distribution: str) -> bool:
            try:
                metadata.version(distribution)
                return True
            except metadata.PackageNotFoundError:
                return False

        meta = self.meta(name)
        absent = [dist for dist in meta.requires if not installed(dist)]
        if not absent:
            return None
        hint = meta.install_hint or f"pip install {' '.join(absent)}"
        return f"{self.kind} {name!r} needs {', '.join(absent)}, which is not installed: {hint}"

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}. A {self.kind} registered in your own "
            f"module is loaded with --plugin MODULE_OR_FILE.py (or ${PLUGINS_ENV}); an installed package declares an "
            f"entry point in group {self.group} (docs/plugin-guide.md)."
        )

    def get(self, name: str) -> Callable[..., Any]:
        """The factory for ``name``, importing its built-in module or entry point on first use.

        A module that fails to import, or an entry point whose module registers other names, is a
        RegistryError naming the module and what it registered instead."""
        load_env_plugins()
        if (base := self.tagged_base(name)) is not None:
            return self.get(base)
        if name not in self._factories:
            before = set(self._factories)
            source = ""
            try:
                if name in self._builtins:
                    source = f"module {self._builtins[name]}"
                    importlib.import_module(self._builtins[name])
                elif name in self._plugin_entry_points():
                    ep = self._plugin_entry_points()[name]
                    source = f"entry point {name!r} = {ep.value!r} (group {self.group})"
                    loaded = ep.load()
                    if ep.dist is not None:
                        self._providers[name] = f"{ep.dist.name} {ep.dist.version}"
                    if name not in self._factories and callable(loaded) and not inspect.ismodule(loaded):
                        self.add(name, loaded)
            except RegistryError:
                raise
            except Exception as exc:  # ImportError, or anything the plugin's module raises on import
                raise RegistryError(f"{self.kind} {name!r} cannot be loaded: {source} failed to import ({type(exc).__name__}: {exc})") from None
            if name not in self._factories:
                if name in self.names():
                    added = sorted(set(self._factories) - before)
                    instead = f"; it registered {', '.join(repr(a) for a in added)} instead" if added else "; it registered nothing"
                    raise RegistryError(
                        f"{self.kind} {name!r} is listed by {source or 'a plugin'} but was not registered under that name{instead}. "
                        "An entry point's name must equal the name the module registers."
                    )
                raise RegistryError(self._unknown_message(name))
        return self._factories[name]

    def summary(self, name: str) -> str:
        """What ``name`` is, in one line: the first paragraph of its factory's docstring (where its plugin says it)."""
        doc = inspect.getdoc(self.get(name)) or ""
        return " ".join(doc.split("\n\n", 1)[0].split())

    def option_names(self, name: str) -> set[str] | None:
        """The keyword options ``name``'s factory takes, or None where it does not say."""
        if (declared := self._declaration(name)) is not None:
            return None if declared.accepted is None else set(declared.accepted)
        return accepted_options(self.get(name), self.meta(name))

    def parameters(self, name: str) -> set[str]:
        """The keyword parameters ``name``'s factory names in its signature (:func:`factory_parameters`)."""
        if (declared := self._declaration(name)) is not None:
            return set(declared.parameters)
        return factory_parameters(self.get(name))

    def check_option_names(self, name: str, options: Collection[str]) -> None:
        """An option ``name`` does not take is one ConfigError naming it, with a did-you-mean (nothing built)."""
        accepted = self.option_names(name)
        if accepted is not None:
            unknown = sorted(set(options) - accepted)
            if unknown:
                close = {u: difflib.get_close_matches(u, sorted(accepted), n=1) for u in unknown}
                hints = "; ".join(f"{u!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for u, c in close.items())
                raise ConfigError(f"{self.kind} {name!r} has no option {hints}. Options: {', '.join(sorted(accepted)) or 'none'}.")

    def create(self, name: str, **options: Any) -> Any:
        """Build ``name`` with keyword options; an unknown option or a value the factory rejects is a
        ConfigError naming the method and the option."""
        factory = self.get(name)
        if (missing := self.missing_extra(name)) is not None:
            raise MissingExtraError(missing)
        self.check_option_names(name, options)
        tagged = self.tagged_base(name) is not None
        tag = name.partition(".")[2] if tagged else None
        extra = {"tag": tag} if tag is not None and _takes_tag(factory) else {}
        if extra:
            self.meta(name)  # a tag that is not what the base needs is one error before anything is built
        try:
            obj = factory(**options, **extra)
        except RegbenchError:
            raise  # already names the file, key or value
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.kind} {name!r} rejects its options {options!r}: {type(exc).__name__}: {exc}") from None
        if getattr(obj, "name", None) in (None, "") or tagged:
            try:
                obj.name = name
            except AttributeError:
                pass
        self._check_object(name, factory, obj)
        return obj

    def _check_object(self, name: str, factory: Callable[..., Any], obj: Any) -> None:
        """The object a factory built against what its kind needs and what its metadata declares."""
        if self.meta_type is DatasetMeta:
            if not isinstance(obj, Dataset):
                raise RegistryError(f"dataset {name!r}: its factory returned {type(obj).__name__}, which has no pairs(split) (regbench.interface.Dataset)")
            return
        if not callable(getattr(obj, "register", None)) and not callable(getattr(obj, "register_pair", None)):
            raise RegistryError(
                f"method {name!r}: its factory returned {type(obj).__name__}, which has neither register(fixed, moving) nor register_pair(pair)"
            )
        declared, has = self.meta(name).trainable, has_training_hooks(obj)
        if declared == has:
            return
        if name in self._declared:
            raise RegistryError(
                f"method {name!r} declares trainable={declared} in its MethodMeta, but its object "
                f"{'has' if has else 'lacks'} {', '.join(TRAINING_HOOKS)}: make the declaration and the object agree"
            )
        # Declared by attributes only: a factory function's class attributes cannot say; the object it built does.
        self._meta[name] = (factory, dataclasses.replace(self.meta(name), trainable=has))

    def display_name(self, name: str) -> str:
        """How tables print ``name``: its declared display name, else the name."""
        text = self.meta(name).display_name
        return text if isinstance(text, str) and text else name

    def provider(self, name: str) -> str | None:
        """The distribution (and version) that provides ``name``: the entry point's, or the one that ships the
        factory's top-level module (regbench for built-ins); None for a method defined in a script."""
        if name in self._providers:
            return self._providers[name]
        module = getattr(self._factories.get(name), "__module__", "") or ""
        top = module.split(".")[0]
        from importlib import metadata

        if top == "regbench":  # a built-in: no scan of every installed distribution's files (0.6 s per process)
            dists = ["regbench"]
        else:
            try:
                dists = _packages_distributions().get(top, [])
            except Exception:  # pragma: no cover - broken metadata of some other package
                dists = []
        for dist in dists:
            try:
                return f"{dist} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
        return None


def _takes_tag(factory: Callable[..., Any]) -> bool:
    """Whether a tagged base's factory takes its instance's tag (a parameter ``tag``)."""
    try:
        return "tag" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def factory_parameters(factory: Callable[..., Any]) -> set[str]:
    """The keyword parameters a factory's signature names (``seed``, ``device``: what a run passes where taken)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}


def accepted_options(factory: Callable[..., Any], meta: Any) -> set[str] | None:
    """Keyword names a factory takes: its declared ``option_names`` where it declares them, else its signature;
    None where it takes **kwargs without declaring them (then it checks them itself)."""
    declared = meta.option_names
    if declared is not None:
        return set(declared)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return factory_parameters(factory)


METHODS = Registry(
    "method",
    "regbench.methods",
    {
        "initial": "regbench.methods.initial",
        "demons": "regbench.methods.demons",
        "demons-fastsym": "regbench.methods.demons",
        "syn": "regbench.methods.syn",
        "voxelmorph": "regbench.methods.voxelmorph",  # tagged: voxelmorph.<λ>, one row per λ (a λ grid)
        "voxelmorph-s": "regbench.methods.voxelmorph",
        "voxelmorph-m": "regbench.methods.voxelmorph",
        "voxelmorph-l": "regbench.methods.voxelmorph",
        "hypermorph": "regbench.methods.hypermorph",
        "gs-agr": "regbench.methods.gradient_surgery",
        "gs-pcgrad": "regbench.methods.gradient_surgery",
        "gsmorph": "regbench.methods.gradient_surgery",
        # Beyond the paper; elastix, FireANTs, Greedy, DIPY, ConvexAdam and the GradICON models need an extra (see each module). Tables list built-ins that are
        # not in the study after its methods, in this order.
        "elastix-bspline": "regbench.methods.elastix",
        "fireants-syn": "regbench.methods.fireants",
        "greedy": "regbench.methods.greedy",
        "dipy-syn": "regbench.methods.dipy_syn",
        "convexadam": "regbench.methods.convexadam",
        "unigradicon": "regbench.methods.unigradicon",  # tagged: unigradicon.random, or a tag with weights: PATH
        "multigradicon": "regbench.methods.unigradicon",
        "voxelmorph-diff": "regbench.methods.voxelmorph",
        "io-gsmorph": "regbench.methods.instance",  # test-time optimisation, GSMorph's projection (beyond the paper)
        "io-lambda": "regbench.methods.instance",  # its λ counterpart
        "fields": "regbench.methods.fields",  # tagged: fields.TAG, one row per folder of fields
    },
    aliases={study.alias: list(study.methods) for study in STUDIES.values() if study.alias},
)
DATASETS = Registry(
    "dataset",
    "regbench.datasets",
    {
        "synthetic": "regbench.datasets.synthetic",
        "synthetic3d": "regbench.datasets.synthetic3d",
        "acdc": "regbench.datasets.acdc",
        "mnm": "regbench.datasets.mnm",
        "acdc3d": "regbench.datasets.acdc",
        "mnm3d": "regbench.datasets.mnm",
        "files": "regbench.datasets.files",  # your own pairs, listed in a YAML or CSV file (--root LIST)
        "learn2reg": "regbench.datasets.learn2reg",  # a Learn2Reg task folder (--root TASK)
    },
    meta_type=DatasetMeta,
)


def register_method(name: str, meta: MethodMeta | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a method factory (a class or function returning an object with ``register(fixed, moving)``) with
    what it declares about itself."""
    return METHODS.register(name, meta)


def register_dataset(name: str, meta: DatasetMeta | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a dataset factory (returning an object with ``pairs(split)``)."""
    return DATASETS.register(name, meta)


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.list(pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.list(pattern)


def create_method(name: str, **options: Any) -> Any:
    return METHODS.create(name, **options)


#: Comma-separated modules (importable names or paths to .py files) imported before any name is looked up, in
#: this process and in its worker processes (which inherit the environment): plugins without an installed
#: package. ``regbench --plugin`` adds to it.
PLUGINS_ENV = "REGBENCH_PLUGINS"
_loaded_plugins: set[str] = set()


def load_plugins(specs: Iterable[str]) -> None:
    """Import each module (``package.module`` or ``path/to/file.py``) once; its decorators register its names.
    One that cannot be imported is a RegistryError naming it."""
    import os
    import sys
    from pathlib import Path

    for spec in (s.strip() for s in specs):
        if not spec or spec in _loaded_plugins:
            continue
        _loaded_plugins.add(spec)  # before importing: a module that looks names up must not import itself again
        try:
            if spec.endswith(".py"):
                path = Path(spec).expanduser().resolve()
                if not path.is_file():
                    raise FileNotFoundError(f"no such file {path}")
                # Imported by its name from its folder, here and (PYTHONPATH) in worker processes: a method object
                # sent to a worker is unpickled by importing its module by name.
                folder = str(path.parent)
                if folder not in sys.path:
                    sys.path.insert(0, folder)
                if folder not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
                    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH", "")]))
                importlib.import_module(path.stem)
            else:
                importlib.import_module(spec)
        except RegbenchError:
            raise
        except Exception as exc:
            _loaded_plugins.discard(spec)
            raise RegistryError(f"plugin {spec!r} (--plugin / ${PLUGINS_ENV}) cannot be imported: {type(exc).__name__}: {exc}") from None


def load_env_plugins() -> None:
    """The modules of ``$REGBENCH_PLUGINS``, each imported once per process."""
    import os

    load_plugins(os.environ.get(PLUGINS_ENV, "").split(","))


def meta_of(method: Any) -> MethodMeta:
    """The metadata of a method object: its registered name's, else what its class's attributes declare (an
    object built outside the registry, e.g. handed to ``check_method``)."""
    name = getattr(method, "name", None)
    if isinstance(name, str) and (name in METHODS._factories or METHODS.tagged_base(name) is not None):  # fields.TAG too
        return cast(MethodMeta, METHODS.meta(name))
    return cast(MethodMeta, _meta_from_attributes(type(method), MethodMeta))


def is_trainable(method: Any) -> bool:
    """Whether the runner trains ``method``: the ``MethodMeta.trainable`` its registered name declares (the
    registry checked that the object agrees), else, for an object built outside the registry, whether it has
    fit, save and load."""
    name = getattr(method, "name", None)
    if isinstance(name, str) and name in METHODS._factories:
        return bool(METHODS.meta(name).trainable)
    return has_training_hooks(method)


def create_dataset(name: str, **options: Any) -> Any:
    return DATASETS.create(name, **options)


def method_sort_key(name: str) -> tuple[int, float, str]:
    """The study's order first, then regbench's other built-ins, then anything else alphabetically; a built-in's
    instances with a number for a tag (``voxelmorph.1e-4``, ``voxelmorph.1e-3``, …) in its place, by that number.
    Read from the name alone: reports sort without importing any method's code."""
    order = list(DEFAULT_STUDY.methods) + [m for m in METHODS._builtins if m not in DEFAULT_STUDY.methods]
    if name in order:
        return (order.index(name), 0.0, "")
    base, _, tag = name.partition(".")
    if base in order:
        try:
            return (order.index(base), float(tag), name)
        except ValueError:
            pass
    return (len(order), 0.0, name)
