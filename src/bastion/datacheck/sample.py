"""A uniform random sample of a dataset's rows, drawn in one streamed pass with bounded memory.

Each row gets a random key from a seeded generator; the sample is the `size` rows with the
smallest keys (bottom-k sampling), kept batch by batch, so at most `size` + one batch of rows are
in memory. Rows keep their 0-based index. `Sampler` is fed batches by a caller that also does
other work in the same pass (drift counts categories while it samples); `sample_rows` reads the
dataset itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy
    import pandas
    import pyarrow

    from bastion.datacheck.dataset import Dataset

SEED = 20_240_917


class Sampler:
    """Keeps a uniform sample of at most `size` rows of the batches it is given."""

    def __init__(self, size: int, seed: int = SEED) -> None:
        import numpy as np

        self.size = size
        self.total = 0
        self._generator = np.random.default_rng(seed)
        self._kept: pyarrow.Table | None = None
        self._keys: numpy.ndarray = np.empty(0)
        self._rows: numpy.ndarray = np.empty(0, dtype=np.int64)

    def add(self, start: int, batch: pyarrow.RecordBatch) -> None:
        import numpy as np
        import pyarrow as pa

        count = batch.num_rows
        self.total += count
        keys = self._generator.random(count)
        rows = np.arange(start, start + count, dtype=np.int64)
        table = pa.Table.from_batches([batch])
        if self._kept is not None:
            table = pa.concat_tables([self._kept, table])
            keys = np.concatenate([self._keys, keys])
            rows = np.concatenate([self._rows, rows])
        if len(keys) > self.size:
            chosen = np.argpartition(keys, self.size - 1)[: self.size]
            chosen.sort()
            table = table.take(chosen)
            keys = keys[chosen]
            rows = rows[chosen]
        self._kept, self._keys, self._rows = table, keys, rows

    def frame(self, columns: Sequence[str]) -> pandas.DataFrame:
        """The sampled rows, indexed by row number and sorted by it."""
        import numpy as np
        import pandas as pd

        if self._kept is None:
            return pd.DataFrame(columns=list(columns))
        order = np.argsort(self._rows, kind="stable")
        frame = self._kept.select(list(columns)).take(order).to_pandas()
        frame.index = pd.Index(self._rows[order], name="row")
        return frame


def sample_rows(
    dataset: Dataset, columns: Sequence[str], size: int, seed: int = SEED
) -> tuple[pandas.DataFrame, int]:
    """(at most `size` rows of `columns` chosen uniformly at random, indexed by row number and
    sorted by it; the dataset's number of rows)."""
    sampler = Sampler(size, seed)
    for start, batch in dataset.batches(list(columns)):
        sampler.add(start, batch)
    return sampler.frame(columns), sampler.total
