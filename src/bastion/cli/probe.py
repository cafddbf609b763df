"""`bastion probe`: evasion, membership inference, extraction and consistency tests of a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .options import add_judging_options, bounded, existing, output_file
from .scan import finish, gate_overrides, settings_for

if TYPE_CHECKING:
    from bastion.probe.model import Model


def _budgets(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of numbers") from None
    if not values or any(not 0 < v < 1e6 for v in values):
        raise argparse.ArgumentTypeError("budgets are positive costs, e.g. 0.5,1,2")
    return values


def configure_probe(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Evasion: for every declined row of --data, the cheapest valid change (only features the spec
lets a person change, in their allowed direction, within bounds, integers and categories kept
valid) that flips the decision; the share flippable within each budget, robust accuracy, and
the cheapest flips. Membership inference (needs --train, the rows the model was trained on):
loss, confidence and shadow-model attacks, ART's black-box attack; ROC AUC and TPR at 0.1% and
1% FPR. Extraction: a surrogate trained from random, data-like and active-learning queries,
its fidelity against the query count and under output hardening. Consistency always runs.

A model file is loaded only after it passes `bastion scan` under the policy (the scanned bytes
are the loaded bytes). Thresholds come from the policy's [probe] table."""
    parser.add_argument(
        "model",
        nargs="?",
        type=existing("file"),
        metavar="MODEL",
        help="Model file: pickle/joblib (scikit-learn, pipelines), ONNX, XGBoost JSON/UBJSON, "
        "LightGBM text.",
    )
    parser.add_argument(
        "--allow-global",
        action="append",
        default=[],
        metavar="MODULE.NAME",
        help="Let the unpickler resolve this class although it is outside the allowlist, "
        "where the scan reports it only as PKL007 (instantiated, not called), e.g. "
        "xgboost.core.Booster for a pickled XGBClassifier. Name only classes you trust.",
    )
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="Probe a prediction endpoint over HTTP instead of a file (see --request).",
    )
    parser.add_argument(
        "--data",
        required=True,
        type=existing("file"),
        metavar="FILE",
        help="Rows the model never saw (CSV, Parquet, JSON Lines, Arrow; compressed or not).",
    )
    parser.add_argument("--target", required=True, metavar="COL", help="The label column.")
    parser.add_argument(
        "--train",
        type=existing("file"),
        metavar="FILE",
        help="Rows the model was trained on (membership inference needs them).",
    )
    parser.add_argument(
        "--spec", type=existing("file"), metavar="FILE", help="Probe spec (JSON or TOML)."
    )
    parser.add_argument(
        "--contract",
        type=existing("file"),
        metavar="FILE",
        help="A `bastion data profile` contract to infer the spec from (types, bounds, "
        "categories), when no --spec is given.",
    )
    parser.add_argument(
        "--write-spec",
        type=output_file,
        metavar="FILE",
        help="Write the spec in use (inferred, with --immutable/--monotone applied) to FILE.",
    )
    parser.add_argument(
        "--immutable",
        nargs="+",
        action="extend",
        default=[],
        metavar="COL",
        help="Features a person cannot change (age, sex, ...).",
    )
    parser.add_argument(
        "--monotone",
        nargs="+",
        action="extend",
        default=[],
        metavar="COL=+1|-1",
        help="Features that may only rise (+1) or only fall (-1).",
    )
    parser.add_argument(
        "--favourable",
        metavar="VALUE",
        help="The favourable decision (a label of --target or a model class) [default: a "
        "label named good/approved/yes...].",
    )
    parser.add_argument(
        "--label-map",
        nargs="+",
        action="extend",
        default=[],
        metavar="VALUE=CLASS",
        help="How the data's labels are spelled as the model's classes (good=1 bad=0).",
    )
    parser.add_argument(
        "--budget",
        type=_budgets,
        metavar="LIST",
        help="Evasion budgets in spec cost units, e.g. 0.25,0.5,1; the largest is judged "
        "[default: the policy's [probe] budgets].",
    )
    parser.add_argument(
        "--attacks",
        default="evasion,membership,extraction",
        metavar="LIST",
        help="Attacks to run [default: evasion,membership,extraction; consistency always].",
    )
    parser.add_argument(
        "--queries",
        type=bounded(int, 10, 10_000_000),
        metavar="N",
        help="Extraction query budget [default: the policy's, 2000].",
    )
    from bastion.probe.endpoint import add_endpoint_options

    add_endpoint_options(parser)
    add_judging_options(parser)


def run_probe(args: argparse.Namespace) -> int:
    from bastion.errors import UsageError
    from bastion.probe.inputs import parse_label_map, read_table
    from bastion.probe.run import parse_attacks, run_probe
    from bastion.probe.spec import infer, load_spec, parse_monotone

    if (args.model is None) == (args.endpoint is None):
        raise UsageError("give a MODEL file or --endpoint URL (one of them)")
    attacks = parse_attacks(args.attacks)
    scanned = [p for p in (args.model, args.data, args.train, args.spec) if p is not None]
    overrides = gate_overrides(args)
    settings = settings_for(scanned, args.policy, overrides)
    data = read_table(args.data, args.target)
    train = read_table(args.train, args.target) if args.train else None
    label_map = parse_label_map(args.label_map)
    if args.spec:
        spec = load_spec(args.spec)
    else:
        contract = None
        if args.contract:
            from bastion.datacheck.contract import load_contract

            contract = load_contract(args.contract)
        spec = infer(
            data.features,
            target=args.target,
            favourable=args.favourable,
            contract=contract,
            name=Path(args.data).name,
            labels=label_map,
        )
    spec = spec.with_overrides(args.immutable, parse_monotone(args.monotone))
    if args.write_spec:
        spec.save(args.write_spec)
    model: Model
    if args.endpoint:
        from bastion.probe.endpoint import endpoint_model

        labels = data.labels if data.labels is not None else ()
        model = endpoint_model(args, [label_map.get(v, v) for v in set(labels)])
        name = args.endpoint
    else:
        from bastion.probe.model import load_model

        classes = [c.strip() for c in (args.classes or "").split(",") if c.strip()]
        model = load_model(args.model, settings, classes, allow_globals=args.allow_global)
        name = Path(args.model).name
    report = run_probe(
        model,
        data,
        settings=settings,
        train=train,
        spec=spec,
        attacks=attacks,
        favourable=args.favourable,
        label_map=label_map,
        budgets=args.budget,
        queries=args.queries,
        target_name=name,
        # the files judged and read, for lineage (bastion.lineage.record_run)
        extra_metadata={
            "inputs": {
                k: str(v)
                for k, v in (("model", args.model), ("data", args.data), ("train", args.train))
                if v is not None
            }
        },
    )
    return finish(report, settings, args)
