"""Near-duplicate images: the same photo resized, recompressed, cropped a little, watermarked
or flipped.

Exact copies are one image already (content hash at ingest). Near-duplicates are found from
the 64-bit perceptual hash (``Image.phash``) and the hash of the mirrored image
(``images.phash_mirror``, revision 0002) by an exact Hamming range search (faiss binary
index), and, where cached backbone embeddings exist, from their cosine similarity. Linked
images form groups (connected components); a group's id is its smallest image id and is
written to ``Image.dup_group``. The labeller keeps one image of a group (the others are
rejected with how="duplicate") or all of them; splits keep a group in one split either way.

Known limit: a 64-bit pHash describes the coarse layout in grayscale. Product shots of one
model photographed the same way (same pose, plain background, other colourway) can fall
within the default distance; keep ``max_distance`` low for such catalogues and let the
colour embeddings (``min_cosine``) find crops.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
from PIL import Image as PILImage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Select, bindparam, column, func, select, table, update
from sqlalchemy.orm import Session

from db import ops
from db.images import ImageError
from db.models import Embedding, Image

DEFAULT_MAX_DISTANCE = 10
"""pHash bits that may differ between near-duplicates (resize, JPEG, a watermark, ~3% crop);
links are then confirmed on the thumbnails (:class:`PixelCheck`)."""
DEFAULT_MIN_COSINE = 0.97
"""Cosine similarity of colour embeddings above which two images are near-duplicates."""
EMBEDDING_VIEW = "colour"
EMBEDDING_BACKBONE = "efficientnet_lite0"
DEFAULT_IMAGE_SIZE = 224
"""The input size of the embeddings that training computes by default."""
DEFAULT_MAX_PIXEL_DIFF = 0.04
"""Mean absolute difference (0..1) of 24x24 thumbnails above which a pHash link is dropped."""
CHECK_SIZE = 24
IVF_ABOVE = 20_000
"""Above this many embeddings an inverted-file index replaces the exact (quadratic) search."""
QUERY_CHUNK = 10_000

Progress = Callable[[int, int], None]
"""progress(done, total)"""

# ``phash_mirror`` is added by revision 0002; read and written through a light Core table so
# this module works whether or not the ORM model declares the column yet.
_images = table("images", column("id"), column("phash"), column("phash_mirror"), column("status"))


from db.images import mirror_phash  # noqa: E402  (re-exported for callers of this module)


def hashes_to_bytes(hexes: Sequence[str]) -> np.ndarray:
    """16-hex-digit hashes as an (n, 8) uint8 array, the layout faiss binary indexes take."""
    out = np.zeros((len(hexes), 8), dtype=np.uint8)
    for i, h in enumerate(hexes):
        try:
            raw = bytes.fromhex(h)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) != 8:
            raise ValueError(f"perceptual hash {h!r} is not 16 hex digits")
        out[i] = np.frombuffer(raw, dtype=np.uint8)
    return out


def hamming(a: str, b: str) -> int:
    """Bits that differ between two 16-hex-digit hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass(frozen=True)
class DupPair:
    """Two images found to be near-duplicates, and why."""

    a: int
    b: int
    kind: str  # phash | mirror | embedding
    distance: float  # differing bits, or 1 - cosine for embeddings


@dataclass
class DupGroup:
    group_id: int  # the smallest image id of the group
    image_ids: list[int]
    pairs: list[DupPair] = field(default_factory=list)


