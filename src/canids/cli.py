"""``canids`` command line: small utilities around the workflow's outputs.

    canids results [--root DIR]          where every metrics.json is, with its F1 per split
    canids results --table [--spec FILE] [--format md|csv|latex|json] [--pair A B] [--compare CSV]
                                         a study's table: mean, sd and 95 % CI over seeds
    canids verify MANIFEST               validate a manifest and check its artifacts' sha256
    canids spec check FILE...            validate job specs (and their dependency manifests)
    canids export-manifest --dataset D --variant V --out FILE [--root DIR] [--relative-to-root]
                                         write a dependency bundle pinning a finished run's stages
    canids onboard RUN CAPTURE... --out FILE
                                         recalibrate RUN's detector to an unseen vehicle's attack-free captures
    canids detect RUN|FILE CAPTURE... [--onboarding FILE]   flag windows of raw captures
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from canids.shape import VARIANTS


def _results(args: argparse.Namespace) -> int:
    from canids.shape import Layout

    if args.table or args.pair:
        return _study_table(args)
    root = Path(args.root)
    pattern = Layout(".").target("*", "*", "evaluation")
    found = sorted(root.glob(pattern.removeprefix("./")))
    if not found:
        print(f"no metrics.json under {root}: looked for {Layout(str(root)).target('<dataset>', '<variant>', 'evaluation')}", file=sys.stderr)
        return 1
    for path in found:
        data = json.loads(path.read_text())
        print(f"\nmetrics: {path.resolve()}")
        print(f"  {'split':40s} {'windows':>8s} {'attacks':>8s} {'vgae F1':>8s} {'gat F1':>8s} {'fusion F1':>9s} {'false alarms/h':>14s}")
        for split, models in data["splits"].items():
            fus = models["fusion"]
            rate = fus.get("false_alarms_per_hour")
            print(f"  {split:40s} {fus['n_windows']:8d} {fus['n_attack_windows']:8d} {_fmt(models['vgae']['f1']):>8s} {_fmt(models['gat']['f1']):>8s} {_fmt(fus['f1']):>9s} {'n/a' if rate is None else f'{rate:.1f}':>14s}")
        for split, why in data.get("skipped_splits", {}).items():
            print(f"  {split:40s} not evaluated: {why}")
    return 0


def _study_table(args: argparse.Namespace) -> int:
    """``canids results --table``: a study's table (canids.workflow.tables)."""
    from canids.data.catalog import CatalogError
    from canids.shape import Layout
    from canids.workflow import tables
    from canids.workflow.config import JobSpecError

    root = Path(args.root)
    expected = None
    if args.spec:
        try:
            expected = _spec_pipeline(args.spec, str(root)).expected_evaluations()
        except (JobSpecError, CatalogError) as err:
            print(f"FAILED: {err}", file=sys.stderr)
            return 1
    results = tables.collect(root)
    if not results:
        print(f"no finished run under {root}: looked for {Layout(str(root)).target('<dataset>', '<variant>', 'evaluation')}", file=sys.stderr)
        return 1
    groups = tables.study_rows(results, metrics=args.metrics or tables.METRICS, models=args.models, expected=expected)
    for metric in args.metrics or ():
        if not any(g.metric == metric and g.n for g in groups):
            print(f"FAILED: --metrics {metric}: no result under {root} has it; expected one of {', '.join(tables.METRICS)} (or another key of metrics.json's per-model entries)", file=sys.stderr)
            return 2
    if not any(g.n for g in groups):
        print(f"no finished run of {args.spec} under {root}: its {len(expected or ())} evaluation(s) are all missing", file=sys.stderr)
        return 1
    if args.pair:
        try:
            a, b = (_variant_point(text) for text in args.pair)
        except ValueError as err:
            print(f"FAILED: --pair: {err}", file=sys.stderr)
            return 2
        rows = tables.paired(groups, a, b)
        if not rows:
            found = sorted({f"{g.variant}{g.point}" for g in groups})
            print(f"FAILED: --pair {args.pair[0]} {args.pair[1]}: no results of both under {root}; found {', '.join(found)}", file=sys.stderr)
            return 1
        text = tables.render_paired(rows, args.format)
    else:
        published = None
        if args.compare:
            try:
                published = tables.anchors(args.compare)
            except (OSError, KeyError, ValueError) as err:
                print(f"FAILED: --compare {args.compare}: {err}", file=sys.stderr)
                return 1
        text = tables.render(groups, args.format, published)
    if args.out:
        from canids.util import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {args.out}: {len(groups)} row(s)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _variant_point(text: str) -> tuple[str, str]:
    """'student_kd' or 'teacher+fusion.teacher.gamma=0.5' -> (variant, point)."""
    variant, plus, point = text.partition("+")
    if variant not in VARIANTS:
        raise ValueError(f"{text!r}: expected VARIANT[+RUN] with VARIANT one of {', '.join(VARIANTS)}")
    return variant, plus + point


