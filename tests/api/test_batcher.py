"""The prediction queue: what waits for the model is bounded in pixels, not in images."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from PIL import Image

from inference.api_service import MicroBatcher, Overloaded
from inference.cascade import CascadePrediction


class GatedPredictor:
    """Answers only once the test opens the gate, so requests pile up behind it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seen: list[int] = []

    def predict_images(self, images: Sequence[Image.Image]) -> list[CascadePrediction]:
        self.gate.wait(30)
        self.seen.append(len(images))
        return [
            CascadePrediction(
                model="m",
                model_confidence=0.9,
                sku="s",
                sku_confidence=0.9,
                model_top3=[("m", 0.9)],
                sku_top3=[("s", 0.9)],
                model_unknown=False,
                sku_unknown=False,
            )
            for _ in images
        ]


def _images(n: int, side: int) -> list[Image.Image]:
    return [Image.new("RGB", (side, side)) for _ in range(n)]


def test_pending_pixels_are_bounded_but_an_idle_service_takes_any_request() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(threads=1, max_images=1, max_pending_pixels=1_000_000)
        predictor = GatedPredictor()
        batcher.start()
        try:
            # Over the budget on its own (2 x 1 Mpx), but nothing waits: taken.
            big = asyncio.create_task(batcher.predict(predictor, _images(2, 1000)))
            await asyncio.sleep(0.05)
            assert batcher.pending_pixels == 2_000_000
            # Anything more now waits behind 2 Mpx: refused at once, without waiting.
            with pytest.raises(Overloaded, match="megapixels"):
                await batcher.predict(predictor, _images(1, 10))
            predictor.gate.set()
            assert len(await big) == 2
            assert batcher.pending_pixels == 0
            # Many small images fit where one big one did not.
            small = [batcher.predict(predictor, _images(1, 100)) for _ in range(50)]
            answers = await asyncio.gather(*small)
            assert [len(a) for a in answers] == [1] * 50
        finally:
            predictor.gate.set()
            await batcher.stop()

    asyncio.run(scenario())


def test_a_cancelled_request_frees_its_pixels() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(threads=1, max_images=1, max_pending_pixels=10_000_000)
        predictor = GatedPredictor()
        batcher.start()
        try:
            first = asyncio.create_task(batcher.predict(predictor, _images(1, 1000)))
            second = asyncio.create_task(batcher.predict(predictor, _images(1, 1000)))
            await asyncio.sleep(0.05)
            assert batcher.pending_pixels == 2_000_000
            second.cancel()  # the client went away while waiting
            await asyncio.sleep(0.05)
            assert batcher.pending_pixels == 1_000_000
            predictor.gate.set()
            await first
            await asyncio.sleep(0.05)
            assert batcher.pending_pixels == 0
            assert predictor.seen == [1]  # the cancelled request never reached the model
        finally:
            predictor.gate.set()
            await batcher.stop()

    asyncio.run(scenario())
