"""Model code shared by training, evaluation and the service: label map, detector builder,
checkpoint format and the number-assembly rule."""
