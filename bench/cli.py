"""The ``regbench`` command line. Every subcommand's --help is the reference; README quotes it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .check import CHECKS
from .config import COMPILE_MODES, DEFAULT_NJD_BUDGET, PRECISIONS, PROFILES, load_config, parse_dataset_options, parse_seeds
from .errors import ConfigError, RegbenchError
from .report_options import LAYOUTS, ReportOptions
from .study import DEFAULT_STUDY

log = logging.getLogger("regbench")


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with RunConfig keys (flags given here override it)")
    p.add_argument("--dataset", help="dataset name (default: synthetic)")
    p.add_argument(
        "--root", help="dataset folder, for datasets read from disk (acdc, mnm and their volumes acdc3d, mnm3d; or $REGBENCH_ACDC_ROOT / $REGBENCH_MNM_ROOT)"
    )
    p.add_argument(
        "--profile",
        choices=list(PROFILES),
        metavar="{" + ",".join(PROFILES) + "}",
        help="data size and training budget (default: quick); each is described under 'profiles' below",
    )
    p.add_argument(
        "--dataset-option",
        action="append",
        metavar="KEY=VALUE",
        dest="dataset_option",
        help="a dataset option over the profile's, the value read as YAML, e.g. --dataset-option motion=1.4 (repeat for more; "
        "each dataset's options: docs/datasets.md)",
    )
    p.add_argument("--out", help="run directory (default: results/DATASET-PROFILE)")
    p.add_argument("--refresh", action="store_true", help="prepare the dataset's pairs from its files again, ignoring its cache (acdc, mnm, acdc3d, mnm3d)")
    p.add_argument("--seed", type=int, help="global seed (default 0)")
    p.add_argument("--device", help="auto (default: CUDA when available) | cpu | cuda[:N]")
    p.add_argument(
        "--seeds",
        help="training seeds, e.g. 0,1,2: each trainable method is trained and evaluated once per seed "
        "(classical methods once); default: the profile's (tradeoff: 0,1,2), else once, with the method's own seed (3407 for the deep methods)",
    )


PROFILES_EPILOG = "profiles:\n" + "\n".join(
    textwrap.fill(p.description, width=100, initial_indent=f"  {p.name:<11}", subsequent_indent=" " * 13) for p in PROFILES.values()
)


RUN_DESCRIPTION = textwrap.fill(
    "Run methods on a dataset's test split. Finished cases are stored as they finish; "
    "the same command again resumes and retries failed cases (the first failures' reasons are printed). Other "
    "settings into the same --out are refused where a method has scored cases under its old ones (a method "
    "without training that scored none takes the new ones), and so is a fields case whose file changed since it "
    "was scored; a second run while one holds the directory (RUN/lock.json) is refused. A case whose worker dies or "
    "that exceeds case_timeout_s (default 900 s) is stored as failed and retried by the next run. Trained "
    "methods whose training did not converge are flagged (warning, Table 1 ‡). Exit status: 0; 1 if a method "
    "could not run, none of its cases succeeded or most of its flows disagree with its moved images; 2 for bad input; "
    "130 after Ctrl-C; 143 after SIGTERM.",
    width=100,
)


REPORT = ReportOptions()  # the report's defaults, which --help states


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regbench",
        description="Benchmark deformable image registration methods (reproduces GSMorph, MICCAI 2023).",
    )
    parser.add_argument("--version", action="version", version=f"regbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (tracebacks of failed cases)")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers methods or datasets (package.module or path/to/file.py; repeatable; "
        "also $REGBENCH_PLUGINS, comma-separated), for plugins without an installed package",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="run (or resume) a benchmark; writes per_case.csv, summary.csv, manifest.json and report/",
        description=RUN_DESCRIPTION,
        epilog=PROFILES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_arguments(p)
    p.add_argument(
        "--methods",
        help="comma-separated names, patterns or 'paper' (the paper's ten), e.g. 'initial,voxelmorph-*' "
        "(default: the profile's: 'paper' for reproduce, all for the others)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        help="worker processes for the cases (default 1; -1: all cores), and as many CPU trainings at once, each in its own "
        "process with the threads divided among them (YAML parallel_trainings: 1 keeps one at a time; on a GPU, as many as "
        "its free memory holds); with --backend dask --cluster local, the LocalCluster's workers",
    )
    p.add_argument(
        "--backend",
        choices=["joblib", "dask"],
        help="joblib: processes on this machine (default); dask: a "
        'dask.distributed cluster (pip install "regbench[dask]"): --cluster, --scheduler or --scheduler-file',
    )
    p.add_argument(
        "--cluster",
        choices=["local", "slurm"],
        help="with --backend dask: start a LocalCluster (default) or SLURM jobs through dask-jobqueue (pools in the YAML's slurm: {cpu: {...}, gpu: {...}})",
    )
    p.add_argument("--scheduler", help="with --backend dask: address of a running scheduler, e.g. tcp://host:8786")
    p.add_argument("--scheduler-file", dest="scheduler_file", help="with --backend dask: a running scheduler's JSON file")
    p.add_argument("--max-pairs", type=int, dest="max_test_pairs", help="evaluate only the first N test pairs")
    p.add_argument(
        "--keep-flows",
        nargs="?",
        const=True,
        metavar="METHODS",
        dest="keep_flows",
        help="keep every scored case's flow (RUN/flows/METHOD/CASE_ID.npz, float32, the first seed's) for `regbench export`: "
        "every method, or the comma-separated METHODS (names or patterns). On a run that has scored cases, the same "
        "command with this flag computes only the missing flows (trained methods from their saved model)",
    )
    p.add_argument(
        "--conventions",
        help="also score these metric conventions, in columns (l2r_...) and a table of their own: learn2reg (the Learn2Reg kit's "
        "DSC, HD95 in voxels, SDlogJ of log(J+3), spline TRE; LUMIR's NDV) (default: the dataset's: learn2reg on Learn2Reg tasks)",
    )
    p.add_argument("--retrain", action="store_true", help="train deep methods again even if the run holds a final model")
    p.add_argument(
        "--retrain-per-level",
        dest="retrain_per_level",
        action="store_true",
        default=None,
        help="where the test pairs carry a declared level (the synthetic heart's motion with test_motion, as in --profile "
        "stress): train each trained method again at each level value, every split drawn at it, and score it on that "
        "value's pairs (a run per value in RUN/retrained/LEVEL-VALUE/); the stress table adds a row 'METHOD (retrained per level)'",
    )
    p.add_argument(
        "--no-sweep",
        dest="sweep",
        action="store_false",
        default=None,
        help="skip parameter sweeps on the test split (HyperMorph's λ curve, curves/METHOD_sweep.csv)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the report at the end of the run draws its figures (default: yes, unless the config says "
        "figures: false or $REGBENCH_FIGURES=0); without them it writes tables and statistics, and `regbench report "
        "RUN` draws them later",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the run's plan and exit: the data's facts (dims, spacing, labels, split sizes), each method with its "
        "options resolved for the data's dimension, what is stored and what a run would compute (with an estimate "
        "from the run directory's own timings); nothing is built, computed or written",
    )

    p = sub.add_parser(
        "train",
        help="train one deep method on the train split into RUN/models/METHOD/ (resumes)",
        description="Train (or resume training of) one trainable method; the same run directory then evaluates it without retraining.",
        epilog=PROFILES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", help="the trainable method to train (see `regbench methods`)")
    _add_run_arguments(p)
    p.add_argument("--retrain", action="store_true", help="train again even if final.pt exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "report",
        help="write tables, statistics and figures of run directories (no registration is recomputed)",
        description="Regenerate RUN/report/ from per_case.csv and the run's saved curves and examples: "
        "table1.tex/.md/.csv (Table 1: Dice %, HD95 mm, MSE x1e-2, NJD % as mean±std, best in bold, "
        "dagger = differs from the first --against method, paired Wilcoxon + Holm over the subjects, each the mean over "
        "its pairs and seeds; fewer than 6 subjects: too few to test, nothing marked), table2.tex/.csv "
        "(parameters, ms per pair, epochs and minutes of training), stats.csv (with Hodges-Lehmann differences and "
        "bootstrap intervals), ranks.csv (how often each method takes each rank over bootstrap resamples of the "
        "subjects), friedman.csv and figures/*.png|pdf. Several run "
        "directories (e.g. ACDC and M&M) make one column group per dataset; runs of one dataset are merged "
        "when their settings agree (each case counted once) and refused otherwise. Double dagger: training "
        "did not converge (validation Dice still rising over the last quarter by > 0.5 points and > 2 standard errors). With several "
        "training seeds, numbers are over pairs of the per-pair mean over seeds, [+-s] the seeds' spread.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (the folders holding per_case.csv); several are merged")
    p.add_argument("--out", help="output folder (default: the first RUN_DIR/report)")
    p.add_argument("--against", help=f"comma-separated reference methods for the paired tests (default: the study's, {DEFAULT_STUDY.reference})")
    p.add_argument("--alpha", type=float, default=REPORT.alpha, help=f"significance level after Holm correction (default {REPORT.alpha:g})")
    p.add_argument("--per-structure", action="store_true", help="add Dice and HD95 of each label to Table 1")
    p.add_argument("--ndv", action="store_true", help="add NDV (non-diffeomorphic area/volume, %%) beside NJD in Table 1; the caption names its mask")
    p.add_argument("--digits", type=int, default=REPORT.digits, help=f"digits after the decimal point, in table units (default {REPORT.digits}, as the paper)")
    p.add_argument("--caption", help="Table 1 caption (default: describes the metrics and the marks)")
    p.add_argument("--label", default=REPORT.label, help=f"LaTeX label of Table 1; Table 2 gets LABEL-speed (default {REPORT.label})")
    p.add_argument("--compare-paper", action="store_true", help="also write compare_paper.csv/.md: this run next to the paper's Table 1")
    p.add_argument("--paper-dataset", choices=list(DEFAULT_STUDY.published_datasets), help="compare with this dataset of the paper (default: the run's own)")
    p.add_argument("--no-figures", action="store_true", help="tables and statistics only")
    p.add_argument(
        "--html",
        action=argparse.BooleanOptionalAction,
        default=REPORT.html,
        help="also write index.html: the report as one self-contained page that opens from the disk (sortable tables, "
        "figures, every case with the example pairs' pictures, the runs' provenance); --no-html: not (default: written)",
    )
    p.add_argument(
        "--by",
        metavar="NAME",
        help="also write Table 1, the tests and the ranks per value of a group attribute the cases carry (per_case.csv's "
        "by_NAME column, e.g. ACDC's group, M&M's vendor or centre): table1_by_NAME.*, stats_by_NAME.csv, ranks_by_NAME.csv",
    )
    p.add_argument(
        "--resamples",
        type=int,
        default=REPORT.resamples,
        help=f"bootstrap resamples of the units (subjects) for ranks.csv and the bold cells' stability (default {REPORT.resamples})",
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=REPORT.layout,
        help="Table 1's LaTeX: plain (table, booktabs), fit (scaled to \\linewidth, needs graphicx), wide "
        "(table* across both columns of a two-column class, scaled to \\textwidth, needs graphicx); "
        f"auto: fit for several datasets or --per-structure, else plain (default {REPORT.layout})",
    )

    p = sub.add_parser("data", help="dataset tools: `data check` validates a download")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = data_sub.add_parser(
        "check",
        help="read and prepare every case; print a summary and every problem found",
        description="Validate a dataset download (e.g. ACDC or M&M at --root): subjects, slices kept, "
        "spacing range, label values and every problem found, all at once; then, where the files read, the checks a "
        "run makes of every pair it loads (label values against the declared labels, intensity range, shapes, "
        "spacing), so that what passes here is what a run accepts. Notes say what the reader left unread. "
        "Exit status 1 if any problem.",
    )
    p.add_argument("--dataset", required=True, help="dataset name (acdc, mnm, ...)")
    p.add_argument("--root", help="dataset folder (default: the dataset's environment variable)")
    p.add_argument("--slice-rule", choices=["all-structures", "lv", "all"], help="which slices to keep (default all-structures)")
    p.add_argument("--crop", type=int, help="crop size in pixels (default 128)")
    p.add_argument("--refresh", action="store_true", help="also prepare the pairs again and rewrite their cache (the check itself always reads the files)")

    p = sub.add_parser(
        "export",
        help="write a run's flows for another kit (learn2reg or regbench convention), with a convention.json",
        description="Write every scored case's flow of RUN (the flows a run with --keep-flows keeps, else its example "
        "files; the same run command with --keep-flows completes a run made without it) into OUT/METHOD/ with convention.json stating the convention, "
        "file pattern and array key. learn2reg: disp_CASE_ID.npz (array 'arr_0', as Learn2Reg's kit reads; on a Learn2Reg "
        "task the long disp_CCCC_MMMM_CCCC_MMMM names), channel last, voxels, component k along array axis k, pull, full "
        "resolution; regbench: CASE_ID.npz (array 'disp'), channel first. Read back as fields.TAG with that convention, an export reproduces the rows.",
    )
    p.add_argument("run", type=Path, help="a run directory")
    p.add_argument("--format", required=True, choices=("learn2reg", "regbench"), help="the convention to write")
    p.add_argument("--out", type=Path, help="where (default RUN/export/FORMAT)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="the values' type (default float32)")
    p.add_argument("--methods", help="comma-separated methods (default: every method with scored cases)")
    p = sub.add_parser(
        "transfer",
        help="carry a λ tuned on one run's validation split to another run, against the methods with no λ",
        description="Tune the λ family (e.g. voxelmorph.<λ>) that both runs trained, on each run's validation split by one rule "
        "(best validation Dice among the λ whose validation NJD is within --njd-budget; the last validated epoch, mean over "
        "seeds), then score the λ tuned on A on B's test pairs beside the λ tuned on B itself and every other trained method "
        "of B (the hyper-parameter-free ones), and the same from B to A. Writes transfer.{md,csv,tex} and tuning.md. "
        "The tradeoff profile trains what it needs: see docs/tradeoff.md.",
    )
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="a run directory that trained a λ family with validation")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="a second one, same family and grid, on another dataset or domain")
    p.add_argument(
        "--njd-budget", type=float, default=DEFAULT_NJD_BUDGET, help=f"folding budget of the tuning rule, NJD %% on validation (default {DEFAULT_NJD_BUDGET:g})"
    )
    p.add_argument("--out", type=Path, help="output folder (default RUN_B/report)")
    sub.add_parser(
        "methods",
        help="list registered methods: name (NAME.TAG: named instances only), display name, dims, trained or not, what it is",
    )
    sub.add_parser("datasets", help="list registered datasets")

    p = sub.add_parser(
        "check-method",
        help="run the conformance checks on a registered method",
        description="Build the method with the profile's options (resolved as regbench run resolves them; "
        "printed first), except that a trainable method validates once, after its last epoch, and run the "
        "conformance checks on small synthetic pairs.",
    )
    p.add_argument("name", help="a registered method's name (see `regbench methods`)")
    p.add_argument("--profile", default="smoke", choices=list(PROFILES), help="build it with this profile's options, as regbench run does (default smoke)")
    p.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help=f"run only this check (repeatable): {', '.join(CHECKS)}",
    )
    p = sub.add_parser(
        "perf",
        help="print timings: seconds per pair, --jobs speed-up, training-step cost",
        description="Benchmarks (numbers, not pass/fail): registration seconds per pair on synthetic "
        "pairs, wall time of the case loop with --jobs 1 and --jobs N, and for deep methods the "
        f"training-step time relative to {DEFAULT_STUDY.step_reference}, inference ms per pair, the peak memory of a step "
        "(CUDA's allocated peak; on a CPU the same count from torch.profiler's memory records), the cost of a validation pass, "
        "the counted FLOPs of a step and of one registration with the achieved GFLOP/s as a share of the "
        "device's dense matmul rate at the same precision (timed in the same run) and pairs/s, the share of a step's operator "
        "time in convolutions, grid sampling, matmuls and the optimiser (torch.profiler: CPU time on a CPU, CUDA kernel "
        "time on a GPU), one optimiser step of the largest model with subnormal Adam moments, computed and flushed "
        "to zero, and each form of a gradient combiner that has several (a loop over the parameter tensors, one vector) "
        "alone, with the form training uses on the device. On a GPU, steps and inference are timed with CUDA events, and the TF32, cudnn.benchmark and "
        "deterministic settings are printed.",
    )
    p.add_argument("--methods", default="demons,syn", help="comma-separated names or patterns (default: demons,syn)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128, the paper's)")
    p.add_argument("--pairs", type=int, default=24, help="pairs to time (default 24)")
    p.add_argument(
        "--dims",
        type=int,
        choices=(2, 3),
        default=2,
        help="2: slices of --size px (default); 3: the methods that register volumes, timed on the 3-D synthetic "
        "heart's stacks of --depth slices of --size × --size px (10 mm slices); deep methods built with the profile's volume settings",
    )
    p.add_argument("--depth", type=int, default=10, help="slices per volume with --dims 3 (default 10)")
    p.add_argument(
        "--probe",
        action="store_true",
        help="time the fields convention probe instead of methods: the pairs' true flows written as files, scored and "
        "probed; prints the probe's share of the scoring time (e.g. --probe --dims 3 --size 128 --depth 128 --pairs 3)",
    )
    p.add_argument("--jobs", type=int, default=2, help="processes for the parallel timing (default 2)")
    p.add_argument(
        "--profile",
        default="quick",
        choices=list(PROFILES),
        metavar="PROFILE",
        help="build deep methods with this profile's options, as regbench run does (default quick)",
    )
    p.add_argument("--batch", type=int, help="training batch for the step timing of deep methods (default: the profile's; quick: 16 on slices, 2 on volumes)")
    p.add_argument("--device", default="auto", help="device for deep methods (default auto)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="arithmetic of the deep methods' steps and of the matmul reference: fp32 (TF32 off), tf32 (CUDA), bf16 (autocast) (default: the profile's, fp32)",
    )
    p.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        help="time the deep methods' steps with the network compiled as training's compile_mode does: none (eager), default "
        "(inductor), reduce-overhead (inductor and CUDA graphs on a GPU); the first step compiles (default: the profile's, none)",
    )
    p.add_argument(
        "--contention",
        action="store_true",
        help=f"also time {DEFAULT_STUDY.step_reference}'s training step alone and beside a "
        "CPU-bound process, with OMP_WAIT_POLICY unset and PASSIVE (what regbench sets)",
    )
    for command in [*(c for name, c in sub.choices.items() if name != "data"), *data_sub.choices.values()]:
        # `regbench run --plugin f.py` as well as `regbench --plugin f.py run` (`data check --plugin f.py` too)
        command.add_argument(
            "--plugin", dest="plugin_after", action="append", default=[], metavar="MODULE", help="the same as regbench --plugin MODULE, given after the command"
        )
    return parser


def _config_from_args(args: argparse.Namespace):
    given = {**parse_dataset_options(getattr(args, "dataset_option", None) or []), **({"root": args.root} if getattr(args, "root", None) else {})}
    dataset_options = given or None
    return load_config(
        args.config,
        dataset=args.dataset,
        profile=args.profile,
        out=args.out,
        seed=args.seed,
        device=args.device,
        methods=getattr(args, "methods", None),
        jobs=getattr(args, "jobs", None),
        max_test_pairs=getattr(args, "max_test_pairs", None),
        keep_flows=getattr(args, "keep_flows", None),
        conventions=getattr(args, "conventions", None),
        sweep=getattr(args, "sweep", None),
        figures=getattr(args, "figures", None),
        retrain_per_level=getattr(args, "retrain_per_level", None),
        dataset_options=dataset_options,
        seeds=parse_seeds(args.seeds) if getattr(args, "seeds", None) is not None else None,
        backend=getattr(args, "backend", None),
        cluster=getattr(args, "cluster", None),
        scheduler=getattr(args, "scheduler", None),
        scheduler_file=getattr(args, "scheduler_file", None),
    )


def grouped_reasons(unavailable: Mapping[str, str]) -> list[str]:
    """One line per reason: methods left out for the same reason (the 2-D methods on volumes, those of one
    missing extra) are named together and the reason is said once."""
    by_reason: dict[str, list[str]] = {}
    for name, why in unavailable.items():
        by_reason.setdefault(why.replace(f"method {name!r} ", "method {} ", 1), []).append(name)
    lines = []
    for template, names in by_reason.items():
        if len(names) > 1 and template.count("method {} ") == 1:
            lines.append(f"{len(names)} methods ({', '.join(names)}): " + template.replace("method {} ", "each ", 1))
        else:
            lines += [unavailable[name] for name in names]
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    if args.dry_run:
        from .plan import dry_run

        print(dry_run(config).text())
        return 0
    from .runner import run

    result = run(config, progress=not args.no_progress, retrain=args.retrain, refresh=args.refresh)
    print(f"run directory: {result.run_dir}")
    for why in grouped_reasons(result.unavailable):
        print(f"regbench: note: left out of {','.join(config.methods)}: {why}", file=sys.stderr)
    for name in sorted(set(result.evaluated) | set(result.skipped)):
        retried, refilled = result.retried.get(name, 0), result.refilled.get(name, 0)
        print(
            f"  {name}: {result.evaluated.get(name, 0)} pairs computed, {result.skipped.get(name, 0)} already stored"
            + (f" ({retried} failed before and retried)" if retried else "")
            + (f"; {refilled} stored pairs registered again to keep their flows" if refilled else "")
        )
    from .rundir import RunDir

    summary = RunDir(result.run_dir).summary
    if summary.exists():
        import pandas as pd

        print(summary_text(pd.read_csv(summary, dtype={"epochs": "Int64", "converged": "boolean"})))
    if result.report is not None:
        print_report(result.report)
    for name, count in result.some_cases_failed.items():
        print(
            f"regbench: warning: {name}: {count} of {count + result.scored.get(name, 0)} case(s) failed{_first_failures(result, name, count)}. "
            "Fix the cause and run the same command again: failed cases are computed again, scored ones kept",
            file=sys.stderr,
        )
    for name in result.all_cases_failed:
        print(
            f"regbench: error: method {name}: every case failed{_first_failures(result, name, None)}. Fix the cause and run the "
            "same command again (nothing was scored, so a method without training may take other options too)",
            file=sys.stderr,
        )
    for name, why in result.failed_methods.items():
        print(f"regbench: error: method {name} did not run: {why}", file=sys.stderr)
    for name, (n, total, why) in result.wrong_convention.items():
        print(
            f"regbench: error: method {name}: {n} of {total} cases failed because {why.removeprefix('InputError: ')} "
            f"Its flows are not in regbench's convention, so none of its numbers can be ranked; `regbench check-method {name}` names the mistake",
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def _first_failures(result: Any, name: str, count: int | None) -> str:
    """': CASE: reason; ...' for a method's first failed cases, and where the rest are."""
    shown = result.first_failures.get(name, [])
    if not shown:
        return ""
    text = "; ".join(f"{case}: {reason}" for case, reason in shown)
    from .rundir import RunDir

    more = count is None or count > len(shown)
    return f" ({text}{'; the rest in ' + str(RunDir(result.run_dir).per_case) if more else ''})"


