"""The catalogue's tables (SQLAlchemy 2.0 typed models).

Every schema change is an Alembic revision in ``db/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUSES = ("new", "labelled", "rejected")
SPLITS = ("train", "val", "test")
VIEWS = ("gray", "colour")
RUN_STATUSES = ("queued", "running", "succeeded", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SneakerModel(Base):
    """A sneaker silhouette, level 1 of the taxonomy (Nike Dunk Low)."""

    __tablename__ = "sneaker_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    skus: Mapped[list[Sku]] = relationship(back_populates="model")

    def __repr__(self) -> str:
        return f"SneakerModel({self.name!r})"


class Sku(Base):
    """One colourway of a model, identified by its style code (DD1391-100)."""

    __tablename__ = "skus"

    id: Mapped[int] = mapped_column(primary_key=True)
    style_code: Mapped[str] = mapped_column(String(100), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("sneaker_models.id"), index=True)
    colourway: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    model: Mapped[SneakerModel] = relationship(back_populates="skus")

    def __repr__(self) -> str:
        return f"Sku({self.style_code!r})"


class Image(Base):
    """One distinct image file (by SHA-256 of its bytes) and its current label."""

    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_status_id", "status", "id"),
        Index("ix_images_model_id_id", "model_id", "id"),
        Index("ix_images_sku_id_id", "sku_id", "id"),
        Index("ix_images_split_id", "split", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(200))
    ext: Mapped[str] = mapped_column(String(10))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    n_bytes: Mapped[int] = mapped_column(Integer)
    phash: Mapped[str] = mapped_column(String(16), index=True)
    phash_mirror: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(10), default="new")
    model_id: Mapped[int | None] = mapped_column(ForeignKey("sneaker_models.id"))
    sku_id: Mapped[int | None] = mapped_column(ForeignKey("skus.id"))
    split: Mapped[str | None] = mapped_column(String(5))
    split_locked: Mapped[bool] = mapped_column(Boolean, default=False)
    dup_group: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    labelled_by: Mapped[str | None] = mapped_column(String(100))
    labelled_at: Mapped[datetime | None] = mapped_column(DateTime)

    model: Mapped[SneakerModel | None] = relationship()
    sku: Mapped[Sku | None] = relationship()
    sources: Mapped[list[ImageSource]] = relationship(
        back_populates="image", order_by="ImageSource.id"
    )

    def __repr__(self) -> str:
        return f"Image({self.id}, {self.sha256[:10]}, {self.status})"


class ImageSource(Base):
    """Where an image was seen: a crawled URL, an imported file, an upload; with its weak label."""

    __tablename__ = "image_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    spider: Mapped[str | None] = mapped_column(String(50))
    image_url: Mapped[str | None] = mapped_column(Text, index=True)
    page_url: Mapped[str | None] = mapped_column(Text)
    file_path: Mapped[str | None] = mapped_column(Text)
    weak_model: Mapped[str | None] = mapped_column(String(200))
    weak_sku: Mapped[str | None] = mapped_column(String(100), index=True)
    weak_colourway: Mapped[str | None] = mapped_column(String(300))
    weak_title: Mapped[str | None] = mapped_column(String(300))
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    image: Mapped[Image] = relationship(back_populates="sources")


class LabelEvent(Base):
    """Append-only history of every change to an image's label, status or split."""

    __tablename__ = "label_events"
    __table_args__ = (Index("ix_label_events_image_id_id", "image_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))
    how: Mapped[str] = mapped_column(String(20))
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    undone: Mapped[bool] = mapped_column(Boolean, default=False)
    action_id: Mapped[str | None] = mapped_column(String(32), index=True)
    """The action (one button press, one command) this change belongs to: undo takes back
    every change of one action and nothing else (see :func:`db.ops.undo_action`)."""
    undo_of: Mapped[str | None] = mapped_column(String(32))
    """On an ``undo`` event: the action it took back."""


class CatalogueEvent(Base):
    """Append-only history of changes to models and SKUs (create, rename, merge, move)."""

    __tablename__ = "catalogue_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(30))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class Run(Base):
    """One training of the cascade."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    bundle_path: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Embedding(Base):
    """A cached backbone embedding of one image in one view (float32, little-endian)."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("image_id", "backbone", "view"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    backbone: Mapped[str] = mapped_column(String(100))
    view: Mapped[str] = mapped_column(String(10))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Prediction(Base):
    """A run's prediction for one image: a suggestion for the labeller."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("image_id", "run_id"),
        Index("ix_predictions_run_id_margin", "run_id", "margin"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_conf: Mapped[float | None] = mapped_column(Float)
    sku: Mapped[str | None] = mapped_column(String(100))
    sku_conf: Mapped[float | None] = mapped_column(Float)
    margin: Mapped[float | None] = mapped_column(Float)
    top: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LabelClaim(Base):
    """An image shown to one labeller, so that another does not get it in the same minutes."""

    __tablename__ = "label_claims"

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    user: Mapped[str] = mapped_column(String(100), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class ApiRequest(Base):
    """One request to the prediction API (usage, latency, answers)."""

    __tablename__ = "api_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    endpoint: Mapped[str] = mapped_column(String(50))
    status_code: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    run_id: Mapped[int | None] = mapped_column(Integer)
    model_name: Mapped[str | None] = mapped_column(String(200))
    sku: Mapped[str | None] = mapped_column(String(100))
    n_images: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
