"""GET /v1/model: what is being served."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from models.checkpoint import label_map_document
from models.host import cpu_info
from models.labels import DIGIT_NAMES
from service.deps import ApiKeyDep, StateDep
from service.imaging import ALLOWED_FORMATS
from service.schemas import ModelInfo, RequestLimits, error_responses

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model=ModelInfo, responses=error_responses(401, 500, 503))
async def model_info(state: StateDep, _: ApiKeyDep) -> ModelInfo:
    """Architecture, classes, input size, thresholds, zoom, colour balance, stretching, grain
    smoothing, sharpening, widened readings, reader, refiner, rescorer, int8 and verifier in force,
    weights hash and training metrics, the CPU it runs on, and what one request may hold (`limits`)."""
    predictor, _batcher = state.require_ready()
    meta = predictor.meta
    return ModelInfo(
        arch=meta.detector.arch,
        classes=["background", *DIGIT_NAMES],
        label_map=label_map_document(),
        input_size={"min_size": meta.detector.min_size, "max_size": meta.detector.max_size},
        thresholds=asdict(predictor.assembly),
        zoom=asdict(predictor.zoom),
        **predictor.photo.settings(),
        widen=asdict(predictor.widen),
        reader=predictor.reader[1].to_dict() if predictor.reader else None,
        refiner=predictor.refiner[1].to_dict() if predictor.refiner else None,
        rescorer=predictor.rescorer[1].to_dict() if predictor.rescorer else None,
        int8=predictor.int8.to_dict() if predictor.int8 else None,
        int8_parts=predictor.int8_parts,
        verifier=(
            {"fitted_on": predictor.verifier[1].fitted_on, "metrics": predictor.verifier[1].metrics}
            if predictor.verifier
            else None
        ),
        version=state.version,
        weights_sha256=meta.weights_sha256,
        weights_dtype=meta.weights_dtype,
        data_fingerprint=meta.data_fingerprint,
        training_metrics=meta.metrics,
        checkpoint=str(predictor.checkpoint),
        device=str(predictor.device),
        host=cpu_info().describe(),
        limits=RequestLimits(
            formats=sorted(ALLOWED_FORMATS),
            **{k: getattr(state.settings, k) for k in RequestLimits.model_fields if k != "formats"},
        ),
    )