def _spec_settings(path: str, root: str | None):
    """A job spec merged over config/config.yaml and checked as ``snakemake --configfile PATH`` does."""
    from canids.settings import load_settings
    from canids.validation import check
    from canids.workflow.config import ConfigSources, JobSpecError, check_sweep, load_spec
    from canids.workflow.schemas import config_schema

    spec = load_spec(path, path)
    config = _merged_config(spec, root)
    check(config, config_schema(), path, error=JobSpecError, what="configuration")
    check_sweep(config.get("sweep") or {}, path)
    return spec, load_settings(config), ConfigSources([(path, spec)])


def _spec_pipeline(path: str, root: str):
    """The pipeline a job spec asks for, as ``snakemake --configfile PATH`` builds it."""
    from canids.workflow.dag import Pipeline

    _, settings, sources = _spec_settings(path, root)
    return Pipeline.from_settings(settings, sources)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _verify(args: argparse.Namespace) -> int:
    from canids.workflow.manifest import ManifestError, load_manifest

    try:
        m = load_manifest(args.manifest)
    except ManifestError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print(f"OK: {m.path} ({m.data['dataset']}/{m.data['variant']}/{m.data['stage']}), {len(m.data['artifacts'])} artifact(s) match their sha256")
    return 0


def _merged_config(spec: dict, root: str | None) -> dict:
    """config/config.yaml with the spec merged on top, as ``snakemake --configfile`` does."""
    import yaml
    from snakemake.utils import update_config

    from canids.workflow.dag import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    update_config(config, json.loads(json.dumps(spec)))
    if root:
        config["experiment_root"] = root
    return config


def _spec_check_one(path: str, args: argparse.Namespace) -> str:
    """Everything `snakemake -n --configfile PATH` checks about the spec itself, without Snakemake."""
    import dataclasses

    from canids.workflow.dag import Pipeline, selected_datasets
    from canids.workflow.pins import manifest_templates

    spec, settings, sources = _spec_settings(path, args.root)
    if args.skip_manifests:
        unpinned = dataclasses.replace(settings, dependency_manifests={}, extra_args={k: v for k, v in settings.extra_args.items() if k != "dependency_manifest"})
        pipeline = Pipeline.from_settings(unpinned, sources)
        manifest_templates(settings, selected_datasets(settings, pipeline.catalog, sources.origin), pipeline.catalog.names, sources.origin)
    else:
        pipeline = Pipeline.from_settings(settings, sources)
    pins = ", ".join(f"{d}/{s if v is None else v + '/' + s}" for d, s, v in sorted(pipeline.pins, key=str)) or "none"
    points = len(settings.points())
    study = f"; a study of {points} points ({len(pipeline.study_results())} distinct stage results)" if points > 1 else ""
    return f"OK: {path} ({spec['name']}): {len(pipeline.targets())} target(s): datasets {', '.join(pipeline.datasets())} x variants {', '.join(pipeline.variants())} x {', '.join(settings.training_types)}{study}; pinned: {pins}"


