"""Queries the model refuses, for the attacks that do not search (membership, extraction,
consistency): one tracker per attack.

`Refusals.ask(frame)` sends a partial query (`Model.query(frame, partial=True)`: a refused
request — an endpoint's 4xx such as an input contract's 422, or an exception from an
in-process model — is halved and re-sent until the refused rows are found, see model.py) and
returns the answers with the mask of rows answered. Refused rows are counted; the attack
leaves them out of its statistics and goes on with what was answered. `note()` is the coverage
note naming the count, `not_run()` the gap of an attack left with too few answers to compute
its metric (a gap, never a pass)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.coverage import UNSUPPORTED
from bastion.findings import Location, Skip
from bastion.probe.model import Model, Output

if TYPE_CHECKING:
    import numpy
    import pandas


def answered_rows(out: Output) -> numpy.ndarray:
    """The rows of `out` the model answered (every row when nothing was refused)."""
    import numpy as np

    if out.refused is None:
        return np.ones(len(out.labels), dtype=bool)
    return ~np.asarray(out.refused, dtype=bool)


class Refusals:
    """The queries one attack sent and the rows the model refused among them."""

    def __init__(self, model: Model, attack: str, location: Location) -> None:
        self.model = model
        self.attack = attack
        self.where = location.model_copy(update={"pointer": attack})
        self.asked = 0  # rows asked (re-sends of refused requests not counted twice)
        self.refused = 0  # rows refused

    def ask(self, frame: pandas.DataFrame) -> tuple[Output, numpy.ndarray]:
        """The model's answers to `frame` and the mask of rows it answered."""
        out = self.model.query(frame, partial=True)
        answered = answered_rows(out)
        self.asked += len(frame)
        self.refused += int(len(answered) - answered.sum())
        return out, answered

    def count(self, rows: int) -> None:
        """`rows` rows refused as a whole request outside `ask` (a non-partial query)."""
        self.asked += rows
        self.refused += rows

    @property
    def share(self) -> float:
        return round(self.refused / self.asked, 6) if self.asked else 0.0

    def note(self, effect: str) -> list[Skip]:
        """The coverage note for the refused queries (none when nothing was refused)."""
        if not self.refused:
            return []
        return [
            Skip(
                location=self.where,
                code=UNSUPPORTED,
                reason=f"{self.attack}: the model refused {self.refused:,} of its "
                f"{self.asked:,} queries (an input contract's 4xx, or an exception); they "
                f"are left out, {effect}",
            )
        ]

    def not_run(self, why: str) -> Skip:
        """The gap of an attack that could not compute its metric from what was answered."""
        return Skip(
            location=self.where,
            code=UNSUPPORTED,
            reason=f"{self.attack} not run: {why} (the model refused {self.refused:,} of "
            f"{self.asked:,} queries; an input contract's 4xx, or an exception)",
        )
