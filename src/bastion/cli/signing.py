"""`bastion sign` and `bastion verify`."""

from __future__ import annotations

from pathlib import Path

import click

from .options import judging_options
from .output import say
from .scan import finish, judge, settings_for

KEY = click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                   help="EC key in PEM: private to sign, public to verify.")
SIGNATURE = click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
                         help="Signature file [default: PATH/model.sig, or FILE.sig].")
CHAIN = click.option("--chain", multiple=True,
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Certificate chain (PEM); repeat for several.")


@click.command("sign")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@KEY
@SIGNATURE
@click.option("--certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Signing certificate (PEM) for --key; works offline.")
@CHAIN
@click.option("--sigstore", is_flag=True, help="Keyless signing with Sigstore (needs network).")
@click.option("--shards", is_flag=True,
              help="Hash large files as parallel shards (verify with bastion or the "
                   "model-signing library; the model_signing CLI expects per-file hashing).")
def sign_command(path: Path, key: Path | None, signature: Path | None,
                 certificate: Path | None, chain: tuple[Path, ...], sigstore: bool,
                 shards: bool) -> None:
    """Sign a model or dataset folder (or file) in the OpenSSF model-signing format.

    Every file is hashed (SHA-256) and the manifest is signed; the signature verifies with
    `bastion verify` and with the `model_signing` CLI.
    """
    from bastion.supplychain.signing import Credentials, sign

    credentials = Credentials(key=key, certificate=certificate, chain=chain, sigstore=sigstore)
    written = sign(path, credentials, signature, shards)
    say(f"bastion: signed {path} -> {written}")


@click.command("verify")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@KEY
@SIGNATURE
@CHAIN
@click.option("--sigstore", is_flag=True, help="Verify a keyless Sigstore signature.")
@click.option("--identity", help="Expected signer identity (with --sigstore).")
@click.option("--issuer", help="Expected OIDC issuer (with --sigstore).")
@judging_options
def verify_command(path: Path, key: Path | None, signature: Path | None,
                   chain: tuple[Path, ...], sigstore: bool, identity: str | None,
                   issuer: str | None, fmt: str, output: Path | None, policy: Path | None,
                   fail_on: str | None, strict: bool | None, baseline: Path | None,
                   store: Path | None, no_store: bool, quiet: bool) -> None:
    """Verify a model-signing signature. Exit 0 verified, 1 failed, 2 error.

    A failure says what is wrong: a changed, missing or extra file, a wrong key or identity,
    or a malformed or foreign signature bundle.
    """
    from bastion.supplychain.signing import Credentials, verification_report

    settings = settings_for((path,), policy, {"fail_on": fail_on, "strict": strict})
    credentials = Credentials(key=key, chain=chain, sigstore=sigstore, identity=identity,
                              issuer=issuer)
    report = verification_report(path, credentials, signature, settings)
    verdict = judge(report, settings, baseline)
    raise SystemExit(finish(report, verdict, fmt, output, store, no_store, quiet))
