"""The errors raised when a checkpoint, or one of the parts it holds, cannot be loaded: each says in
its message which file is missing, damaged or does not fit. Callers that report bad input (the
training tools' exits, the command line reader) catch these and print the message."""

from __future__ import annotations

from models.checkpoint import CheckpointError
from models.int8 import Int8Error
from models.reader import ReaderError
from models.refiner import RefinerError
from models.rescorer import RescorerError
from models.verifier import VerifierError

LOAD_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError,
    Int8Error,
    ReaderError,
    RefinerError,
    RescorerError,
    VerifierError,
)
