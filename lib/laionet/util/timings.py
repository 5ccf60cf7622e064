"""Wall time per named step of a stage, saved as it goes."""

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from laionet.util.files import write_json


class Timings(dict):
    """``with timings("embed"): ...`` records wall seconds per named step (saved to ``path``)."""

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__()
        self.path = Path(path) if path else None

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - t0, 3)
            if self.path is not None:
                write_json(dict(self), self.path)