@dataclass
class DuplicateReport:
    images: int
    groups: list[DupGroup]
    pairs: int
    dropped_by_pixels: int = 0  # pHash links the thumbnails did not confirm
    without_mirror_hash: int = 0
    embeddings: str | None = None  # "<backbone key>/<view>" used, or None
    written: int | None = None  # images whose dup_group changed (after apply_groups)

    @property
    def grouped_images(self) -> int:
        return sum(len(g.image_ids) for g in self.groups)

    def summary(self) -> str:
        emb = f"embeddings {self.embeddings}" if self.embeddings else "no embeddings"
        text = (
            f"{self.images} images, {len(self.groups)} near-duplicate groups holding "
            f"{self.grouped_images} images ({self.pairs} links; {emb})"
        )
        if self.dropped_by_pixels:
            text += f"; {self.dropped_by_pixels} pHash links not confirmed by the pixels"
        if self.without_mirror_hash:
            text += f"; {self.without_mirror_hash} images lack a mirror hash (flips missed)"
        if self.written is not None:
            text += f"; dup_group changed on {self.written} images"
        return text


# --- the hash index -----------------------------------------------------------------------


class HashIndex:
    """Exact Hamming range search over the catalogue's pHashes (faiss ``IndexBinaryFlat``).

    Build once (``from_session``) and query many times: the app can keep one in a cache to
    check each new upload against the whole catalogue.
    """

    def __init__(self, ids: Sequence[int], hashes: Sequence[str], mirrors: Sequence[str | None]):
        if not (len(ids) == len(hashes) == len(mirrors)):
            raise ValueError("ids, hashes and mirror hashes must have the same length")
        self.ids = np.asarray(ids, dtype=np.int64)
        self.codes = hashes_to_bytes(hashes)
        self.has_mirror = np.array([m is not None for m in mirrors], dtype=bool)
        self.mirror_codes = hashes_to_bytes([m or "0" * 16 for m in mirrors])
        self.index = faiss.IndexBinaryFlat(64)
        if len(self.ids):
            self.index.add(self.codes)

    @classmethod
    def from_session(cls, session: Session, include_rejected: bool = False) -> HashIndex:
        stmt: Select[Any] = select(_images.c.id, _images.c.phash, _images.c.phash_mirror)
        if not include_rejected:
            stmt = stmt.where(_images.c.status != "rejected")
        rows = session.execute(stmt.order_by(_images.c.id)).all()
        return cls([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

    def __len__(self) -> int:
        return len(self.ids)

    def _range(self, queries: np.ndarray, max_distance: int) -> Iterable[tuple[int, int, int]]:
        """(query row, index row, distance) for every hit within ``max_distance`` bits."""
        if not len(queries) or not len(self.ids):
            return
        # faiss returns distances strictly below the radius.
        lims, dist, rows = self.index.range_search(queries, max_distance + 1)
        for q in range(len(queries)):
            for k in range(lims[q], lims[q + 1]):
                yield q, int(rows[k]), int(dist[k])

    def query(
        self, hash_hex: str, mirror_hex: str | None = None, max_distance: int = DEFAULT_MAX_DISTANCE
    ) -> list[tuple[int, str, int]]:
        """Images near one picture: (image id, "phash" | "mirror", distance), nearest first."""
        best: dict[int, tuple[str, int]] = {}
        probes = [("phash", hash_hex)] + ([("mirror", mirror_hex)] if mirror_hex else [])
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: waking a thread pool costs more than it saves
        try:
            for kind, probe in probes:
                for _, row, d in self._range(hashes_to_bytes([probe]), max_distance):
                    image_id = int(self.ids[row])
                    if image_id not in best or d < best[image_id][1]:
                        best[image_id] = (kind, d)
        finally:
            faiss.omp_set_num_threads(threads)
        return sorted(((i, k, d) for i, (k, d) in best.items()), key=lambda t: (t[2], t[0]))

    def all_pairs(
        self, max_distance: int = DEFAULT_MAX_DISTANCE, progress: Progress | None = None
    ) -> list[DupPair]:
        """Every pair of indexed images within ``max_distance`` bits, directly or mirrored."""
        n = len(self.ids)
        found: dict[tuple[int, int], DupPair] = {}
        mirror_rows = np.flatnonzero(self.has_mirror)
        total = n + len(mirror_rows)
        done = 0
        for kind, rows in (("phash", np.arange(n)), ("mirror", mirror_rows)):
            codes = self.codes if kind == "phash" else self.mirror_codes
            for start in range(0, len(rows), QUERY_CHUNK):
                chunk = rows[start : start + QUERY_CHUNK]
                for q, row, d in self._range(codes[chunk], max_distance):
                    a, b = int(self.ids[chunk[q]]), int(self.ids[row])
                    if a == b:
                        continue
                    key = (min(a, b), max(a, b))
                    old = found.get(key)
                    if old is None or d < old.distance:
                        found[key] = DupPair(key[0], key[1], kind, float(d))
                done += len(chunk)
                if progress:
                    progress(done, total)
        return list(found.values())


# --- checking hash links on the pixels -----------------------------------------------------


class PixelCheck:
    """Confirms pHash links on small colour thumbnails.

    A 64-bit pHash sees coarse grayscale layout only: product shots of one model in the same
    pose (another colourway, another shoot) can fall within a few bits. The stored JPEG
    thumbnails, shrunk to 24x24 and compared in colour (mirrored for "mirror" links), keep
    the resized, recompressed, watermarked and flipped copies and drop most of those.
    """

    def __init__(self, session: Session, store: Any, max_diff: float = DEFAULT_MAX_PIXEL_DIFF):
        self.session = session
        self.store = store
        self.max_diff = max_diff
        self._small: dict[int, np.ndarray | None] = {}

    def small(self, image_id: int) -> np.ndarray | None:
        if image_id not in self._small:
            row = self.session.get(Image, image_id)
            try:
                with PILImage.open(self.store.thumbnail(row)) as thumb:
                    img = thumb.convert("RGB").resize(
                        (CHECK_SIZE, CHECK_SIZE), PILImage.Resampling.BOX
                    )
                self._small[image_id] = np.asarray(img, dtype=np.float32) / 255.0
            except (ImageError, OSError) as exc:
                print(f"image {image_id}: no thumbnail to check ({exc})", file=sys.stderr)
                self._small[image_id] = None
        return self._small[image_id]

    def diff(self, pair: DupPair) -> float | None:
        a, b = self.small(pair.a), self.small(pair.b)
        if a is None or b is None:
            return None
        if pair.kind == "mirror":
            b = b[:, ::-1]
        return float(np.abs(a - b).mean())

    def keep(self, pair: DupPair) -> bool:
        """Whether a link stands: embedding links always; hash links if the pixels agree."""
        if pair.kind == "embedding":
            return True
        d = self.diff(pair)
        return d is None or d <= self.max_diff


# --- embeddings ---------------------------------------------------------------------------


def embedding_keys(session: Session, view: str = EMBEDDING_VIEW) -> dict[str, int]:
    """Backbone keys that have cached embeddings in ``view``, with their row counts."""
    return dict(
        session.execute(
            select(Embedding.backbone, func.count())
            .where(Embedding.view == view)
            .group_by(Embedding.backbone)
        ).all()
    )


def default_embedding_key(
    session: Session,
    backbone: str = EMBEDDING_BACKBONE,
    view: str = EMBEDDING_VIEW,
) -> str | None:
    """The cache key of ``backbone``'s plain (not flipped) embeddings to use.

    The default input size (``{backbone}@224``, what ``python -m training fit`` computes
    unless told otherwise) when it is cached, so that a trial run at another size over more
    images does not change which embeddings the curation tools read; else the key with the
    most rows.
    """
    keys = {
        k: n
        for k, n in embedding_keys(session, view).items()
        if (k == backbone or k.startswith(f"{backbone}@")) and not k.endswith(":hflip")
    }
    default = f"{backbone}@{DEFAULT_IMAGE_SIZE}"
    if keys.get(default):
        return default
    return max(keys, key=lambda k: (keys[k], k)) if keys else None


def load_embeddings(
    session: Session,
    key: str,
    view: str,
    image_ids: Iterable[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, float32 matrix) of the cached embeddings of one key and view."""
    stmt = select(Embedding.image_id, Embedding.dim, Embedding.vector).where(
        Embedding.backbone == key, Embedding.view == view
    )
    wanted = set(image_ids) if image_ids is not None else None
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    dim: int | None = None
    for image_id, d, blob in session.execute(stmt.order_by(Embedding.image_id)):
        if wanted is not None and image_id not in wanted:
            continue
        vec = np.frombuffer(blob, dtype="<f4")
        if vec.shape[0] != d or (dim is not None and d != dim):
            raise ValueError(
                f"embedding of image {image_id} ({key}/{view}) has {vec.shape[0]} values, "
                f"expected {dim or d}"
            )
        dim = d
        ids.append(image_id)
        vectors.append(vec)
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.asarray(ids, dtype=np.int64), np.stack(vectors).astype(np.float32)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def embedding_pairs(
    ids: np.ndarray, vectors: np.ndarray, min_cosine: float = DEFAULT_MIN_COSINE
) -> list[DupPair]:
    """Pairs of images whose embeddings have a cosine similarity of at least ``min_cosine``."""
    if len(ids) < 2:
        return []
    x = _normalised(vectors)
    n, dim = x.shape
    if n > IVF_ABOVE:
        nlist = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(dim)
        index: Any = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = 8
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(x)
    pairs: dict[tuple[int, int], DupPair] = {}
    for start in range(0, n, QUERY_CHUNK):
        lims, sims, rows = index.range_search(x[start : start + QUERY_CHUNK], float(min_cosine))
        for q in range(len(lims) - 1):
            a = int(ids[start + q])
            for k in range(lims[q], lims[q + 1]):
                b = int(ids[rows[k]])
                if a < b:
                    pairs[(a, b)] = DupPair(a, b, "embedding", round(1.0 - float(sims[k]), 6))
    return list(pairs.values())


# --- groups -------------------------------------------------------------------------------


def group_pairs(ids: Sequence[int], pairs: Sequence[DupPair]) -> list[DupGroup]:
    """Connected components (of two images or more) of the near-duplicate links."""
    if not pairs:
        return []
    pos = {int(i): k for k, i in enumerate(ids)}
    rows = np.array([pos[p.a] for p in pairs if p.a in pos and p.b in pos], dtype=np.int64)
    cols = np.array([pos[p.b] for p in pairs if p.a in pos and p.b in pos], dtype=np.int64)
    n = len(ids)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for k, label in enumerate(labels):
        members.setdefault(int(label), []).append(int(ids[k]))
    by_image: dict[int, int] = {}
    groups: dict[int, DupGroup] = {}
    for image_ids in members.values():
        if len(image_ids) < 2:
            continue
        image_ids.sort()
        group = DupGroup(image_ids[0], image_ids)
        groups[group.group_id] = group
        for i in image_ids:
            by_image[i] = group.group_id
    for p in pairs:
        if p.a in by_image:
            groups[by_image[p.a]].pairs.append(p)
    return sorted(groups.values(), key=lambda g: (-len(g.image_ids), g.group_id))


def find_duplicates(
    session: Session,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_cosine: float | None = DEFAULT_MIN_COSINE,
    embedding_key: str | None = None,
    progress: Progress | None = None,
    store: Any = None,
    max_pixel_diff: float = DEFAULT_MAX_PIXEL_DIFF,
) -> DuplicateReport:
    """Near-duplicate groups among the images that are not rejected (nothing is written).

    ``min_cosine=None`` leaves embeddings out; ``embedding_key`` picks the cached backbone
    key (default: the most complete plain ``efficientnet_lite0`` key, colour view). With
    the catalogue's ``store``, each pHash link is confirmed on the thumbnails
    (:class:`PixelCheck`); without it, pHash links are taken as they are.
    """
    if not 0 <= max_distance <= 64:
        raise ops.CatalogueError(f"max_distance must be 0..64 bits, got {max_distance}")
    index = HashIndex.from_session(session)
    pairs = index.all_pairs(max_distance, progress)
    dropped = 0
    if store is not None:
        check = PixelCheck(session, store, max_pixel_diff)
        kept = [p for p in pairs if check.keep(p)]
        dropped = len(pairs) - len(kept)
        pairs = kept
    used = None
    if min_cosine is not None:
        key = embedding_key or default_embedding_key(session)
        if key is not None:
            emb_ids, vectors = load_embeddings(session, key, EMBEDDING_VIEW, index.ids.tolist())
            pairs += embedding_pairs(emb_ids, vectors, min_cosine)
            used = f"{key}/{EMBEDDING_VIEW}" if len(emb_ids) else None
    groups = group_pairs(index.ids.tolist(), pairs)
    return DuplicateReport(
        images=len(index),
        groups=groups,
        pairs=len(pairs),
        dropped_by_pixels=dropped,
        without_mirror_hash=int((~index.has_mirror).sum()),
        embeddings=used,
    )


def apply_groups(session: Session, report: DuplicateReport) -> int:
    """Write the groups to ``Image.dup_group`` (None for images in no group); returns changes.

    Rejected images keep the group they had, so a rejected duplicate still shows its group.
    """
    wanted = {i: g.group_id for g in report.groups for i in g.image_ids}
    current = session.execute(
        select(Image.id, Image.dup_group).where(Image.status != "rejected")
    ).all()
    changes = [
        {"id": image_id, "dup_group": wanted.get(image_id)}
        for image_id, group in current
        if wanted.get(image_id) != group
    ]
    if changes:
        session.execute(update(Image), changes)
        session.expire_all()
    report.written = len(changes)
    return len(changes)


def duplicates_of(
    session: Session,
    image_id: int,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    index: HashIndex | None = None,
) -> list[int]:
    """Ids of the images near one catalogue image by pHash (itself left out), nearest first."""
    row = session.execute(
        select(_images.c.phash, _images.c.phash_mirror).where(_images.c.id == image_id)
    ).first()
    if row is None:
        raise ops.CatalogueError(f"no image with id {image_id}")
    index = index or HashIndex.from_session(session)
    return [i for i, _, _ in index.query(row[0], row[1], max_distance) if i != image_id]


def keep_one(session: Session, group: int, image_id: int, user: str) -> list[int]:
    """Keep ``image_id`` of a near-duplicate group and reject the others (how="duplicate").

    Returns the rejected ids; each rejection is a label event, so it can be undone.
    """
    members = list(
        session.scalars(
            select(Image.id)
            .where(Image.dup_group == group, Image.status != "rejected")
            .order_by(Image.id)
        )
    )
    if not members:
        raise ops.CatalogueError(f"no near-duplicate group {group} (or all of it is rejected)")
    if image_id not in members:
        raise ops.CatalogueError(
            f"image {image_id} is not in near-duplicate group {group} (members: {members})"
        )
    rejected = [i for i in members if i != image_id]
    for other in rejected:
        ops.reject(session, other, user, how="duplicate")
    return rejected


# --- mirror hashes for images ingested before revision 0002 --------------------------------


def missing_mirror_ids(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(_images.c.id).where(_images.c.phash_mirror.is_(None)).order_by(_images.c.id)
        )
    )


def backfill_mirror_hashes(cat: Any, progress: Progress | None = None, batch: int = 200) -> int:
    """Compute ``phash_mirror`` for images that lack it, from their stored files.

    Decoding happens outside the write transactions; each batch is committed on its own so
    an interruption keeps the work done. Returns how many hashes were written; an image whose
    file cannot be read is left without one (reported on stderr).
    """
    with cat.read() as s:
        todo = missing_mirror_ids(s)
    written = 0
    if progress:
        progress(0, len(todo))
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        with cat.read() as s:
            rows = list(s.scalars(select(Image).where(Image.id.in_(chunk))))
        values = []
        for row in rows:
            try:
                values.append({"i": row.id, "m": mirror_phash(cat.store.open(row))})
            except (ImageError, OSError) as exc:
                print(f"image {row.id}: no mirror hash ({exc})", file=sys.stderr)
        if values:
            with cat.write() as s:
                s.execute(
                    _images.update()
                    .where(_images.c.id == bindparam("i"))
                    .values(phash_mirror=bindparam("m")),
                    values,
                )
            written += len(values)
        if progress:
            progress(min(start + batch, len(todo)), len(todo))
    return written


# --- command line -------------------------------------------------------------------------


def _describe(session: Session, group: DupGroup) -> list[str]:
    rows = {r.id: r for r in session.scalars(select(Image).where(Image.id.in_(group.image_ids)))}
    lines = [f"group {group.group_id}: {len(group.image_ids)} images"]
    for i in group.image_ids:
        r = rows[i]
        label = (r.model.name if r.model else "-") + (f" / {r.sku.style_code}" if r.sku else "")
        source = r.sources[0].page_url or r.sources[0].file_path if r.sources else None
        lines.append(
            f"  {i:>8}  {r.status:<8} {r.split or '-':<5} {label}  {r.width}x{r.height}"
            + (f"  {source}" if source else "")
        )
    return lines


def cmd_duplicates(cat: Any, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    with cat.read() as s:
        lacking = len(missing_mirror_ids(s))
    if lacking and not args.no_backfill:
        with tqdm(total=lacking, desc="mirror hashes", unit="img", file=sys.stderr) as bar:
            backfill_mirror_hashes(cat, lambda done, _t: bar.update(done - bar.n))
    with cat.read() as s:
        report = find_duplicates(
            s,
            max_distance=args.max_distance,
            min_cosine=None if args.no_embeddings else args.min_cosine,
            store=cat.store,
            max_pixel_diff=args.max_pixel_diff,
        )
        for group in report.groups[: args.limit]:
            print("\n".join(_describe(s, group)))
    if len(report.groups) > args.limit:
        print(f"... and {len(report.groups) - args.limit} more groups (--limit)")
    if args.apply:
        with cat.write() as s:
            apply_groups(s, report)
    print(report.summary())
    if not args.apply and report.groups:
        print("(dry run: add --apply to write the groups to the catalogue)")
    return 0


def add_cli(subparsers: Any) -> None:
    """``python -m db duplicates``: list near-duplicate groups; ``--apply`` writes them."""
    p = subparsers.add_parser(
        "duplicates",
        help="find near-duplicate images (pHash, mirrored pHash, embeddings) and list the groups",
    )
    p.add_argument("--apply", action="store_true", help="write the groups to the catalogue")
    p.add_argument(
        "--max-distance",
        type=int,
        default=DEFAULT_MAX_DISTANCE,
        help=f"pHash bits that may differ (default {DEFAULT_MAX_DISTANCE})",
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        default=DEFAULT_MIN_COSINE,
        help=f"embedding similarity for a link (default {DEFAULT_MIN_COSINE})",
    )
    p.add_argument(
        "--max-pixel-diff",
        type=float,
        default=DEFAULT_MAX_PIXEL_DIFF,
        help="thumbnail difference (0..1) above which a pHash link is dropped "
        f"(default {DEFAULT_MAX_PIXEL_DIFF}; 1 keeps every link)",
    )
    p.add_argument("--no-embeddings", action="store_true", help="use the hashes only")
    p.add_argument(
        "--no-backfill",
        action="store_true",
        help="do not compute missing mirror hashes from the image files first",
    )
    p.add_argument("--limit", type=int, default=50, help="groups to print (default 50)")
    p.set_defaults(func=cmd_duplicates)