def _spec_check(args: argparse.Namespace) -> int:
    from canids.data.catalog import CatalogError
    from canids.workflow.config import JobSpecError

    failed = 0
    for path in args.files:
        try:
            print(_spec_check_one(path, args))
        except (JobSpecError, CatalogError) as err:
            print(f"FAILED: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _export_manifest(args: argparse.Namespace) -> int:
    from canids.data.catalog import CatalogError
    from canids.workflow.config import JobSpecError
    from canids.workflow.export import export_bundle

    try:
        bundle = export_bundle(args.root, args.dataset, args.variant, args.out, relative_to_root=args.relative_to_root)
    except (JobSpecError, CatalogError) as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {args.dataset}/{args.variant} pins {', '.join(bundle['manifests'])} (each verified by sha256)")
    return 0


def _export_detector(args: argparse.Namespace) -> int:
    from canids.stages.streaming import StreamingDetector
    from canids.util import sha256_file

    from canids.stages.onboarding import OnboardingError

    run = Path(args.run)
    try:
        runtime = StreamingDetector.from_run(run, args.onboarding, args.vehicle)
    except (FileNotFoundError, OnboardingError) as err:  # names the missing checkpoints, or the onboarding file
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    out = runtime.save(args.out)
    size = sum(a.size for a in runtime.arrays.values())
    print(f"wrote {out} ({out.stat().st_size} bytes, {size} values, sha256 {sha256_file(out)}) from {run}; load it with canids.stages.streaming.StreamingDetector.load (NumPy only)")
    return 0


def _capture_settings(source: Path, args: argparse.Namespace) -> tuple[str | None, str]:
    """Reader format and timestamp order: the flags, else (a run directory) its dataset's catalog entry.

    A run directory ``ROOT/DATASET/VARIANT`` names the dataset it was trained on; its captures
    are read as the catalog says (can-train-and-test needs ``timestamp_order: sort``).
    """
    from canids.data.catalog import CatalogError, load_catalog
    from canids.workflow.dag import resolve_repo_path

    fmt, order = None, args.timestamp_order
    if source.is_dir():
        dataset = source.resolve().parent.name
        try:
            spec = load_catalog(resolve_repo_path(args.catalog)).get(dataset)
        except CatalogError:
            spec = None
        if spec is not None:
            fmt = spec.read_format
            order = order or spec.timestamp_order
            print(f"{source}: dataset {dataset!r}: reading captures as the catalog ({args.catalog}) says: format {spec.format}, timestamp order {order}", file=sys.stderr)
    return fmt, order or "strict"


def _detect(args: argparse.Namespace) -> int:
    """Apply a detector to raw captures, window by window, and report what it flags."""
    from canids.data.readers import read_capture
    from canids.graphs.build import build_graphs
    from canids.graphs.vocab import Vocabulary
    from canids.stages.streaming import StreamingDetector, window_arrays

    from canids.stages.onboarding import OnboardingError

    source = Path(args.detector)
    if args.onboarding and not source.is_dir():
        print(f"FAILED: --onboarding applies to a run directory; {source} is a file (export an onboarded detector with `canids export-detector RUN --onboarding FILE`)", file=sys.stderr)
        return 1
    try:
        detector = StreamingDetector.from_run(source, args.onboarding, args.vehicle) if source.is_dir() else StreamingDetector.load(source)
    except OnboardingError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as err:
        print(f"FAILED: {source}: not a streaming detector file (canids export-detector) nor a finished variant run: {err}", file=sys.stderr)
        return 1
    vocab = Vocabulary(detector.can_ids)
    fmt, order = _capture_settings(source, args)
    failed = 0
    for path in args.captures:
        try:
            capture = read_capture(path, fmt, strict=not args.lenient, timestamp_order=order)
        except (OSError, ValueError) as err:  # DataFormatError names file, line and value
            print(f"FAILED: {err}", file=sys.stderr)
            failed += 1
            continue
        graphs = build_graphs([capture], vocab, detector.window_size)
        verdicts = [detector.decide(*window) for window in window_arrays(graphs, with_vocab=detector.uses_vocab)]
        t_start, labels = graphs.t_start.numpy(), graphs.y.numpy()
        alerts = [{"window": i, "t_start": round(float(t_start[i]), 6), "score": round(v.score, 6)} for i, v in enumerate(verdicts) if v.flag]
        report = {"capture": str(path), "frames": len(capture), "windows": len(verdicts), "flagged": len(alerts), "unfamiliar_windows": sum(not v.familiar for v in verdicts)}
        if labels.any():  # labelled capture: how the alerts compare with the labels
            flags = np.array([v.flag for v in verdicts])
            report.update(attack_windows=int(labels.sum()), caught=int((flags & (labels == 1)).sum()), false_alarms=int((flags & (labels == 0)).sum()))
        if args.json:
            print(json.dumps({**report, "alerts": alerts}))
        else:
            extra = f", {report['caught']} of {report['attack_windows']} labelled attack windows caught, {report['false_alarms']} false alarms" if "caught" in report else ""
            print(f"{path}: {report['windows']} windows of {detector.window_size} frames, {report['flagged']} flagged{extra}")
            if report["unfamiliar_windows"]:
                print(f"  {report['unfamiliar_windows']} of them with under {detector.familiar_id_share:.0%} of their CAN IDs known to the models (another vehicle, or injected IDs): "
                      f"the VGAE alone decided them; for a vehicle the models never saw, `canids onboard` recalibrates it from that vehicle's attack-free captures")
            for alert in alerts[: args.show]:
                print(f"  window {alert['window']:>6}  t={alert['t_start']:.3f} s  fused score {alert['score']:.3f}")
            if len(alerts) > args.show:
                print(f"  ... {len(alerts) - args.show} more (--show N, or --json for all)")
    return 1 if failed else 0


def _onboard(args: argparse.Namespace) -> int:
    """Recalibrate a finished run's detector to a vehicle from its attack-free captures (no labels, no retraining)."""
    from canids.data.onboarding import attack_frames_message
    from canids.data.readers import read_capture
    from canids.graphs.build import build_graphs
    from canids.stages.detector import Detector, checkpoint_paths
    from canids.stages.onboarding import KIND, OnboardingError, onboard
    from canids.util import atomic_write_json, sha256_file

    run = Path(args.run)
    try:
        paths = checkpoint_paths(run)
    except FileNotFoundError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    detector = Detector.from_checkpoints(*paths.values()).eval()
    fmt, order = _capture_settings(run, args)
    captures, records = [], []
    for path in args.captures:
        try:
            capture = read_capture(path, fmt, strict=not args.lenient, timestamp_order=order)
        except (OSError, ValueError) as err:  # DataFormatError names file, line and value
            print(f"FAILED: {err}", file=sys.stderr)
            return 1
        if capture.n_attack:
            print(f"FAILED: {attack_frames_message(path, capture.n_attack)}", file=sys.stderr)
            return 1
        captures.append(capture)
        records.append({"name": Path(path).name, "path": str(Path(path).resolve()), "sha256": sha256_file(path), "frames": len(capture)})
    try:
        vehicle = onboard(detector.vgae, detector.gat, detector.policy, build_graphs(captures, detector.vocab, detector.window_size), detector.thresholds, records)
    except OnboardingError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    atomic_write_json(args.out, {"kind": KIND, "run": str(run.resolve()), "fusion_checkpoint_sha256": sha256_file(paths["fusion"]), "vehicle": vehicle.to_dict()})
    print(f"wrote {args.out}: {run} onboarded on {vehicle.n_windows} attack-free windows ({vehicle.hours * 60:.1f} min) of {len(captures)} capture(s); "
          f"VGAE threshold {vehicle.calibration.threshold:.4g} (the vehicle's own), thresholds {vehicle.thresholds.to_dict()}; use it with `canids detect {run} --onboarding {args.out} CAPTURE...`")
    return 0


def main(argv: list[str] | None = None) -> int:
    from canids.data.readers import TIMESTAMP_ORDERS

    parser = argparse.ArgumentParser(prog="canids", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("results", help="list metrics.json files and their F1 per split, or a study's table (--table)")
    p.add_argument("--root", default=os.environ.get("CAN_EXPERIMENT_ROOT", "experiment_runs"))
    p.add_argument("--table", action="store_true", help="aggregate over seeds: per dataset x split x model x variant x sweep point, mean, sd and a 95 %% Student's t interval")
    p.add_argument("--spec", metavar="FILE", help="the study's job spec: only its runs, and every seed it asks for that has no result listed as missing")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex", "json"])
    p.add_argument("--metrics", nargs="+", metavar="METRIC", help="metrics to summarise (default: f1 precision recall auroc false_alarms_per_hour)")
    p.add_argument("--models", nargs="+", metavar="MODEL", help="models to list (default: all; e.g. fusion gat vgae)")
    p.add_argument("--pair", nargs=2, metavar=("A", "B"), help="paired comparison A - B by seed (VARIANT or VARIANT+RUN, e.g. student_kd student)")
    p.add_argument("--compare", metavar="CSV", help="published figures to show beside ours (docs/anchors.csv)")
    p.add_argument("--out", metavar="FILE", help="write the table here (atomically) instead of stdout")
    p.set_defaults(func=_results)
    p = sub.add_parser("verify", help="validate a manifest and check its artifacts")
    p.add_argument("manifest")
    p.set_defaults(func=_verify)
    p = sub.add_parser("spec", help="job specs (jobs/*.json)")
    spec_sub = p.add_subparsers(dest="spec_command", required=True)
    p = spec_sub.add_parser("check", help="validate job specs as `snakemake -n --configfile FILE` would, naming the field of each problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--root", default=None, help="experiment root for {experiment_root} (default: $CAN_EXPERIMENT_ROOT, else the config's, else experiment_runs)")
    p.add_argument("--skip-manifests", action="store_true", help="check dependency manifest templates but do not open or verify the manifests")
    p.set_defaults(func=_spec_check)
    p = sub.add_parser("export-manifest", help="write a dependency bundle pinning a finished run's stages, for reuse by other jobs")
    p.add_argument("--dataset", required=True)
    p.add_argument("--variant", required=True, choices=list(VARIANTS))
    p.add_argument("--root", default=os.environ.get("CAN_EXPERIMENT_ROOT") or "experiment_runs", help="experiment root of the finished run (default: $CAN_EXPERIMENT_ROOT, else experiment_runs)")
    p.add_argument("--out", required=True, help="bundle file to write (JSON)")
    p.add_argument("--relative-to-root", action="store_true", help="write paths under the root as {experiment_root}/... (reusable after moving the root) instead of absolute paths")
    p.set_defaults(func=_export_manifest)
    p = sub.add_parser("export-detector", help="write a finished variant's detector as one NumPy-only file for in-vehicle, window-at-a-time use")
    p.add_argument("run", help="the variant's directory of a finished run: ROOT/DATASET/VARIANT")
    p.add_argument("--out", required=True, help="file to write (.npz)")
    p.add_argument("--onboarding", metavar="FILE", help="export the detector recalibrated to a vehicle (see detect --onboarding)")
    p.add_argument("--vehicle", metavar="SPLIT", help="which vehicle of a calibration.json (its test split)")
    p.set_defaults(func=_export_detector)
    p = sub.add_parser("onboard", help="recalibrate a finished run's detector to a vehicle it never saw, from that vehicle's attack-free captures")
    p.add_argument("run", help="the variant's directory of a finished run: ROOT/DATASET/VARIANT")
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="attack-free raw captures of the vehicle (any supported format); never test captures")
    p.add_argument("--out", required=True, help="onboarding file to write (JSON); pass it to detect/export-detector --onboarding")
    p.add_argument("--lenient", action="store_true", help="skip malformed rows instead of stopping at the first")
    p.add_argument("--timestamp-order", choices=list(TIMESTAMP_ORDERS), default=None, help="as for detect")
    p.add_argument("--catalog", default="config/datasets.yaml", help="as for detect")
    p.set_defaults(func=_onboard)

    p = sub.add_parser("detect", help="run a detector over raw captures window by window and list the windows it flags")
    p.add_argument("detector", help="a file written by export-detector, or a finished variant run ROOT/DATASET/VARIANT")
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="raw capture files (any supported format)")
    p.add_argument("--json", action="store_true", help="one JSON line per capture, every alert included")
    p.add_argument("--show", type=int, default=10, help="alerts listed per capture in text output (default 10)")
    p.add_argument("--lenient", action="store_true", help="skip malformed rows instead of stopping at the first")
    p.add_argument("--timestamp-order", choices=list(TIMESTAMP_ORDERS), default=None, help="sort frames whose timestamps go back slightly (can-train-and-test injections); default: the catalog entry of a run directory's dataset, else strict")
    p.add_argument("--catalog", default="config/datasets.yaml", help="dataset catalog that says how a run directory's dataset is read (default: config/datasets.yaml)")
    p.add_argument("--onboarding", metavar="FILE", help="recalibrate the run's detector to a vehicle first: a file of `canids onboard`, or the run's onboarding/calibration.json with --vehicle")
    p.add_argument("--vehicle", metavar="SPLIT", help="which vehicle of a calibration.json (its test split)")
    p.set_defaults(func=_detect)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
