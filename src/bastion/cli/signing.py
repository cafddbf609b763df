"""`bastion sign` and `bastion verify`."""

from __future__ import annotations

import argparse

from .options import add_judging_options, existing, output_file
from .output import say
from .scan import finish, gate_overrides, settings_for


def _key_and_signature(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        type=existing(),
        metavar="PATH",
        help="The model or dataset folder, or a single file.",
    )
    parser.add_argument(
        "--key",
        type=existing("file"),
        metavar="PEM",
        help="EC key in PEM: private to sign, public to verify.",
    )
    parser.add_argument(
        "--signature",
        type=output_file,
        metavar="FILE",
        help="Signature file [default: PATH/model.sig, or FILE.sig].",
    )
    parser.add_argument(
        "--chain",
        action="append",
        default=[],
        type=existing("file"),
        metavar="PEM",
        help="Certificate chain (PEM); repeat for several.",
    )


def configure_sign(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Every file is hashed (SHA-256) and the manifest is signed; the signature verifies with
`bastion verify` and with the `model_signing` CLI."""
    _key_and_signature(parser)
    parser.add_argument(
        "--certificate",
        type=existing("file"),
        metavar="PEM",
        help="Signing certificate (PEM) for --key; works offline.",
    )
    parser.add_argument(
        "--sigstore", action="store_true", help="Keyless signing with Sigstore (needs network)."
    )
    parser.add_argument(
        "--shards",
        action="store_true",
        help="Hash large files as parallel shards (verify with bastion or the "
        "model-signing library; the model_signing CLI expects per-file "
        "hashing).",
    )


def run_sign(args: argparse.Namespace) -> int:
    from bastion.supplychain.signing import Credentials, sign

    credentials = Credentials(
        key=args.key, certificate=args.certificate, chain=tuple(args.chain), sigstore=args.sigstore
    )
    written = sign(args.path, credentials, args.signature, args.shards)
    say(f"bastion: signed {args.path} -> {written}")
    return 0


def configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description} Exit 0 verified, 1 failed, 2 error.

A failure says what is wrong: a changed, missing or extra file, a wrong key or identity, or a
malformed or foreign signature bundle."""
    _key_and_signature(parser)
    parser.add_argument(
        "--sigstore", action="store_true", help="Verify a keyless Sigstore signature."
    )
    parser.add_argument("--identity", help="Expected signer identity (with --sigstore).")
    parser.add_argument("--issuer", help="Expected OIDC issuer (with --sigstore).")
    add_judging_options(parser)


def run_verify(args: argparse.Namespace) -> int:
    from bastion.supplychain.signing import Credentials, verification_report

    settings = settings_for([args.path], args.policy, gate_overrides(args))
    credentials = Credentials(
        key=args.key,
        chain=tuple(args.chain),
        sigstore=args.sigstore,
        identity=args.identity,
        issuer=args.issuer,
    )
    report = verification_report(args.path, credentials, args.signature, settings)
    return finish(report, settings, args)
