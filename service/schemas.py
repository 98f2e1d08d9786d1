"""Response models: what the OpenAPI document promises.
Boxes are COCO [x, y, w, h] in original-image pixels."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models.assembly import check_height_ratio
from models.confirm import MIN_SCORE as CONFIRM_MIN_SCORE

MAX_ALTERNATIVES = 10
MAX_CONFIRM_NUMBERS = 100  # numbers one /v1/confirm may ask about: a long street's
HOUSE_NUMBER_PATTERN = (
    r"^[0-9]{1,15}$"  # a number asked about: digits (038 is 38), exact as a JSON number anywhere
)
HouseNumber = Annotated[str, Field(pattern=HOUSE_NUMBER_PATTERN)]


class DigitDetection(BaseModel):
    bbox: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=4,
        max_length=4,
        description="[x, y, width, height] in pixels of the uploaded (EXIF-upright) image",
    )
    category_id: int = Field(ge=1, le=10, description="COCO category: digit + 1")
    digit: int = Field(ge=0, le=9)
    score: float = Field(ge=0.0, le=1.0)
    fit: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the box refiner's estimate of this box's IoU with the digit's true box (null without "
        "a fit head); the evaluator ranks boxes by score x fit",
    )
    quality: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the rescorer's estimate of the share of COCO's IoU thresholds (0.50-0.95) at which this "
        "is the right digit in the right box (null without a rescorer); the evaluator then ranks boxes by "
        "sqrt(score x fit x quality)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DigitDetection:
        if self.bbox[2] < 0 or self.bbox[3] < 0:
            raise ValueError("bbox width and height must be >= 0")
        if self.category_id != self.digit + 1:
            raise ValueError("category_id must be digit + 1")
        return self


class Timing(BaseModel):
    decode_ms: float = Field(description="reading and decoding this image")
    inference_ms: float = Field(description="queue wait plus model time for the request's images")
    total_ms: float = Field(description="from request start to this result")


class DetectResult(BaseModel):
    index: int = Field(description="position of the image in the request")
    width: int
    height: int
    detections: list[DigitDetection]
    sites: list[DigitDetection] = Field(
        description="the digit sites the number is read from: one per place, after the reader's second "
        "opinion (the detections themselves when the model has no reader); /v1/assemble takes these"
    )
    timing: Timing


class DetectResponse(BaseModel):
    results: list[DetectResult]


class AlternativeReading(BaseModel):
    """Another reading of the photo, one edit from the number read (models/alternatives.py)."""

    text: str = Field(description="digits left to right")
    number: int
    edit: Literal["insert", "swap", "drop"] = Field(
        description="insert: a digit the assembly left out of the number's row; swap: a used digit read as "
        "the detector's other digit on its box; drop: a used digit left out"
    )
    score: float = Field(
        ge=0.0,
        le=1.0,
        description="how sure the edit is: the inserted or swapped-in digit's score, 1 - the dropped "
        "digit's. It ranks the alternatives; it is not the probability that the number is right",
    )
    digits: list[DigitDetection] = Field(description="the digits of this reading, left to right")


ALTERNATIVES_DESCRIPTION = (
    "with ?alternatives=k (or `alternatives` in the body), up to k other readings one edit away, surest "
    "edit first; for a caller that can check numbers against something else, such as an address register. "
    "On the validation split the labelled number is the one read for 86 % of photos, and the one read or "
    "among its first 1 / 3 / 5 alternatives for 90 / 93 / 94 %"
)


class RecognizeResult(BaseModel):
    index: int
    width: int
    height: int
    text: str = Field(description="digits left to right; empty when none survives")
    number: int = Field(description="the number as an integer; -1 when no digit survives")
    digits: list[DigitDetection] = Field(description="the detections used, left to right")
    confidence: float = Field(description="product of the used digits' scores; 0 when none")
    p_correct: float | None = Field(
        None,
        description="the model's verifier's estimate that the number is read right (models/verifier.py); "
        "null when no digit was read, or when the checkpoint has no verifier fitted on the pipeline served",
    )
    alternatives: list[AlternativeReading] = Field(default_factory=list, description=ALTERNATIVES_DESCRIPTION)
    timing: Timing


def _digit(bbox: list[float], digit: int, score: float) -> dict[str, Any]:
    return {
        "bbox": bbox,
        "category_id": digit + 1,
        "digit": digit,
        "score": score,
        "fit": None,
        "quality": None,
    }


# What the shipped model answered for validation photo 102 with ?alternatives=1 (stop 124; the
# first request after start, on the CPU), shown in /docs
_FIVE_BOX, _ZERO_BOX = [22.94, 2.85, 13.85, 22.78], [38.09, 2.49, 13.1, 23.49]
RECOGNIZE_EXAMPLE: dict[str, Any] = {
    "results": [
        {
            "index": 0,
            "width": 74,
            "height": 32,
            "text": "50",
            "number": 50,
            "digits": [_digit(_FIVE_BOX, 5, 0.99236), _digit(_ZERO_BOX, 0, 1.0)],
            "confidence": 0.99236,
            "p_correct": 0.92493,
            "alternatives": [
                {
                    "text": "59",
                    "number": 59,
                    "edit": "swap",
                    "score": 0.0858,
                    "digits": [_digit(_FIVE_BOX, 5, 0.99236), _digit(_ZERO_BOX, 9, 0.0858)],
                }
            ],
            "timing": {"decode_ms": 0.65, "inference_ms": 65.62, "total_ms": 66.39},
        }
    ]
}


class RecognizeResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [RECOGNIZE_EXAMPLE]})

    results: list[RecognizeResult]


class NumberRead(BaseModel):
    """The number read from the image, as /v1/recognize reads it."""

    text: str = Field(description="digits left to right; empty when none survives")
    number: int = Field(description="the number as an integer; -1 when no digit survives")
    p_correct: float | None = Field(None, description="as in /v1/recognize")


class Confirmed(BaseModel):
    """Which of the numbers asked about an image shows (models/confirm.py)."""

    expected: list[int] = Field(
        description="the numbers asked about, as integers, in the order asked, each once"
    )
    shown: bool = Field(
        description="whether it shows one of them: the number read, or a reading one edit away"
    )
    match: int | None = Field(
        description="the one it shows: the number read where it is one of them, else the one whose "
        "reading one edit away scores highest; null when none passes"
    )
    passing: list[int] = Field(
        description="every number asked about that it shows, surest first (`match` first)"
    )
    how: Literal["read", "alternative"] | None = Field(
        description="how `match` was found. read: it is the number read; alternative: a reading one edit "
        "from it whose edit scores at least min_score (models/confirm.py); null: none passes"
    )
    digits: list[DigitDetection] = Field(
        description="the digits that show `match`, left to right (an alternative's, with its edit); empty "
        "when none passes"
    )
    edit: Literal["insert", "swap", "drop"] | None = Field(
        None, description="for how = alternative, the edit from the number read"
    )
    score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="for how = alternative, the edit's score (as in `alternatives`): not a probability",
    )


class ConfirmResult(Confirmed):
    index: int = Field(description="position of the image in the request")
    width: int
    height: int
    read: NumberRead
    timing: Timing


# What the shipped model answered for validation photo 10917 (labelled 179, read 129), asked about
# 175, 177, 179, 181 and 183 (stop 125; the fourth request after start, on the CPU), shown in /docs
_ONE_BOX, _TWO_BOX, _NINE_BOX = (
    [144.68, 20.76, 11.9, 29.12],
    [156.0, 24.6, 15.68, 35.83],
    [169.95, 44.25, 14.96, 32.6],
)
CONFIRM_EXAMPLE: dict[str, Any] = {
    "results": [
        {
            "expected": [175, 177, 179, 181, 183],
            "shown": True,
            "match": 179,
            "passing": [179],
            "how": "alternative",
            "digits": [
                _digit(_ONE_BOX, 1, 0.79837),
                _digit(_TWO_BOX, 7, 0.71505),
                _digit(_NINE_BOX, 9, 0.97629),
            ],
            "edit": "swap",
            "score": 0.71505,
            "index": 0,
            "width": 289,
            "height": 97,
            "read": {"text": "129", "number": 129, "p_correct": 0.21158},
            "timing": {"decode_ms": 1.24, "inference_ms": 40.62, "total_ms": 41.87},
        }
    ]
}


class ConfirmResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [CONFIRM_EXAMPLE]})

    results: list[ConfirmResult]


class AssembleRequest(BaseModel):
    """Digit sites (`sites` as /v1/detect returned them; `detections` there give the detector's own
    reading) and thresholds; omitted thresholds are the service's."""

    detections: list[DigitDetection] = Field(max_length=1000)
    boxes: list[DigitDetection] | None = Field(
        None,
        max_length=1000,
        description="/v1/detect's `detections` of the same image: with them, and the service's own "
        "thresholds, the answer has p_correct",
    )
    score_threshold: float | None = Field(None, ge=0.0, le=1.0)
    iou_threshold: float | None = Field(None, ge=0.0, le=1.0, description="0 turns IoU de-dup off")
    center_distance_ratio: float | None = Field(None, ge=0.0, le=5.0)
    height_ratio: Annotated[float, AfterValidator(check_height_ratio)] | None = Field(
        None, le=10.0, description="drop digits this many times taller or shorter than the others; 0 = off"
    )
    read_columns: bool | None = Field(
        None, description="read digits stacked one above the other top to bottom; false: left to right"
    )
    alternatives: int = Field(
        0,
        ge=0,
        le=MAX_ALTERNATIVES,
        description="up to this many other readings one edit away (swaps need `boxes`)",
    )
    confirm: list[HouseNumber] | None = Field(
        None,
        min_length=1,
        max_length=MAX_CONFIRM_NUMBERS,
        description="numbers: also which of them the image shows, as /v1/confirm answers (swaps need "
        "`boxes`)",
    )
    min_score: float | None = Field(
        CONFIRM_MIN_SCORE,
        ge=0.0,
        le=1.0,
        description="with `confirm`: a reading one edit away shows it from this edit score; null: only "
        "the number read",
    )


