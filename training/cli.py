"""``python -m training``: fit, evaluate, suggest, issues."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from db import open_catalogue
from inference.backbones import DEFAULT_BACKBONE, backbone_names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    p.add_argument("--data", help="data folder (default: $SKULAB_DATA or ./data)")
    sub = p.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train the cascade on the catalogue and record a run")
    fit.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=backbone_names())
    fit.add_argument("--finetune", action="store_true", help="fine-tune the backbone (GPU if any)")
    fit.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs")
    fit.add_argument("--image-size", type=int, help="input size (default: the backbone's)")
    fit.add_argument("--C", type=float, help="inverse L2 strength of the heads (default: chosen)")
    fit.add_argument("--tta-flip", action="store_true", help="average with the mirror image")
    fit.add_argument("--no-flip-augment", action="store_true", help="no flipped copies in training")
    fit.add_argument("--no-trim", action="store_true", help="keep white margins as they are")
    fit.add_argument(
        "--field-copies",
        type=int,
        default=2,
        help="photos made of each product shot for training (generated scenes; 0: none)",
    )
    fit.add_argument(
        "--field-in-heads",
        action="store_true",
        help="train the heads on the field copies too (default: they only set the photo centre)",
    )
    fit.add_argument(
        "--no-localise",
        action="store_true",
        help="no sneaker detector: photos are classified whole, not searched for sneakers",
    )
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--name", help="a name for the run")
    fit.add_argument("--promote", action="store_true", help="make the run the active model")
    fit.add_argument("--run-id", type=int, help="execute this already-created queued run")

    pr = sub.add_parser("promote", help="make a succeeded run the active model")
    pr.add_argument("run", type=int)

    ev = sub.add_parser("evaluate", help="evaluate a run on val and test, store the metrics")
    ev.add_argument("run", type=int)

    sg = sub.add_parser(
        "suggest", help="store the active model's predictions for unlabelled images"
    )
    sg.add_argument("--run", type=int, help="use this run instead of the active one")
    sg.add_argument(
        "--labelled",
        action="store_true",
        help="predict the labelled images too (the Review page's 'model disagrees' list)",
    )

    issues = sub.add_parser(
        "issues", help="find likely label issues (training.label_issues)", add_help=False
    )
    issues.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _fit(args: argparse.Namespace) -> int:
    from training.fit import FitParams
    from training.jobs import create_run, execute_run, print_progress, run_status

    cat = open_catalogue(args.data)
    if args.run_id is not None:
        try:
            run_id = execute_run(cat, args.run_id, progress=print_progress, promote=args.promote)
        except (LookupError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        params = FitParams(
            backbone=args.backbone,
            finetune=args.finetune,
            epochs=args.epochs,
            image_size=args.image_size,
            C=args.C,
            tta_flip=args.tta_flip,
            flip_augment=not args.no_flip_augment,
            trim=not args.no_trim,
            field_copies=args.field_copies,
            localise=not args.no_localise,
            field_in_heads=args.field_in_heads,
            seed=args.seed,
        )
        run_id = create_run(cat, params, name=args.name)
        print(f"run {run_id}", flush=True)
        execute_run(cat, run_id, progress=print_progress, promote=args.promote)
    status = run_status(cat, run_id)
    if status["status"] != "succeeded":
        print(f"run {run_id} failed: {status['error']}", file=sys.stderr)
        return 1
    print(f"run {run_id} succeeded: {cat.data_dir / status['bundle_path']}")
    _print_summary(cat, run_id)
    if status["active"] and not args.promote:
        print(
            f"run {run_id} is now the active model (no run was active; later runs take "
            "over only with --promote or from the app's Train page)"
        )
    elif status["active"]:
        print(f"run {run_id} is now the active model")
    if status["active"]:
        print("  its suggestions for the Label page: python -m training suggest")
    else:
        print(
            f"run {run_id} is not the active model (another run is): "
            f"`python -m training promote {run_id}` makes it so"
        )
    return 0


def _print_summary(cat: object, run_id: int) -> None:
    from db.models import Run

    with cat.read() as s:  # type: ignore[attr-defined]
        run = s.get(Run, run_id)
        metrics = dict(run.metrics or {})
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        for stage in ("stage1", "stage2"):
            st = m.get(stage) or {}
            if st.get("n"):
                print(
                    f"  {split} {stage}: top-1 {st['top1']:.3f}  top-3 {st['top3']:.3f}  "
                    f"macro F1 {st['macro_f1']:.3f}  ECE {st['ece']:.3f}  "
                    f"coverage {st['coverage']:.2f} (n={st['n']})"
                )
        if nc := m.get("new_colourways"):
            print(
                f"  {split} colourways not in train: model top-1 {nc['model_top1']:.3f}  "
                f"SKU unknown {nc['sku_answered_unknown']:.2f} (n={nc['n']})"
            )
        if ou := m.get("open_set"):
            print(
                f"  {split} models not in train: answered unknown {ou['answered_unknown']:.2f} "
                f"(n={ou['n_unknown_models']})"
            )
    for kind, m in (metrics.get("test_by_kind") or {}).items():
        st = m.get("stage1") or {}
        if st.get("n"):
            print(
                f"  test {kind.replace('_', ' ')}: model top-1 {st['top1']:.3f} (n={st['n']}), "
                f"no sneaker found {m.get('no_sneaker_found', 0)}"
            )
    for note in metrics.get("notes", []):
        print(f"  note: {note}")


def _issues(args: argparse.Namespace) -> int:
    try:
        from training import label_issues
    except ModuleNotFoundError as exc:
        if exc.name != "training.label_issues":
            raise
        print(
            "python -m training issues: training/label_issues.py is not installed in this checkout",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(prog="python -m training issues")
    label_issues.add_arguments(parser)
    rest = list(args.rest)
    if args.data and "--data" not in rest:
        rest = ["--data", args.data, *rest]
    return int(label_issues.main(parser.parse_args(rest)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "issues":
        args.rest = [*extra, *args.rest]
        return _issues(args)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "fit":
        return _fit(args)
    cat = open_catalogue(args.data)
    from training.jobs import print_progress

    if args.command == "promote":
        from training.jobs import promote_run

        try:
            promote_run(cat, args.run)
        except (LookupError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"run {args.run} is now the active model")
        return 0
    if args.command == "evaluate":
        from training.jobs import evaluate_run

        try:
            metrics = evaluate_run(cat, args.run, progress=print_progress)
        except (LookupError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: metrics.get(k) for k in ("val", "test")}, indent=1)[:4000])
        _print_summary(cat, args.run)
        return 0
    if args.command == "suggest":
        from training.suggest import suggest

        n = suggest(cat, run_id=args.run, progress=print_progress, labelled=args.labelled)
        print(f"stored {n} suggestions")
        return 0
    raise AssertionError(args.command)
