"""``python -m db``: create, fill, read and check the catalogue from the command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from db import config, ops
from db.catalogue import Catalogue, open_catalogue
from db.images import MIN_SIDE, ImageError

# Subcommands that live in their own modules: name -> module with add_cli(subparsers).
EXTRA_COMMANDS = ("db.duplicates", "db.splits", "db.health", "db.check")


def _progress(desc: str) -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=True)
        b = bar["bar"]
        b.update(done - b.n)
        if done >= total:
            b.close()

    return update


def cmd_init(cat: Catalogue, args: argparse.Namespace) -> int:
    with cat.read() as session:
        counts = ops.stats(session)
    print(f"catalogue ready: {cat.display_url} ({counts['images']} images)")
    print(f"data folder: {cat.data_dir}")
    return 0


def cmd_import(cat: Catalogue, args: argparse.Namespace) -> int:
    from db.importer import import_tree

    report = import_tree(
        cat,
        args.dir,
        split=args.split,
        source=args.source,
        progress=_progress("import"),
        follow_links=args.follow_links,
        min_side=args.min_side,
    )
    print(report.summary())
    return 1 if report.errors else 0


def cmd_export(cat: Catalogue, args: argparse.Namespace) -> int:
    from db.importer import export_labelled

    n = export_labelled(cat, args.dir, progress=_progress("export"))
    print(f"exported {n} labelled images and manifest.csv to {args.dir}")
    return 0


def cmd_demo(cat: Catalogue, args: argparse.Namespace) -> int:
    from db.demo import load_demo

    summary = load_demo(
        cat, seed=args.seed, per_colourway=args.per_colourway, progress=_progress("demo")
    )
    print("demo data loaded: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


def _table(title: str, rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none)")
        return
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def cmd_stats(cat: Catalogue, args: argparse.Namespace) -> int:
    with cat.read() as session:
        s = ops.stats(session)
    print(
        f"{cat.display_url}: {s['images']} images, {s['models']} models, "
        f"{s['skus']} SKUs, {s['sources']} sources"
    )
    _table("images by status", list(s["by_status"].items()), ["status", "images"])
    _table("labelled images by split", list(s["by_split"].items()), ["split", "images"])
    _table("labelled images by model", list(s["by_model"].items()), ["model", "images"])
    _table(
        "labelled images by SKU",
        [(r["model"], r["sku"], r["colourway"] or "", r["images"]) for r in s["by_sku"]],
        ["model", "SKU", "colourway", "images"],
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m db",
        description="The skulab catalogue. Data folder: $SKULAB_DATA or ./data; "
        "$DATABASE_URL overrides the database.",
    )
    parser.add_argument("--data", help="data folder (default: $SKULAB_DATA or ./data)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create the catalogue (or bring its schema up to date)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("import", help="import a labelled folder tree DIR/<model>/<SKU>/*.jpg")
    p.add_argument("dir", help="folder to import")
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "auto"],
        default="auto",
        help="split for the imported images; auto (default) assigns 70/15/15 stratified, "
        "unless the tree has train/val/test folders, which then set it",
    )
    p.add_argument(
        "--source", help="a name for where these files came from (shown as their source)"
    )
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="import what symbolic links point to (by default links are listed and skipped)",
    )
    p.add_argument(
        "--min-side",
        type=int,
        default=MIN_SIDE,
        help=f"skip pictures smaller than this many pixels a side (default {MIN_SIDE})",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "export", help="export labelled images to DIR/<split>/<model>/<SKU>/ + manifest.csv"
    )
    p.add_argument("dir", help="folder to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="fill an empty catalogue with generated demo sneakers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--per-colourway", type=int, default=30, help="images per colourway (default 30)"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("stats", help="images by status, model, SKU and split")
    p.set_defaults(func=cmd_stats)

    for name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_cli(sub)
    return parser


def _open(data: str | None) -> Catalogue:
    """The migrated catalogue, or a :class:`ops.CatalogueError` that says what is wrong where."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    try:
        folder = config.data_dir(data)
    except OSError as exc:
        raise ops.CatalogueError(
            f"cannot use the data folder {data or os.environ.get(config.DATA_ENV) or 'data'}: "
            f"{exc.strerror or exc}"
        ) from None
    url = config.database_url(folder)
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise ops.CatalogueError(
            f"${config.DATABASE_ENV} is not a database URL (like "
            "postgresql+psycopg://user@host/skulab)"
        ) from None
    try:
        return open_catalogue(folder)
    except NoSuchModuleError as exc:
        raise ops.CatalogueError(f"cannot use the database {shown}: {exc}") from None
    except ImportError as exc:
        raise ops.CatalogueError(
            f"cannot use the database {shown}: its driver {exc.name or ''} is not installed "
            "(PostgreSQL: pip install -e '.[postgres]')"
        ) from None
    except DBAPIError as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip()
        raise ops.CatalogueError(f"cannot open the catalogue at {shown}: {reason}") from None


def _quiet_stdout() -> None:
    """After a closed pipe (``python -m db stats | head``): send what is left to /dev/null,
    so that the flush at exit does not raise a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (tests capture it): nothing will flush there


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit status 0 ok, 1 the command found a problem (skipped files, a
    leak), 2 a refused request, 130 interrupted, 141 the reader of the output went away."""
    try:
        args = build_parser().parse_args(argv)  # inside: `--help | head` closes the pipe too
        cat = _open(args.data)
        return int(args.func(cat, args) or 0)
    except (ops.CatalogueError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _quiet_stdout()
        return 128 + 13  # as a shell reports a process ended by SIGPIPE
    except KeyboardInterrupt:
        print("interrupted; everything committed so far is kept", file=sys.stderr)
        return 130