def cmd_train(args: argparse.Namespace) -> int:
    from .runner import train

    path = train(_config_from_args(args), args.method, progress=not args.no_progress, retrain=args.retrain, refresh=args.refresh)
    print(f"trained model: {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    if args.digits < 0:
        raise ConfigError(f"--digits must be 0 or more, got {args.digits}")
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.resamples is not None and args.resamples < 1:
        raise ConfigError(f"--resamples must be 1 or more, got {args.resamples}")
    options = ReportOptions(
        per_structure=args.per_structure,
        ndv=args.ndv,
        digits=args.digits,
        caption=args.caption,
        label=args.label,
        references=tuple(m.strip() for m in args.against.split(",") if m.strip()) if args.against is not None else None,
        alpha=args.alpha,
        compare_paper=args.compare_paper or bool(args.paper_dataset),
        paper_dataset=args.paper_dataset,
        figures=not args.no_figures,
        html=args.html,
        layout=args.layout,
        by=args.by,
        resamples=args.resamples,
    )
    report = write_report([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None, options)
    print_report(report)
    return 0


def summary_text(summary: Any) -> str:
    """The run's summary.csv as the terminal shows it: Table 1's metrics in Table 1's units (Dice %, HD95 mm,
    MSE ×10⁻², NJD %; two decimals), time in ms per pair, the training verdict."""
    import pandas as pd

    from .metrics import spec_of

    table = summary[["method", "n_cases", "n_failed"]].copy()
    for metric in ("dice", "hd95", "mse", "njd"):
        if f"{metric}_mean" in summary:
            spec = spec_of(metric)
            table[spec.label] = (pd.to_numeric(summary[f"{metric}_mean"], errors="coerce") * spec.table_scale).map("{:.2f}".format)
    table["ms/pair"] = (pd.to_numeric(summary["time_s_mean"], errors="coerce") * 1000).map("{:.1f}".format)
    for column in ("epochs", "converged"):
        table[column] = summary[column] if column in summary else pd.NA
    return table.to_string(index=False)


def print_report(report) -> None:
    print(f"report: {report.out_dir}")
    for path in report.written:
        print(f"  {path.relative_to(report.out_dir) if path.is_relative_to(report.out_dir) else path}")
    for problem in report.problems:
        print(f"regbench: warning: {problem}", file=sys.stderr)


def cmd_data(args: argparse.Namespace) -> int:
    from .interface import ChecksItself, Dataset
    from .registry import DATASETS

    options = {k: v for k, v in (("root", args.root), ("slice_rule", args.slice_rule), ("crop", args.crop)) if v is not None}
    caches = "refresh" in (DATASETS.option_names(args.dataset) or set())  # files and learn2reg read their files every time
    dataset = DATASETS.create(args.dataset, **options, **({"refresh": True} if args.refresh and caches else {}))
    if not isinstance(dataset, ChecksItself):
        raise ConfigError(f"dataset {args.dataset!r} is not read from disk: nothing to check")
    summary = dataset.check()
    if summary.ok and isinstance(dataset, Dataset):  # then the checks a run makes of every pair it loads, the same code
        from .execution import dataset_labels
        from .runner import load_pairs

        load_pairs(dataset, ("train", "val", "test"), dataset_labels(args.dataset, dataset), problems=summary.problems, name=args.dataset)
    print(summary)
    if args.refresh and not caches:
        print(f"  cache: none (dataset {args.dataset!r} reads its files on every run)")
    elif args.refresh and summary.ok and isinstance(dataset, Dataset):
        dataset.pairs("test")  # prepares every subject's pairs from the files and rewrites the cache
        print("  cache: pairs prepared again from the files")
    return 0 if summary.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_fields

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    result = export_fields(args.run, args.format, args.out, args.dtype, methods)
    for method, count in result.written.items():
        missing = result.missing.get(method, [])
        print(
            f"{method}: {count} fields"
            + (
                f"; {len(missing)} scored cases have no kept flow: run the same `regbench run` command into {args.run} with "
                f"--keep-flows (or --keep-flows {method}); it computes only the missing flows, a trained method from its saved model"
                if missing
                else ""
            )
        )
        if result.outside.get(method, 0.0) > 0:
            print(
                f"  {100 * result.outside[method]:.1f} % of voxels sample outside the grid, where resamplers pad differently: "
                "MSE scored from these flows may differ from the run's there (docs/methods.md, Export)"
            )
    print(f"written to {result.out_dir}")
    return 0 if not result.missing else 1


def cmd_transfer(args: argparse.Namespace) -> int:
    from .transfer import TuningRule, write_transfer

    if not args.njd_budget >= 0:
        raise ConfigError(f"--njd-budget must be a non-negative percentage, got {args.njd_budget!r}")
    written = write_transfer(args.run_a, args.run_b, TuningRule(args.njd_budget), args.out)
    print(written[0].read_text(), end="")
    print("\n".join(f"written {path}" for path in written))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .registry import METHODS

    rows = []
    for name in METHODS.names():
        meta = METHODS.meta(name)
        shown = f"{name}.{'VALUE' if meta.family_value_from_tag else 'TAG'}" if meta.tagged else name  # named instances only
        try:
            missing = METHODS.missing_extra(name)
            summary = METHODS.summary(name) if missing is None else f"unavailable: {missing}"
        except RegbenchError as exc:  # a plugin that does not import: say so, list the rest
            summary = f"unavailable: {exc}"
        kind = "/".join(f"{d}-D" for d in meta.dims) + (", trained" if meta.trainable else "")
        rows.append((shown, METHODS.display_name(name), kind, summary))
    widths = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .registry import DATASETS

    names = DATASETS.names()
    shown = {name: DATASETS.meta(name).display_name or name for name in names}
    width, display_width = max(map(len, names), default=0), max(map(len, shown.values()), default=0)
    for name in names:
        print(f"{name:<{width}}  {shown[name]:<{display_width}}  {'/'.join(f'{d}-D' for d in DATASETS.meta(name).dims)}")
    return 0


def cmd_check_method(args: argparse.Namespace) -> int:
    from .check import check_method

    report = check_method(args.name, profile=args.profile, only=args.check)
    print(report)
    return 0 if report.ok else 1


def cmd_perf(args: argparse.Namespace) -> int:
    from .registry import is_trainable

    limits = (("--size", args.size, 32), ("--pairs", args.pairs, 1), ("--jobs", args.jobs, 1), ("--batch", args.batch, 1), ("--depth", args.depth, 10))
    for flag, value, least in limits:
        if value is not None and value < least:
            raise ConfigError(f"{flag} must be at least {least}, got {value}")
    from .options import resolve_method_options
    from .perf import (
        benchmark_pairs,
        dense_matmul_gflops,
        device_settings,
        format_case_timings,
        format_combiner_timings,
        format_step_timings,
        format_subnormal_timing,
        matmul_label,
        time_cases,
        time_combiner_forms,
        time_subnormal_optimiser_step,
        time_training_steps,
    )
    from .registry import METHODS

    if args.probe:
        import tempfile

        from .perf import format_probe_timing, time_probe

        with tempfile.TemporaryDirectory(prefix="regbench-probe-") as folder:
            print(format_probe_timing(time_probe(benchmark_pairs(args.size, args.pairs, dims=args.dims, depth=args.depth), folder)))
        return 0
    # With --dims 3, a pattern leaves out the methods that do not register volumes (a name among them is an error).
    names = METHODS.resolve(args.methods, skipped={}, dims=(args.dims,), dataset=f"perf --dims {args.dims}")
    options = {n: resolve_method_options(n, args.profile, device=args.device, dims=args.dims) for n in names}  # as `run --profile` builds them
    trainable = [n for n in names if is_trainable(METHODS.create(n, **options[n]))]
    classical = [n for n in names if n not in trainable]
    if classical:
        pairs = benchmark_pairs(args.size, args.pairs, dims=args.dims, depth=args.depth)
        rows = []
        for name in classical:
            rows.append(time_cases(name, pairs, jobs=args.jobs, options=options[name]))
            print(format_case_timings(rows[-1:]).splitlines()[-1] if len(rows) > 1 else format_case_timings(rows), flush=True)
    if trainable:
        reference = DEFAULT_STUDY.step_reference
        if reference not in trainable:
            trainable.insert(0, reference)  # the reference for the relative step time
        steps = time_training_steps(
            trainable,
            args.size,
            args.batch,
            device=args.device,
            profile=args.profile,
            precision=args.precision,
            dims=args.dims,
            depth=args.depth,
            compile_mode=args.compile_mode,
        )
        device, precision = steps[0].device, steps[0].precision
        if device.startswith("cuda"):
            print("device settings: " + ", ".join(f"{k} {v}" for k, v in device_settings(device, precision).items()), flush=True)
        matmul_rate = dense_matmul_gflops(device=device, precision=precision)
        print(format_step_timings(steps, matmul_gflops=matmul_rate, matmul_label=matmul_label(device, precision)), flush=True)
        largest = max(step.parameters for step in steps)
        print(format_subnormal_timing(largest, *time_subnormal_optimiser_step(largest)))
        forms = {n: t for n in trainable if (t := time_combiner_forms(n, args.profile, device=args.device, dims=args.dims)) is not None}
        if forms:
            print(format_combiner_timings(forms, device), flush=True)
    if args.contention:
        from .perf import format_contention_timings, time_training_beside_load

        print(format_contention_timings(time_training_beside_load(size=min(args.size, 64), profile=args.profile)), flush=True)
    return 0


class Terminated(BaseException):
    """SIGTERM (a scheduler's walltime or scancel, ``kill``): stops the run as Ctrl-C does."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "report": cmd_report,
    "data": cmd_data,
    "methods": cmd_methods,
    "datasets": cmd_datasets,
    "check-method": cmd_check_method,
    "perf": cmd_perf,
    "export": cmd_export,
    "transfer": cmd_transfer,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("run", "train", "perf", "check-method") and not getattr(args, "dry_run", False):
        from .trainer import flush_subnormals

        flush_subnormals()  # before torch's intra-op threads exist, so that they inherit it
    if args.command in ("run", "train"):
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        plugins = [*args.plugin, *getattr(args, "plugin_after", [])]
        if plugins:
            from .registry import PLUGINS_ENV, load_plugins

            # The environment carries them to worker processes, which import them before looking a name up.
            given = [str(Path(p).expanduser().resolve()) if p.endswith(".py") else p for p in plugins]
            os.environ[PLUGINS_ENV] = ",".join(filter(None, [os.environ.get(PLUGINS_ENV, ""), *given]))
            load_plugins(given)
        return COMMANDS[args.command](args)
    except RegbenchError as exc:
        print(f"regbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the user named cannot be read or written: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"regbench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        from .pool import stop_workers

        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not interrupt the clean-up
        stop_workers()
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"regbench: {what}; finished cases are stored, run the same command to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
