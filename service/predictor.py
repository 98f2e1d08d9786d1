"""The Predictor owns the model (and the checkpoint's box refiner and reader, if it has them), its
device and its thresholds: preprocess (decode) -> inference -> postprocess (assembly) as separate
steps. Only `detect` touches the models."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from models.assembly import AssembledNumber, AssemblyParams, Detection, assemble_number
from models.checkpoint import CheckpointMeta, resolve_checkpoint_dir
from models.int8 import Int8Meta, int8_parts
from models.optimize import load_prepared_detector, load_prepared_reader, load_prepared_refiner
from models.photo import PhotoParams, photo_params, prepare_photo
from models.reader import DigitReader, ReaderMeta
from models.refiner import BoxRefiner, RefinerMeta, refine_images
from models.reread import Findings, read_boxes, reread_detections, reread_images
from models.rescorer import Rescorer, RescorerMeta, load_checkpoint_rescorer, rescore_images
from models.verifier import (
    NumberVerifier,
    VerifierMeta,
    current_verifier,
    gate_verifier,
    pipeline_identity,
    reading_p_correct,
)
from models.widen import WidenParams, next_factor, prefer, widen, widen_params
from models.zoom import (
    ZoomParams,
    detect_alone,
    detect_with_zoom,
    first_reading,
    input_sizes,
    locates,
    search_again,
)
from service.errors import ModelOverloadedError
from service.imaging import to_model_input

log = logging.getLogger(__name__)


class Predictor:
    """A loaded detector (and optional box refiner and reader) on one device. Images are uint8 RGB
    arrays [H, W, 3]; detections and digit sites come back with xyxy boxes in the pixels of the image
    as given."""

    def __init__(
        self,
        model: FasterRCNN,
        meta: CheckpointMeta,
        device: torch.device,
        assembly: AssemblyParams,
        checkpoint: Path,
        zoom: ZoomParams,
        reader: tuple[DigitReader, ReaderMeta] | None = None,
        refiner: tuple[BoxRefiner, RefinerMeta] | None = None,
        rescorer: tuple[Rescorer, RescorerMeta] | None = None,
        int8: Int8Meta | None = None,
        verifier: tuple[NumberVerifier, VerifierMeta] | None = None,
        gate: tuple[NumberVerifier, VerifierMeta] | None = None,
        photo: PhotoParams | None = None,
        widen: WidenParams | None = None,
    ) -> None:
        self.model, self.meta, self.device, self.assembly = model, meta, device, assembly
        self.checkpoint, self.zoom, self.reader, self.refiner = checkpoint, zoom, reader, refiner
        self.rescorer, self.int8, self.verifier, self.gate = rescorer, int8, verifier, gate
        self.photo = photo or PhotoParams()
        self.grain, self.focus, self.levels, self.balance = self.photo
        self.widen = widen or WidenParams()

    @property
    def identity(self) -> dict[str, Any]:
        """This pipeline as a verifier records it (`models.verifier.pipeline_identity`)."""
        parts = {"refiner": self.refiner, "reader": self.reader, "rescorer": self.rescorer}
        return pipeline_identity(
            self.meta.weights_sha256,
            self.assembly,
            self.zoom,
            {name: part[1].to_dict() if part else None for name, part in parts.items()},
        )

    @cached_property
    def version(self) -> str:
        """What answers, in 12 hex digits: the start of a sha256 over everything a reading depends on
        (the pipeline's identity: the detector's weights, the other parts' weights and settings, the
        thresholds and the zoom; the order a number's digits are read in; the int8 ranges and the
        parts that run in int8; the photo preparation; when a photo is read again widened or
        narrowed; the verifiers behind p_correct and the search). Servers of one version run the
        same model with the same settings; int8 still reads a little differently from one kind of
        CPU to another (`host` in /v1/model). Worked out on first use (~0.35 ms), once loaded: the
        service asks for it at startup."""
        described = {
            "pipeline": self.identity,
            "read_columns": self.assembly.read_columns,
            "int8": self.int8.sha256 if self.int8 else None,
            "int8_parts": self.int8_parts,
            **self.photo.settings(),
            "widen": asdict(self.widen),
            "verifier": asdict(self.verifier[0]) if self.verifier else None,
            "gate": asdict(self.gate[0]) if self.gate else None,
        }
        return short_digest(described)

    @property
    def int8_parts(self) -> list[str]:
        """Which of "detector", "refiner" and "reader" run in int8 (models/int8.py), in that order."""
        return int8_parts(
            {
                "detector": self.model,
                "refiner": self.refiner[0] if self.refiner else None,
                "reader": self.reader[0] if self.reader else None,
            }
        )

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        device: torch.device,
        *,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        center_distance_ratio: float | None = None,
        height_ratio: float | None = None,
        read_columns: bool | None = None,
        zoom_below_px: float | None = None,
        search_tiles: int | None = None,
        side_look: float | None = None,
        search_located: bool | None = None,
        search_below_p: float | None = None,
        search_tiles_max: int | None = None,
        search_near: float | None = None,
        grain_threshold: float | None = None,
        sharpen_gate: float | None = None,
        levels_gate: float | None = None,
        balance_gate: float | None = None,
        widen_gate: float | None = None,
        squat_gate: float | None = None,
        use_reader: bool = True,
        use_refiner: bool = True,
        use_rescorer: bool = True,
        use_int8: bool = True,
    ) -> Predictor:
        """Verify and load `checkpoint` (with its reader, box refiner and rescorer, unless
        `use_reader` / `use_refiner` / `use_rescorer` is False; no rescorer without the refiner and
        the reader, whose outputs it needs) and rewrite
        the model for serving (models.optimize: same outputs, faster; on the CPU in int8 when the
        checkpoint has an int8 part and `use_int8`, models/int8.py); thresholds, the zoom
        trigger, the search tiles (with `search_located`, `search_below_p`, `search_tiles_max` and
        `search_near`) and
        the side look left as None come from the checkpoint. The checkpoint's number verifier is used
        when it was fitted on this very pipeline (parts and settings; `models.verifier
        .current_verifier`), and to decide which large photos to search (`ZoomParams.gated`) when
        fitted on it up to `search_below_p` and `search_near` (`models.verifier.gate_verifier`).
        Strongly tinted photos are balanced first, photos of narrow contrast stretched, then grainy
        ones smoothed and, where `sharpen_gate` asks, blurred ones sharpened (`models.photo`;
        `balance_gate`, `levels_gate`, `grain_threshold`, `sharpen_gate` None: `models.balance`',
        `models.levels`', `models.grain`'s and `models.focus`' defaults, on, on, on and off; 0: off).
        A photo whose digits come out narrow, as seen from the side, is read again widened
        (`models.widen`), and one whose digits come out squat, as from below, narrowed (`widen_gate`,
        `squat_gate` None: `models.widen`'s defaults; 0: off)."""
        model, meta, int8 = load_prepared_detector(checkpoint, device, use_int8=use_int8)
        reader = load_prepared_reader(checkpoint, device, use_int8=use_int8) if use_reader else None
        refiner = load_prepared_refiner(checkpoint, device, use_int8=use_int8) if use_refiner else None
        rescorer = load_checkpoint_rescorer(checkpoint) if use_rescorer and refiner and reader else None
        overrides: dict[str, Any] = {
            "score_threshold": score_threshold,
            "iou_threshold": iou_threshold,
            "center_distance_ratio": center_distance_ratio,
            "height_ratio": height_ratio,
            "read_columns": read_columns,
        }
        assembly = replace(meta.assembly, **{k: v for k, v in overrides.items() if v is not None})
        zoom = meta.zoom.with_trigger(
            zoom_below_px,
            search_tiles,
            side_look,
            search_located=search_located,
            search_below_p=search_below_p,
            search_tiles_max=search_tiles_max,
            search_near=search_near,
        )
        photo = photo_params(grain_threshold, sharpen_gate, levels_gate, balance_gate)
        predictor = cls(
            model,
            meta,
            device,
            assembly,
            checkpoint,
            zoom,
            reader,
            refiner,
            rescorer,
            int8,
            photo=photo,
            widen=widen_params(widen_gate, squat_gate),
        )
        directory = resolve_checkpoint_dir(checkpoint)
        predictor.verifier = current_verifier(directory, predictor.identity)
        predictor.gate = gate_verifier(directory, predictor.identity) if zoom.gated else None
        return predictor

    def detect(self, images: list[np.ndarray]) -> list[Findings]:
        """A detector call for each image of the batch (preprocess, tinted photos balanced, narrow-contrast
        ones stretched, grainy ones smoothed and blurred ones sharpened first (`models.photo`) -> inference
        -> postprocess; `models.zoom.detect_alone`: an image's answer does not depend on the others), a
        second one over the crop of each image whose digits came out small (models/zoom.py) when zoom is on,
        one refiner call over every detected box of the batch (models/refiner.py) when there is a box
        refiner, and one reader call over every digit site (models/reread.py) when there is a reader; with a
        rescorer, the reader reads every detected box instead, the rescorer sets each detection's `quality`
        from that (models/rescorer.py), and the sites reuse those readings.
        Where the search of large photos is limited to doubtful readings (`ZoomParams.gated`, with a
        verifier for it), each image is read without that search first, and those `models.zoom
        .search_again` picks are read again with it from the same first pass. An image whose digits
        came out narrow, as from the side of the street, is read again widened, and one whose digits
        came out squat, as from below, narrowed (`_widened`, `models.widen`). A CUDA out-of-memory
        error frees the cache and becomes ModelOverloadedError, so the next call starts clean."""
        try:
            with torch.inference_mode():
                prepared = [prepare_photo(image, self.photo)[0] for image in images]
                found = self._detect([self._input(pixels) for pixels in prepared])
                return self._widened(prepared, found) if self.widen.on else found
        except torch.cuda.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.error("out of GPU memory on a batch of %d images; cache freed", len(images))
            raise ModelOverloadedError(
                "the model ran out of GPU memory; retry, or send fewer images", headers={"Retry-After": "1"}
            ) from exc

    def _detect(self, inputs: list[torch.Tensor]) -> list[Findings]:
        """`detect` over `inputs` (float RGB FloatTensor[3, H, W] in [0, 1] on the device, the photo
        steps done) without the readings made again widened or narrowed; under
        torch.inference_mode()."""
        if self.gate is None or not self.zoom.gated:
            return self._read(inputs, self.zoom)
        firsts = [detect_alone(self.model, x) for x in inputs]
        found = self._read(inputs, first_reading(self.zoom), firsts)
        min_size, max_size = input_sizes(self.model)
        again = [
            i
            for i, (x, first, f) in enumerate(zip(inputs, firsts, found, strict=True))
            if search_again(
                int(x.shape[-2]),
                int(x.shape[-1]),
                min_size,
                max_size,
                self.zoom,
                locates(first, self.zoom),
                reading_p_correct(self.gate[0], self.assemble(f.sites), f.sites, f.detections),
            )
        ]
        if again:
            redone = self._read([inputs[i] for i in again], self.zoom, [firsts[i] for i in again])
            for i, findings in zip(again, redone, strict=True):
                found[i] = findings
        return found

    def _input(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 RGB `pixels` [H, W, 3] -> the detector's input, FloatTensor[3, H, W] in [0, 1] on the
        device."""
        return to_model_input(pixels).to(self.device, non_blocking=True)

    def _widened(self, prepared: list[np.ndarray], found: list[Findings]) -> list[Findings]:
        """`found` (the findings of the `prepared` photos, uint8 RGB [H, W, 3] after the photo steps, as
        `_detect` gives them) with each photo whose digits came out narrow read again widened, and
        each whose digits came out squat narrowed (`models.widen`, experiment 159): up to
        `WidenParams.rounds` times, each resizing the photo as it was by `next_factor`, that reading's
        boxes scaled back into its pixels and kept where `prefer` holds it likelier right than the
        one kept."""
        kept, last = list(found), list(found)
        judged: dict[int, tuple[bool, float | None]] = {}  # the kept reading's, worked out where needed
        factors = [1.0] * len(prepared)
        for _ in range(self.widen.rounds):
            todo = [
                (i, factor)
                for i in range(len(prepared))
                if (factor := next_factor(last[i].sites, factors[i], self.widen)) is not None
            ]
            if not todo:
                break
            redone = self._detect([self._input(widen(prepared[i], factor)) for i, factor in todo])
            for (i, factor), findings in zip(todo, redone, strict=True):
                last[i], factors[i] = findings.scaled(1.0 / factor, 1.0), factor
                read, p = self._judged(last[i])
                if i not in judged:  # the reading as it is, the first time the photo is widened
                    judged[i] = self._judged(kept[i])
                if prefer(p, judged[i][1], read, judged[i][0]):
                    kept[i], judged[i] = last[i], (read, p)
        return kept

    def _judged(self, findings: Findings) -> tuple[bool, float | None]:
        """Whether `findings` read a number, and the verifier's p_correct of it (None without one)."""
        number = self.assemble(findings.sites)
        return number.value >= 0, self.p_correct(number, findings)

    def _read(
        self, inputs: list[torch.Tensor], zoom: ZoomParams, first: list[list[Detection]] | None = None
    ) -> list[Findings]:
        """`detect`'s passes over `inputs` (float RGB FloatTensor[3, H, W] in [0, 1] on the device)
        with the zoom settings `zoom`, from their first passes `first` where given
        (`models.zoom.detect_with_zoom`); under torch.inference_mode()."""
        detections = detect_with_zoom(self.model, inputs, zoom, first)
        if self.refiner is not None:
            refiner, refine_meta = self.refiner
            detections = refine_images(refiner, inputs, detections, refine_meta.params)
        if self.reader is None:
            return [Findings(found, found) for found in detections]
        reader, meta = self.reader
        if self.rescorer is None:
            sites = reread_images(reader, inputs, detections, meta.reread, meta.crop)
        else:
            probs = read_boxes(reader, inputs, [[d.box_xyxy for d in f] for f in detections], meta.crop)
            sizes = [(int(x.shape[-1]), int(x.shape[-2])) for x in inputs]
            detections = rescore_images(self.rescorer[0], detections, sizes, probs)
            sites = reread_detections(detections, probs, meta.reread)
        return [Findings(d, s) for d, s in zip(detections, sites, strict=True)]

    def assemble(self, sites: list[Detection]) -> AssembledNumber:
        """The shared number-assembly rule with this service's thresholds, over an image's digit sites
        (`Findings.sites`)."""
        return assemble_number(sites, self.assembly)

    def p_correct(self, number: AssembledNumber, findings: Findings) -> float | None:
        """The verifier's estimate that `number` (assembled from `findings.sites`) is read right;
        None without a current verifier or when no digit was read."""
        if self.verifier is None:
            return None
        return reading_p_correct(self.verifier[0], number, findings.sites, findings.detections)

    def warm_up(self, runs: int = 2) -> float:
        """Run the model on a blank street-number-sized image; returns the last run's ms."""
        image = np.full((56, 126, 3), 128, dtype=np.uint8)
        elapsed = 0.0
        for _ in range(runs):
            start = time.perf_counter()
            self.detect([image])
            elapsed = (time.perf_counter() - start) * 1000
        return elapsed


def serving_version(predictor: Predictor, reduce_to_px: int) -> str:
    """X-Model-Version and /v1/model's `version`, in 12 hex digits: the predictor's version
    (`Predictor.version`: its parts, their settings and thresholds) with the one setting outside it
    that changes readings, `reduce_to_px` (large photos are read reduced, `service.imaging`). The
    command line's readings in this process carry it too, at the service's default."""
    return short_digest({"predictor": predictor.version, "reduce_to_px": reduce_to_px})


def short_digest(described: dict[str, Any]) -> str:
    """The first 12 hex digits of the sha256 of `described` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
