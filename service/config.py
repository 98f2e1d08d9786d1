"""Service settings: environment variables with the DIGITSERVE_ prefix (e.g. DIGITSERVE_DEVICE=cuda).

List values (API keys, CORS origins) are JSON: DIGITSERVE_API_KEYS='["key-1", "key-2"]'.
Out-of-range values fail at startup with pydantic's message, and a DIGITSERVE_ variable that names no
setting fails it too (`check_environment`). `digitserve settings` prints them all as a table
(`service/settings_doc.py`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.assembly import check_height_ratio
from models.balance import check_balance_gate
from models.widen import check_squat_gate
from models.zoom import check_search_tiles
from service.imaging import MAX_ASPECT_RATIO, REDUCE_TO_PX

SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "default"
TRAINED_CHECKPOINT = Path("runs") / "latest" / "best"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGITSERVE_", extra="forbid", frozen=True)

    checkpoint: Path | None = Field(
        None,
        description="the checkpoint folder to serve",
        json_schema_extra={"default_text": "the shipped model, else runs/latest/best"},
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto",
        description="auto: the CUDA GPU when there is one, else the CPU with a loud warning; cuda: "
        "refuse to start without a GPU",
    )
    score_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="the number assembly keeps digits scoring at least this"
    )
    iou_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the assembly drops a digit overlapping a better one by more "
        "than this IoU; 0 turns this de-duplication off",
    )
    center_distance_ratio: float | None = Field(
        None,
        ge=0.0,
        le=5.0,
        description="the assembly drops a digit whose centre lies closer than this x "
        "the wider box's width to a better one's",
    )
    height_ratio: Annotated[float, AfterValidator(check_height_ratio)] | None = Field(
        None,
        le=10.0,
        description="height rule of the number assembly (models/assembly.py): drop a digit more than this "
        "many times taller or shorter than the number's; 0 = off",
        json_schema_extra={"accepts": "0, or 1-10"},
    )
    read_columns: bool | None = Field(
        None,
        description="the assembly reads digits stacked one above the other (a column) top to bottom "
        "(models/assembly.py, experiment 158); false: every number left to right",
    )
    zoom_below_px: float | None = Field(
        None, ge=0.0, le=10_000.0, description="second look at small digits (models/zoom.py); 0 = off"
    )
    search_tiles: Annotated[int, AfterValidator(check_search_tiles)] | None = Field(
        None,
        le=8,
        json_schema_extra={"accepts": "0, or 2-8"},
        description="where the first pass locates no digit (or always, with search-located), search n x n "
        "tiles of a large photo, more along a long, narrow one (models/zoom.py; n^2 or more detector "
        "passes there); 0 = off",
    )
    side_look: float | None = Field(
        None,
        ge=0.0,
        le=10.0,
        description="where the number reaches within this many digit heights of a photo's left or right "
        "side, read the photo again widened (models/zoom.py); 0 = off",
    )
    search_located: bool | None = Field(
        None,
        description="search the tiles of a large photo also where the first pass locates a digit "
        "(models/zoom.py, experiment 111: more numbers read in large photos, n^2 more passes on each)",
    )
    search_below_p: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="with search-located, search a large photo whose first pass locates a digit only where "
        "the photo read without the search has p_correct below this (models/zoom.py, experiment 112: "
        "fewer photos searched); 1 = every one",
    )
    search_tiles_max: int | None = Field(
        None,
        ge=0,
        le=8,
        description="search a large photo in as many tiles a side as fit, up to this many (models/zoom.py, "
        "experiment 113: more numbers read in large photos); 0 = always search-tiles",
    )
    search_near: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="search a photo whose first pass locates something only in the tiles that a first-pass "
        "detection scoring at least this (no taller than a tile) overlaps (models/zoom.py, experiment 114: "
        "fewer detector passes per searched photo); 0 = every tile",
    )
    grain_threshold: float | None = Field(
        None,
        ge=0.0,
        le=255.0,
        description="blur a photo whose luma grain is at least this many grey levels (std), by a radius "
        "growing with it, before reading it (models/grain.py, experiment 136: grainy photos read far "
        "better); 0 = off",
    )
    sharpen_gate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="sharpen a photo (not smoothed for grain) whose blur measure is at least this "
        "(models/focus.py, experiment 138: photos out of focus read better, 0.6 the gate measured; photos "
        "with smooth backgrounds are sharpened too); 0 = off",
    )
    levels_gate: float | None = Field(
        None,
        ge=0.0,
        le=255.0,
        description="stretch the levels of a photo whose luma spread (1st to 99th percentile) is under this "
        "many grey levels, before reading it (models/levels.py, experiment 154: dark and hazy photos read "
        "far better); 0 = off",
    )
    balance_gate: Annotated[float, AfterValidator(check_balance_gate)] | None = Field(
        None,
        le=100.0,
        json_schema_extra={"accepts": "0, or 1-100"},
        description="balance the colour of a photo whose largest channel mean (linear light) is over this "
        "many times its smallest, more the more it is, before reading it (models/balance.py, experiment "
        "156: photos under a street lamp read better); 0 = off",
    )
    widen_gate: float | None = Field(
        None,
        ge=0.0,
        le=0.99,
        description="read a photo again widened where its digits come out narrower than this share of their "
        "usual width / height (models/widen.py, experiment 159: numbers seen from the side of the street "
        "read far better); 0 = off",
    )
    squat_gate: Annotated[float, AfterValidator(check_squat_gate)] | None = Field(
        None,
        le=10.0,
        json_schema_extra={"accepts": "0, or 1.01-10"},
        description="read a photo again narrowed where its digits come out wider than this many times "
        "their usual width / height (models/widen.py, experiment 159: numbers seen from below read "
        "better); 0 = off",
    )
    use_reader: bool = Field(
        True, description="read digits with the checkpoint's reader too, when it has one (models/reread.py)"
    )
    use_refiner: bool = Field(
        True,
        description="refine boxes with the checkpoint's box refiner, when it has one (models/refiner.py)",
    )
    use_rescorer: bool = Field(
        True,
        description="judge each detection's quality with the checkpoint's rescorer, when it has one and the "
        "box refiner and the reader are on (models/rescorer.py)",
    )
    use_int8: bool = Field(
        True,
        description="on the CPU, run the detector, and the box refiner and reader, in int8 when the "
        "checkpoint has the ranges for them (models/int8.py): faster, answers within noise of float32's",
    )
    max_upload_bytes: int = Field(10 * 2**20, ge=1024, le=2**30, description="whole request body")
    max_pixels: int = Field(25_000_000, ge=1, le=200_000_000, description="per image")
    max_aspect_ratio: float = Field(
        MAX_ASPECT_RATIO, ge=1.0, le=200.0, description="longer side / shorter side, per image"
    )
    reduce_to_px: int = Field(
        REDUCE_TO_PX,
        ge=0,
        le=100_000,
        description="a photo at least twice this on its longer side is read reduced by the largest whole "
        "factor that keeps it at least this; boxes are given in the upload's pixels. 0: never",
    )
    max_images_per_request: int = Field(16, ge=1, le=256, description="uploads in one request")
    queue_depth: int = Field(64, ge=1, le=10_000, description="images waiting for the model")
    # Measured on 2 CPU cores (docs/benchmarks.md): batch 8 gave 1.36x the images/s of batch 1 at
    # concurrency 8 when the detector took a batch in one call; since it takes each image alone
    # (models/zoom.py), 1.04x (the refiner and reader still batch), within noise. The wait applies
    # only while the model is busy: a lone request (concurrency 1) pays none.
    batch_size: int = Field(8, ge=1, le=128, description="images per model call")
    batch_wait_ms: float = Field(
        2.0, ge=0.0, le=1000.0, description="wait for a batch to fill while the model is busy; none when idle"
    )
    request_timeout_s: float = Field(
        30.0, gt=0.0, le=600.0, description="a request the model has not answered by then gets a 503 timeout"
    )
    drain_timeout_s: float = Field(
        20.0,
        ge=0.0,
        le=600.0,
        description="at shutdown (SIGTERM), how long the model may take to finish the images queued",
    )
    api_keys: frozenset[str] = Field(frozenset(), description="accepted X-API-Key values; empty = open")
    cors_origins: tuple[str, ...] = Field((), description="allowed origins; empty = CORS off")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="the service's log; at debug also the health probes' and /metrics' access lines"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: a line for people; json: one JSON object a line for a log collector, with the "
        "access log's request_id, method, path, status and ms as fields (service/logs.py)",
    )


# DIGITSERVE_* variables that are not service settings: the training tools' traceback switch, the
# compose file's host paths and the page test's screenshot folder.
OTHER_VARIABLES = frozenset(
    {"DIGITSERVE_TRACEBACK", "DIGITSERVE_CHECKPOINT_DIR", "DIGITSERVE_DATA_DIR", "DIGITSERVE_SCREENSHOT_DIR"}
)


class UnknownSettingError(ValueError):
    """A DIGITSERVE_* variable that names no setting: a typo would otherwise be ignored in silence
    (DIGITSERVE_API_KEY for DIGITSERVE_API_KEYS would leave the service open)."""


def check_environment(environ: Mapping[str, str]) -> None:
    """UnknownSettingError naming every `DIGITSERVE_*` variable of `environ` (any case, as
    pydantic-settings reads them) that is neither a setting nor one of `OTHER_VARIABLES`, with the
    closest setting's name where one is close."""
    prefix = Settings.model_config.get("env_prefix", "")
    known = {prefix + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    unknown = sorted(n for n in environ if n.upper().startswith(prefix) and n.upper() not in known)
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name.upper(), sorted(known - OTHER_VARIABLES), n=1, cutoff=0.8)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise UnknownSettingError(
        f"{', '.join(parts)}: not a setting of the service; `digitserve settings` lists them"
    )


def resolve_checkpoint(settings: Settings) -> Path:
    """The checkpoint to serve: the setting, else the shipped model, else the newest training run."""
    if settings.checkpoint is not None:
        return settings.checkpoint
    if (SHIPPED_CHECKPOINT / "checkpoint.json").is_file():
        return SHIPPED_CHECKPOINT
    return TRAINED_CHECKPOINT
