"""Every endpoint of the prediction API, over HTTP against the real server."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from inference.api_usage import UNKNOWN
from tests.api.helpers import MODELS, SKUS, png_bytes, sneaker_jpeg

SKU_CODES = {s for s, _ in SKUS}


def _check_stage(answer: dict, classes: set[str]) -> None:
    assert set(answer) == {"name", "confidence", "unknown", "top3"}
    assert 0.0 <= answer["confidence"] <= 1.0
    assert 1 <= len(answer["top3"]) <= 3
    confidences = [c["confidence"] for c in answer["top3"]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(c["name"] in classes for c in answer["top3"])
    if answer["unknown"]:
        assert answer["name"] == UNKNOWN
    else:
        assert answer["name"] == answer["top3"][0]["name"]
        assert answer["confidence"] == answer["top3"][0]["confidence"]


def test_healthz_names_the_run_in_service(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "run_id": 1, "message": None}


def test_predict_multipart_answers_model_and_sku(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post("/v1/predict", files={"file": ("shoe.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run_id"] == 1
    assert body["time_ms"] > 0
    _check_stage(body["model"], set(MODELS))
    _check_stage(body["sku"], SKU_CODES)


def test_predict_raw_body_gives_the_same_answer_as_multipart(
    client: httpx.Client, jpeg: bytes
) -> None:
    multipart = client.post("/v1/predict", files={"file": ("shoe.jpg", jpeg, "image/jpeg")})
    raw = client.post("/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    for stage in ("model", "sku"):
        assert raw.json()[stage] == multipart.json()[stage]


def test_predict_png_with_transparency(client: httpx.Client) -> None:
    r = client.post("/v1/predict", content=png_bytes(), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["top3"]


def test_batch_answers_each_image_in_order(client: httpx.Client) -> None:
    images = [sneaker_jpeg(320, 400, seed=s) for s in range(3)]
    files = [("files", (f"s{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run_id"] == 1
    assert [p["index"] for p in body["predictions"]] == [0, 1, 2]
    assert [p["filename"] for p in body["predictions"]] == ["s0.jpg", "s1.jpg", "s2.jpg"]
    # Batched answers are the same as one image at a time.
    for i, data in enumerate(images):
        single = client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"})
        assert single.json()["model"]["name"] == body["predictions"][i]["model"]["name"]
        assert single.json()["sku"]["name"] == body["predictions"][i]["sku"]["name"]


def test_model_describes_the_run_in_service(client: httpx.Client) -> None:
    r = client.get("/v1/model")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["run_id"] == 1
    assert info["name"] == "first"
    assert info["active"] is True
    assert info["pinned"] is False
    assert info["models"] == MODELS
    assert {s["style_code"] for s in info["skus"]} == SKU_CODES
    assert info["metrics"] == {"model_top1": 0.5, "sku_top1": 0.25}
    assert info["trained_at"] is not None
    assert info["backbone"] == "tiny"
    assert "model_min_confidence" in info["thresholds"]


def test_openapi_schema_describes_every_endpoint(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/healthz"} <= set(paths)
    body = paths["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert "image/jpeg" in body
    responses = paths["/v1/predict"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "503"} <= set(responses)
    assert "PredictResponse" in schema["components"]["schemas"]
    assert "ErrorResponse" in schema["components"]["schemas"]


def test_unknown_route_is_a_json_404(client: httpx.Client) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_raw_body_as_octet_stream(client: httpx.Client, jpeg: bytes) -> None:
    """Many HTTP clients send raw bytes as application/octet-stream: the bytes say the format."""
    typed = client.post("/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"})
    octet = client.post(
        "/v1/predict", content=jpeg, headers={"Content-Type": "application/octet-stream"}
    )
    assert octet.status_code == 200, octet.text
    assert octet.json()["model"] == typed.json()["model"]


def _photo(mode: str, fmt: str, **save: object) -> bytes:
    """The test photo in another mode and format, the way shops and phones serve them."""
    img = Image.open(io.BytesIO(sneaker_jpeg(320, 400, seed=5))).convert("RGB")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257)
    elif mode == "RGBA":
        arr = np.asarray(img.convert("RGBA")).copy()
        arr[(arr[..., :3] > 235).all(-1), 3] = 0  # the white background made transparent
        img = Image.fromarray(arr)
    elif mode != "RGB":
        img = img.convert(mode)
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt", "ctype"),
    [
        ("CMYK", "JPEG", "image/jpeg"),
        ("I;16", "PNG", "image/png"),
        ("RGBA", "PNG", "image/png"),
        ("P", "GIF", "image/gif"),
        ("RGB", "WEBP", "image/webp"),
    ],
)
def test_every_format_a_shop_serves(client: httpx.Client, mode: str, fmt: str, ctype: str) -> None:
    data = _photo(mode, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    r = client.post("/v1/predict", files={"file": (f"shoe.{fmt.lower()}", data, ctype)})
    assert r.status_code == 200, r.text
    _check_stage(r.json()["model"], set(MODELS))


def test_unicode_file_names_come_back_as_sent(client: httpx.Client) -> None:
    small = sneaker_jpeg(64, 80)
    names = ["chaussure été.jpg", "靴 スニーカー.jpg", "emoji 👟.jpg"]
    files = [("files", (n, small, "image/jpeg")) for n in names]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    assert [p["filename"] for p in r.json()["predictions"]] == names


def test_rfc5987_file_name_beside_the_plain_one(client: httpx.Client) -> None:
    """Some clients send ``filename*=UTF-8''…`` after ``filename=``: the part is still a file."""
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        "filename=\"shoe.jpg\"; filename*=UTF-8''%E9%9D%B4.jpg\r\n"
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + sneaker_jpeg(64, 80) + f"\r\n--{boundary}--\r\n".encode()
    r = client.post(
        "/v1/predict/batch",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["filename"] in ("shoe.jpg", "靴.jpg")


def test_healthz_answers_head(client: httpx.Client) -> None:
    r = client.head("/healthz")
    assert r.status_code == 200
    assert r.content == b""


def test_openapi_names_operations_and_error_codes(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    ids = {op["operationId"] for methods in schema["paths"].values() for op in methods.values()}
    assert ids == {"healthz", "get_model", "predict", "predict_batch"}
    raw = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" in raw
    code = schema["components"]["schemas"]["ErrorBody"]["properties"]["code"]
    for name in ("not_an_image", "too_many_pixels", "decompression_bomb", "no_model"):
        assert name in code["description"]
    for path, methods in schema["paths"].items():
        for op in methods.values():
            if path != "/healthz":
                assert op["security"], path
                assert {"401", "503"} <= set(op["responses"]), path
            for status, response in op["responses"].items():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                if status.startswith(("4", "5")) and path != "/healthz":
                    assert ref.endswith("/ErrorResponse"), (path, status)