class AssembleResponse(BaseModel):
    text: str
    number: int
    digits: list[DigitDetection]
    confidence: float
    p_correct: float | None = Field(
        None,
        description="as in /v1/recognize; only with `boxes` and the service's own thresholds, "
        "`read_columns` either way (the verifier holds for those), else null",
    )
    alternatives: list[AlternativeReading] = Field(default_factory=list, description=ALTERNATIVES_DESCRIPTION)
    confirm: Confirmed | None = Field(
        None, description="with `confirm` in the request, which of them it shows"
    )
    thresholds: dict[str, bool | float]


class ImagesJson(BaseModel):
    """A JSON body for /v1/detect and /v1/recognize: `image`, one image in base64, or `images`, a
    list of them. Each may be a data URL (`data:image/png;base64,...`, what a browser's
    FileReader.readAsDataURL gives), in the standard or URL-safe alphabet, padded or not, its lines
    wrapped or not."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(None, description="one image in base64, or a data URL")
    images: list[str] | None = Field(
        None, min_length=1, max_length=256, description="images in base64 or data URLs, read in this order"
    )

    @model_validator(mode="after")
    def _one_way(self) -> ImagesJson:
        if (self.image is None) == (self.images is None):
            raise ValueError("give either `image` (one image in base64) or `images` (a list of them)")
        return self

    def texts(self) -> list[str]:
        """The images' base64 texts in request order."""
        return [self.image] if self.image is not None else list(self.images or [])


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None = Field(
        default=None, description="the response's X-Request-ID: quote it when reporting the error"
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Liveness(BaseModel):
    status: str = "alive"


class Readiness(BaseModel):
    status: str = Field(description="loading, ready, failed or draining")
    reason: str | None = None
    checkpoint: str | None = None
    device: str | None = None


class RequestLimits(BaseModel):
    """What one request may hold on this server (its settings; `digitserve settings`)."""

    max_upload_bytes: int = Field(description="the whole request body; over it: 413")
    max_pixels: int = Field(description="per image; over it: 413")
    max_aspect_ratio: float = Field(description="longer side / shorter side, per image; over it: 422")
    max_images_per_request: int = Field(description="uploads in one request; over it: 422")
    reduce_to_px: int = Field(
        description="a photo at least twice this on its longer side is read reduced (boxes in its own "
        "pixels); 0 = never"
    )
    request_timeout_s: float = Field(description="a request not answered by then gets a 503 timeout")
    formats: list[str] = Field(description="the image formats read, by Pillow's names; others: 415")


class ModelInfo(BaseModel):
    arch: str
    classes: list[str]
    label_map: dict[str, Any]
    input_size: dict[str, int]
    thresholds: dict[str, bool | float]
    zoom: dict[str, bool | int | float] = Field(
        description="the second look and the search in use (models/zoom.py)"
    )
    grain: dict[str, float] = Field(
        default_factory=dict,
        description="the smoothing of grainy photos in use (models/grain.py); threshold 0 = off",
    )
    focus: dict[str, float] = Field(
        default_factory=dict,
        description="the sharpening of blurred photos in use (models/focus.py); gate 0 = off",
    )
    levels: dict[str, float] = Field(
        default_factory=dict,
        description="the stretching of narrow-contrast photos in use (models/levels.py); gate 0 = off",
    )
    balance: dict[str, float] = Field(
        default_factory=dict,
        description="the colour balancing of tinted photos in use (models/balance.py); gate 0 = off",
    )
    widen: dict[str, float] = Field(
        default_factory=dict,
        description="when a photo whose digits come out narrow, as from the side of the street, is read "
        "again widened (models/widen.py); gate 0 = off",
    )
    reader: dict[str, Any] | None = Field(description="the reader in use (models/reread.py); null when none")
    refiner: dict[str, Any] | None = Field(
        None, description="the box refiner in use (models/refiner.py); null when none"
    )
    rescorer: dict[str, Any] | None = Field(
        None, description="the rescorer in use (models/rescorer.py); null when none"
    )
    int8: dict[str, Any] | None = Field(
        None, description="the detector's int8 ranges in use (models/int8.py); null in floating point"
    )
    verifier: dict[str, Any] | None = Field(
        None,
        description="the number verifier behind p_correct: where it was fitted and its cross-validated "
        "figures (models/verifier.py); null when none is in use",
    )
    int8_parts: list[str] = Field(
        default_factory=list,
        description='the parts that run in int8, of "detector", "refiner" and "reader" (models/int8.py); '
        "empty in floating point",
    )
    version: str = Field(
        description="the start of a sha256 over everything a reading depends on (the parts' weights and "
        "settings, thresholds, int8 ranges, photo preparation, verifiers, reduce_to_px); every answer of "
        "/v1/detect, /v1/recognize and /v1/assemble carries it as X-Model-Version"
    )
    weights_sha256: str
    weights_dtype: str
    data_fingerprint: str | None
    training_metrics: dict[str, Any]
    checkpoint: str
    device: str
    host: str = Field(
        description="the CPU the service runs on and its int8 instruction sets (models/host.py): speed "
        "depends on it, and the int8 answers a little",
    )
    limits: RequestLimits = Field(description="what one request may hold on this server")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    words = {
        400: "Empty, truncated or corrupt image",
        401: "Missing or wrong X-API-Key",
        413: "Body over the byte limit, or an image over the pixel limit",
        415: "Not an image, or a format outside the allow-list",
        422: "Wrong field names, or too many images",
        503: "Not ready, draining, overloaded or out of memory",
        500: "An unexpected error, logged with the request's ID",
    }
    return {s: {"model": ErrorResponse, "description": words[s]} for s in statuses}
