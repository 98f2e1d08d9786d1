"""The digitserve HTTP service (FastAPI). Model code comes from `models/`."""
