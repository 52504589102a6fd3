"""``canids`` command line: small utilities around the workflow's outputs.

    canids results [--root DIR]          where every metrics.json is, with its F1 per split
    canids verify MANIFEST               validate a manifest and check its artifacts' sha256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _results(args: argparse.Namespace) -> int:
    root = Path(args.root)
    found = sorted(root.glob("*/*/evaluation/metrics.json"))
    if not found:
        print(f"no metrics.json under {root}/<dataset>/<variant>/evaluation/", file=sys.stderr)
        return 1
    for path in found:
        data = json.loads(path.read_text())
        print(f"\nmetrics: {path.resolve()}")
        print(f"  {'split':40s} {'windows':>8s} {'attacks':>8s} {'vgae F1':>8s} {'gat F1':>8s} {'fusion F1':>9s}")
        for split, models in data["splits"].items():
            fus = models["fusion"]
            print(f"  {split:40s} {fus['n_windows']:8d} {fus['n_attack_windows']:8d} {_fmt(models['vgae']['f1']):>8s} {_fmt(models['gat']['f1']):>8s} {_fmt(fus['f1']):>9s}")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="canids", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("results", help="list metrics.json files and their F1 per split")
    p.add_argument("--root", default=os.environ.get("CAN_EXPERIMENT_ROOT", "experiment_runs"))
    p.set_defaults(func=_results)
    p = sub.add_parser("verify", help="validate a manifest and check its artifacts")
    p.add_argument("manifest")
    p.set_defaults(func=_verify)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
