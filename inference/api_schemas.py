"""The prediction API's request and response shapes (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from inference.api_usage import UNKNOWN
from inference.cascade import CascadePrediction
from inference.predictor import PhotoAnswer


def _aware(moment: datetime | None) -> datetime | None:
    """The catalogue's naive UTC times, with their zone (RFC 3339 wants an offset)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


UtcTime = Annotated[datetime, AfterValidator(_aware)]


class Candidate(BaseModel):
    name: str = Field(description="A sneaker model name or a SKU style code.")
    confidence: float = Field(ge=0, le=1, description="Calibrated probability.")


class StageAnswer(BaseModel):
    """One stage's answer: the class, or ``unknown`` when the cascade is not sure enough."""

    name: str = Field(description=f'The answer, or "{UNKNOWN}" below the run\'s threshold.')
    confidence: float = Field(ge=0, le=1, description="Confidence of the best candidate.")
    unknown: bool = Field(description="True when the answer is below the threshold.")
    top3: list[Candidate] = Field(description="The best three candidates, best first.")


class SneakerAnswer(BaseModel):
    """One sneaker found in the photo, and the answer for its region."""

    box: list[int] = Field(
        min_length=4,
        max_length=4,
        description="Where it is: [x0, y0, x1, y1] in the photo's pixels.",
    )
    score: float = Field(
        ge=0, le=1, description="How sure the localiser is that a sneaker is there."
    )
    model: StageAnswer
    sku: StageAnswer


class ImageAnswer(BaseModel):
    """The main sneaker's answer in ``model`` and ``sku``; every sneaker found in ``sneakers``."""

    model: StageAnswer = Field(description="Stage 1: the sneaker model (from the gray image).")
    sku: StageAnswer = Field(description="Stage 2: the SKU / style code (from the colour image).")
    sneaker_found: bool = Field(
        default=True,
        description="False when no sneaker was found in the photo (model and sku are then unknown).",
    )
    box: list[int] | None = Field(
        default=None, description="The main sneaker's box [x0, y0, x1, y1] (null: none found)."
    )
    sneakers: list[SneakerAnswer] = Field(
        default_factory=list,
        description="Every sneaker found, the main one first, each classified on its own region.",
    )


class Added(BaseModel):
    image_id: int = Field(description="The photo's image id in the catalogue.")
    region_ids: list[int] = Field(description="The image ids of the sneaker regions cut from it.")


class PredictResponse(ImageAnswer):
    run_id: int = Field(description="The training run whose model answered.")
    added: Added | None = Field(
        default=None, description="With add_to_catalogue=true: what was stored for labelling."
    )
    time_ms: float = Field(description="Time the service took for this request.")


class BatchItem(ImageAnswer):
    index: int = Field(description="Position of the image in the request.")
    filename: str | None = Field(description="The file name the client gave, if any.")


class BatchResponse(BaseModel):
    run_id: int
    predictions: list[BatchItem]
    time_ms: float


class SkuInfo(BaseModel):
    style_code: str
    model: str


class ModelResponse(BaseModel):
    """The run in service."""

    run_id: int
    name: str | None
    status: str
    active: bool = Field(description="Whether this run is the catalogue's active run now.")
    pinned: bool = Field(description="Whether the service was started on this run (--run).")
    created_at: UtcTime | None
    trained_at: UtcTime | None = Field(description="When training finished.")
    loaded_at: UtcTime = Field(description="When this service loaded the run.")
    backbone: str | None = None
    backbone_finetuned: bool | None = None
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    models: list[str] = Field(description="The sneaker models stage 1 knows.")
    skus: list[SkuInfo] = Field(description="The SKUs stage 2 knows, with their model.")
    thresholds: dict[str, float | None] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str | None = None


class HealthResponse(BaseModel):
    status: str = Field(description='"ok" when a model is loaded, else "no_model".')
    run_id: int | None = Field(description="The run in service.")
    message: str | None = Field(
        default=None,
        description="Why no model, or why the active run is not the one in service.",
    )


ERROR_CODES = (
    "bad_request, bad_multipart, missing_file, empty_file, empty_batch, not_an_image, "
    "corrupt_image, client_disconnected (400); unauthorized (401); not_found (404); "
    "method_not_allowed (405); payload_too_large, image_too_large, too_many_pixels, "
    "decompression_bomb, batch_too_large (413); unsupported_media_type (415); "
    "invalid_request (422); internal_error (500); no_model, overloaded (503); "
    "http_error (any other HTTP error)"
)


class ErrorBody(BaseModel):
    code: str = Field(description=f"Machine-readable reason: {ERROR_CODES}.")
    message: str = Field(description="What was wrong, for a person.")


class ErrorResponse(BaseModel):
    error: ErrorBody


def stage(name: str | None, confidence: float, unknown: bool, top3: list[Any]) -> StageAnswer:
    return StageAnswer(
        name=UNKNOWN if unknown or name is None else name,
        confidence=min(max(float(confidence), 0.0), 1.0),
        unknown=unknown or name is None,
        top3=[Candidate(name=n, confidence=min(max(float(c), 0.0), 1.0)) for n, c in top3],
    )


def _stages(p: CascadePrediction) -> dict[str, StageAnswer]:
    return {
        "model": stage(p.model, p.model_confidence, p.model_unknown, p.model_top3),
        "sku": stage(p.sku, p.sku_confidence, p.sku_unknown, p.sku_top3),
    }


def image_answer(p: PhotoAnswer | CascadePrediction) -> dict[str, Any]:
    """A photo's answer as the API's fields: the main sneaker's ``model`` and ``sku`` (as
    before localisation), ``sneaker_found``, its ``box``, and every sneaker found."""
    if isinstance(p, CascadePrediction):  # a whole picture, not searched for sneakers
        return _stages(p)
    return {
        **_stages(p.main),
        "sneaker_found": p.sneaker_found,
        "box": list(p.sneakers[0].region.box) if p.sneakers else None,
        "sneakers": [
            SneakerAnswer(
                box=list(s.region.box),
                score=min(max(s.region.score, 0.0), 1.0),
                **_stages(s.prediction),
            )
            for s in p.sneakers
        ],
    }
