"""Signing and verification: interop with the model_signing CLI both ways, certificate signing
offline, explained failures, generated tamper cases, and no false rejection after a move."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.cli.main import main
from bastion.supplychain.signing import Credentials, sign, verify

from .keys import write_certificates, write_key_pair
from .tamper import TAMPERS

MODEL_SIGNING = str(Path(sys.executable).with_name("model_signing"))


def make_model(folder: Path) -> Path:
    model = folder / "model"
    (model / "sub").mkdir(parents=True)
    rng = random.Random(7)
    (model / "weights.bin").write_bytes(rng.randbytes(200_000))
    (model / "config.json").write_text('{"hidden": 64}')
    (model / "sub" / "tokenizer.json").write_text('{"vocab": ["a", "b"]}')
    (model / "empty.txt").write_bytes(b"")
    return model


@pytest.fixture()
def signed(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    private, public = write_key_pair(tmp_path)
    model = make_model(tmp_path)
    signature = sign(model, Credentials(key=private))
    return model, signature, private, public


def test_sign_and_verify_roundtrip(signed: tuple[Path, Path, Path, Path]) -> None:
    model, signature, _private, public = signed
    assert signature == model / "model.sig"
    assert verify(model, Credentials(key=public)).kind == "verified"


def test_bastion_signature_verifies_with_model_signing_cli(
    signed: tuple[Path, Path, Path, Path],
) -> None:
    model, signature, _private, public = signed
    proc = subprocess.run(
        [
            MODEL_SIGNING,
            "verify",
            "key",
            str(model),
            "--signature",
            str(signature),
            "--public_key",
            str(public),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_model_signing_cli_signature_verifies_with_bastion(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path)
    model = make_model(tmp_path)
    signature = tmp_path / "cli.sig"
    proc = subprocess.run(
        [
            MODEL_SIGNING,
            "sign",
            "key",
            str(model),
            "--signature",
            str(signature),
            "--private_key",
            str(private),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verify(model, Credentials(key=public), signature).kind == "verified"
    (model / "config.json").write_text('{"hidden": 65}')
    outcome = verify(model, Credentials(key=public), signature)
    assert outcome.kind == "tampered" and outcome.files == ("config.json",)


def test_paths_the_signer_ignored_are_ignored_when_verifying(tmp_path: Path) -> None:
    # model_signing records --ignore-paths (and git files) in the statement; verification
    # must hash the folder the same way, or every such signature reads as "extra files"
    private, public = write_key_pair(tmp_path)
    model = make_model(tmp_path)
    (model / "NOTES.md").write_text("draft")
    signature = tmp_path / "cli.sig"
    proc = subprocess.run(
        [
            MODEL_SIGNING,
            "sign",
            "key",
            str(model),
            "--signature",
            str(signature),
            "--private_key",
            str(private),
            "--ignore-paths",
            str(model / "NOTES.md"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (model / "NOTES.md").write_text("rewritten after signing")
    assert verify(model, Credentials(key=public), signature).kind == "verified"
    (model / "config.json").write_text('{"hidden": 65}')
    outcome = verify(model, Credentials(key=public), signature)
    assert outcome.kind == "tampered" and outcome.files == ("config.json",)


def test_certificate_signing_offline(tmp_path: Path) -> None:
    key, certificate, ca = write_certificates(tmp_path)
    model = make_model(tmp_path)
    sign(model, Credentials(key=key, certificate=certificate, chain=(ca,)))
    assert verify(model, Credentials(chain=(ca,))).ok
    _, _, foreign_ca = write_certificates(_fresh(tmp_path / "other"))
    assert verify(model, Credentials(chain=(foreign_ca,))).kind == "wrong-key"


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_wrong_key_malformed_and_foreign_bundles(
    signed: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    model, signature, _private, _public = signed
    _, other_public = write_key_pair(_fresh(tmp_path / "other"), "other")
    assert verify(model, Credentials(key=other_public)).kind == "wrong-key"
    saved = signature.read_bytes()
    signature.write_text("{broken")
    assert verify(model, Credentials(key=other_public)).kind == "malformed"
    signature.write_text('{"mediaType": "x", "messageSignature": {}}')
    assert verify(model, Credentials(key=other_public)).kind == "foreign"
    signature.write_bytes(saved)


@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_every_tamper_kind_is_rejected(
    signed: tuple[Path, Path, Path, Path], tmp_path: Path, kind: str
) -> None:
    model, _signature, _private, public = signed
    for seed in range(8):
        copy = tmp_path / f"case{seed}" / "model"
        shutil.copytree(model, copy, symlinks=True)
        what = TAMPERS[kind](copy, copy / "model.sig", random.Random(seed))
        outcome = verify(copy, Credentials(key=public))
        assert not outcome.ok, what


def test_moving_or_copying_the_folder_is_not_a_failure(
    signed: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    model, _signature, _private, public = signed
    copied = tmp_path / "elsewhere" / "copied-model"
    shutil.copytree(model, copied)
    assert verify(copied, Credentials(key=public)).ok
    moved = tmp_path / "moved"
    model.rename(moved)
    assert verify(moved, Credentials(key=public)).ok


def test_cli_sign_and_verify_exit_codes(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path)
    model = make_model(tmp_path)
    assert main(["sign", str(model), "--key", str(private)]) == 0
    assert main(["verify", str(model), "--key", str(public), "--no-store", "-q"]) == 0
    (model / "weights.bin").write_bytes(b"poisoned")
    assert main(["verify", str(model), "--key", str(public), "--no-store", "-q"]) == 1
    assert main(["verify", str(model), "--no-store", "-q"]) == 2  # no key given
    assert main(["sign", str(model), "--key", str(public)]) == 2  # a public key cannot sign
