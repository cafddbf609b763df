"""Lineage and evidence: content digests for everything bastion sees (digests.py), the digests
each run saw and the links a pipeline records (record.py), the graph around a digest
(graph.py), the release gate over the evidence (gate.py) and compliance evidence per framework
control (compliance.py). Everything here reads and writes the history store; nothing here
prints.

`bastion.lineage.record(model, datasets=..., code=..., params=..., mlflow_run=...)` is the call
for the end of a training script."""

from __future__ import annotations

from typing import Any


def record(*args: Any, **kwargs: Any) -> Any:
    """Link a model to its datasets, code, parameters and MLflow run (record.record)."""
    from bastion.lineage.record import record as _record

    return _record(*args, **kwargs)


__all__ = ["record"]
