"""Personal-data detection: precision and recall per type on a labelled synthetic set, bastion
against Presidio's AnalyzerEngine restricted to pattern recognizers, in the same run.

The set (fixed seed) is built with Faker in ten locales: valid identifiers of every type in a
short sentence that names them ("BSN: …", "Tel. …"), the same identifiers with a broken check
digit (labelled as no personal data), and near-miss decoys (order numbers, ISBNs, timestamps,
version strings, product codes, random 16-digit numbers failing Luhn, UUIDs, git hashes, EAN
barcodes). Presidio runs with a registry holding only its pattern recognizers for these types
(every one registered for "en") and a no-op NLP engine — no spaCy model, nothing downloaded.

    python bench/pii.py [--per-type 200] [--runs 3] [--seed 11] [--blocks 20]

(The detectors were tuned while looking at seed 7; the figures in docs/benchmarks.md use seed 11,
a set they had not seen.)

Free-text cost: `--blocks` blocks of 10,000 characters of Faker's English prose, once without
personal data, once with one sentence of the set after every tenth sentence, and once made of
its words in which no pre-filter finds anything (every pattern scans the whole block); milliseconds
per block for each tool (median of `--runs`), and for bastion's pre-filter alone: the detector
groups found on lowered ASCII text, as detect() does, against the case-insensitive patterns on
the text as written (the pre-filter before 29b9667).

Prints two tables and writes bench/out/pii.json."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

from bastion.personal.identifiers import IBAN_LENGTHS

LOCALES = {
    "en_US": "US",
    "en_GB": "GB",
    "de_DE": "DE",
    "fr_FR": "FR",
    "es_ES": "ES",
    "it_IT": "IT",
    "nl_NL": "NL",
    "pl_PL": "PL",
    "sv_SE": "SE",
    "en_IN": "IN",
}
CHECKSUM_TYPES = {
    "credit_card", "iban", "de_tax_id", "fr_nir", "es_dni", "es_nie", "it_fiscal_code",
    "nl_bsn", "pl_pesel", "se_personnummer", "in_aadhaar",
}  # fmt: skip
TEMPLATES = {
    "email": ["Contact: {}", "write to {} please", "E-Mail {}"],
    "phone": ["Tel. {}", "call me at {}", "phone: {}", "mobile {}"],
    "credit_card": ["paid with card {}", "CC {}", "Kreditkarte {}"],
    "iban": ["IBAN {}", "please transfer to {}", "Konto {}"],
    "us_ssn": ["SSN {}", "social security number: {}"],
    "uk_nino": ["NI number {}", "National Insurance {}"],
    "de_tax_id": ["Steuer-ID {}", "Steuerliche IdNr: {}"],
    "fr_nir": ["numéro de sécurité sociale {}", "NIR {}"],
    "es_dni": ["DNI {}", "NIF: {}"],
    "es_nie": ["NIE {}", "número NIE: {}"],
    "it_fiscal_code": ["codice fiscale {}", "CF: {}"],
    "nl_bsn": ["BSN {}", "burgerservicenummer: {}"],
    "pl_pesel": ["PESEL {}", "numer PESEL: {}"],
    "se_personnummer": ["personnummer {}", "pnr: {}"],
    "in_aadhaar": ["Aadhaar {}", "Aadhaar number: {}"],
    "ip_address": ["login from {}", "client {} connected"],
}
PRESIDIO_ENTITIES = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "US_SSN": "us_ssn",
    "UK_NINO": "uk_nino",
    "DE_TAX_ID": "de_tax_id",
    "ES_NIF": "es_dni",
    "ES_NIE": "es_nie",
    "IT_FISCAL_CODE": "it_fiscal_code",
    "PL_PESEL": "pl_pesel",
    "SE_PERSONNUMMER": "se_personnummer",
    "IN_AADHAAR": "in_aadhaar",
    "IP_ADDRESS": "ip_address",
}
BLOCK = 10_000  # characters of free text per timed block
PRESIDIO_RECOGNIZERS = (
    "EmailRecognizer", "PhoneRecognizer", "CreditCardRecognizer", "IbanRecognizer",
    "UsSsnRecognizer", "UkNinoRecognizer", "DeTaxIdRecognizer", "EsNifRecognizer",
    "EsNieRecognizer", "ItFiscalCodeRecognizer", "PlPeselRecognizer",
    "SePersonnummerRecognizer", "InAadhaarRecognizer", "IpRecognizer",
)  # fmt: skip


# --- the labelled set ------------------------------------------------------------------------


def _nino(rng: random.Random) -> str:
    first = rng.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    while first + second in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
        second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    digits = "".join(rng.choice("0123456789") for _ in range(6))
    return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {rng.choice('ABCD')}"


def _steuer_id(rng: random.Random) -> str:
    from bastion.personal.identifiers import _iso7064_mod11_10

    while True:
        digits = rng.sample("0123456789", 9)
        digits.insert(rng.randrange(1, 10), rng.choice(digits))
        if digits[0] == "0":
            continue
        body = "".join(digits)
        return body + str(_iso7064_mod11_10(body))


def _aadhaar(rng: random.Random) -> str:
    from bastion.personal.identifiers import verhoeff_valid

    body = rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(10))
    check = next(d for d in "0123456789" if verhoeff_valid(body + d))
    value = body + check
    return f"{value[:4]} {value[4:8]} {value[8:]}"


def _card(fake: object, rng: random.Random) -> str:
    # Faker draws JCB from 3500-3599 (assigned: 3528-3589) and Maestro from '0604', and Visa
    # no longer issues 13-digit numbers: those are left out
    kind = rng.choice(["visa16", "visa19", "mastercard", "amex", "discover", "diners"])
    number: str = fake.credit_card_number(kind)  # type: ignore[attr-defined]
    if rng.random() < 0.5 and len(number) == 16:
        number = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    return number


def _phone(fake: object, region: str) -> str | None:
    import phonenumbers

    number: str = fake.phone_number()  # type: ignore[attr-defined]
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    # Faker draws area codes at random: a number no numbering plan assigns is not a phone number
    return number if phonenumbers.is_valid_number(parsed) else None


def _positive(kind: str, rng: random.Random, fakers: dict[str, object]) -> str | None:
    locale = {
        "us_ssn": "en_US", "uk_nino": "en_GB", "de_tax_id": "de_DE", "fr_nir": "fr_FR",
        "es_dni": "es_ES", "es_nie": "es_ES", "it_fiscal_code": "it_IT", "nl_bsn": "nl_NL",
        "pl_pesel": "pl_PL", "se_personnummer": "sv_SE", "in_aadhaar": "en_IN",
    }.get(kind, rng.choice(list(LOCALES)))  # fmt: skip
    fake: object = fakers[locale]
    f = fake  # type: Any
    if kind == "email":
        return str(f.email())
    if kind == "phone":
        return _phone(fake, LOCALES[locale])
    if kind == "credit_card":
        return _card(fake, rng)
    if kind == "iban":
        value = str(f.iban())
        if len(value) != IBAN_LENGTHS.get(value[:2]):
            return None  # Faker writes some GB IBANs one character short
        return (
            " ".join(value[i : i + 4] for i in range(0, len(value), 4))
            if rng.random() < 0.5
            else value
        )
    if kind == "ip_address":
        return str(f.ipv4_public() if rng.random() < 0.7 else f.ipv6())
    return {
        "us_ssn": lambda: f.ssn(),
        "uk_nino": lambda: _nino(rng),
        "de_tax_id": lambda: _steuer_id(rng),
        "fr_nir": lambda: f.ssn(),
        "es_dni": lambda: f.nif(),
        "es_nie": lambda: f.nie(),
        "it_fiscal_code": lambda: f.ssn(),
        "nl_bsn": lambda: f.ssn(),
        "pl_pesel": lambda: f.pesel(),
        "se_personnummer": lambda: f.ssn(),
        "in_aadhaar": lambda: _aadhaar(rng),
    }[kind]()


def _broken(value: str, rng: random.Random) -> str:
    """The value with its last digit or letter changed: a broken check digit."""
    index = max(i for i, c in enumerate(value) if c.isalnum())
    char = value[index]
    pool = "0123456789" if char.isdigit() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return value[:index] + rng.choice([c for c in pool if c != char]) + value[index + 1 :]


def _decoys(rng: random.Random, fake: object, count: int) -> list[str]:
    f = fake  # type: Any
    makers = [
        lambda: f"Order ORD-{rng.randint(2018, 2025)}-{rng.randint(100000, 999999)} shipped",
        lambda: f"order number {rng.randint(10**8, 10**9 - 1)} confirmed",
        lambda: f"ISBN {f.isbn13()}",
        lambda: f"ISBN {f.isbn10()}",
        lambda: f"at {f.date_time().isoformat(sep=' ')} the job ended",
        lambda: f"timestamp {f.date_time().strftime('%Y%m%d%H%M%S')}",
        lambda: f"epoch {rng.randint(1_500_000_000_000, 1_800_000_000_000)}",
        lambda: (
            f"upgrade to version {rng.randint(1, 30)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}"
        ),
        lambda: (
            f"release v{rng.randint(1, 9)}.{rng.randint(0, 20)}."
            f"{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        ),
        lambda: f"tracking {_not_luhn(rng)}",
        lambda: f"SKU {f.bothify('??-####-??').upper()}",
        lambda: f"product code {f.bothify('########-?').upper()}",
        lambda: f"uuid {f.uuid4()}",
        lambda: f"commit {f.sha1()}",
        lambda: f"barcode {f.ean13()}",
        lambda: f"price {rng.randint(1, 999)},{rng.randint(100, 999)}.{rng.randint(10, 99)} EUR",
        lambda: f"invoice INV{rng.randint(10**6, 10**7)} of {f.date()}",
        lambda: (
            f"room {rng.randint(1, 9)}.{rng.randint(10, 99)} at "
            f"{rng.randint(8, 18)}:{rng.randint(10, 59)}"
        ),
    ]
    return [rng.choice(makers)() for _ in range(count)]


def _not_luhn(rng: random.Random) -> str:
    from bastion.personal.identifiers import luhn_valid

    while True:
        value = str(rng.randint(10**15, 10**16 - 1))
        if not luhn_valid(value):
            return value


def build(per_type: int, seed: int = 7) -> list[tuple[str, str | None]]:
    from faker import Faker

    rng = random.Random(seed)
    fakers: dict[str, object] = {}
    for index, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed + index)
        fakers[locale] = fake
    samples: list[tuple[str, str | None]] = []
    for kind, templates in TEMPLATES.items():
        made = 0
        attempts = 0
        while made < per_type and attempts < per_type * 20:
            attempts += 1
            value = _positive(kind, rng, fakers)
            if value is None:
                continue
            samples.append((rng.choice(templates).format(value), kind))
            if kind in CHECKSUM_TYPES:
                samples.append((rng.choice(templates).format(_broken(value, rng)), None))
            made += 1
    samples += [(text, None) for text in _decoys(rng, fakers["en_US"], per_type * 8)]
    rng.shuffle(samples)
    return samples


# --- the tools -----------------------------------------------------------------------------------


def bastion_predict(texts: list[str]) -> list[set[str]]:
    from bastion.personal.detectors import detect

    return [{m.kind for m in detect(text)} for text in texts]


def _offline_tldextract() -> None:
    """Presidio's e-mail and URL recognizers use tldextract, which fetches the public suffix
    list on first use; use the snapshot it ships instead (nothing is downloaded)."""
    import tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())


def presidio_engine() -> object:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer import predefined_recognizers as predefined
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine

    class NoNlp(NlpEngine):  # type: ignore[misc]
        """Tokens and entities of no model: the pattern recognizers need none."""

        def load(self) -> None:
            pass

        def is_loaded(self) -> bool:
            return True

        def process_text(self, text: str, language: str) -> NlpArtifacts:
            return NlpArtifacts(
                entities=[], tokens=[], tokens_indices=[], lemmas=[], nlp_engine=self,
                language=language,
            )  # fmt: skip

        def process_batch(self, texts, language, batch_size=1, n_process=1, **kwargs):  # type: ignore[no-untyped-def]
            for text in texts:
                yield text, self.process_text(text, language)

        def is_stopword(self, word: str, language: str) -> bool:
            return False

        def is_punct(self, word: str, language: str) -> bool:
            return False

        def get_supported_entities(self) -> list[str]:
            return []

        def get_supported_languages(self) -> list[str]:
            return ["en"]

    registry = RecognizerRegistry(supported_languages=["en"])
    for name in PRESIDIO_RECOGNIZERS:
        registry.add_recognizer(getattr(predefined, name)(supported_language="en"))
    return AnalyzerEngine(registry=registry, nlp_engine=NoNlp(), supported_languages=["en"])


def free_text(
    samples: list[tuple[str, str | None]], blocks: int, seed: int
) -> dict[str, list[str]]:
    """`blocks` blocks of 10,000 characters of English prose, without personal data ("prose")
    and with one sentence of the labelled set after every tenth sentence ("prose with
    identifiers"); and of the same words without those in which a pre-filter finds anything
    ("words no pre-filter matches": every pattern scans the whole block, as in most text
    without personal data or secret-like words)."""
    from faker import Faker

    from bastion.personal.detectors import _groups

    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out: dict[str, list[str]] = defaultdict(list)
    for _ in range(blocks):
        sentences = fake.sentences(nb=300)
        mixed = [
            item
            for i, sentence in enumerate(sentences)
            for item in ([sentence, rng.choice(samples)[0]] if i % 10 == 9 else [sentence])
        ]
        plain: list[str] = []
        for word in " ".join(sentences).split():  # "anyone let" holds "ne le" (née le)
            if not _groups(word) and not (plain and _groups(f"{plain[-1]} {word}")):
                plain.append(word)
        kinds = (
            ("prose", sentences),
            ("prose with identifiers", mixed),
            ("words no pre-filter matches", plain * 2),
        )
        for name, parts in kinds:
            text = " ".join(parts)
            assert len(text) >= BLOCK, len(text)
            out[name].append(text[:BLOCK])
    assert not any(_groups(text) for text in out["words no pre-filter matches"])
    return out


def _prefilter_before(text: str) -> list[str]:
    """The pre-filter as it was before 29b9667: every group's pattern on the text as written."""
    from bastion.personal.detectors import _GROUPS

    return [name for name, pattern in _GROUPS.items() if pattern.search(text)]


def free_text_cost(
    blocks: dict[str, list[str]], engine: object, runs: int
) -> dict[str, dict[str, float]]:
    """Milliseconds per block of 10,000 characters (median of `runs`), per kind of text and
    tool; bastion's pre-filter before and after on the same blocks."""
    from bastion.personal.detectors import _groups, detect

    tools = {
        "bastion": detect,
        "presidio": lambda text: engine.analyze(text=text, language="en"),  # type: ignore[attr-defined]
        "prefilter (lowered ASCII)": _groups,
        "prefilter (case-insensitive, before)": _prefilter_before,
    }
    for run in tools.values():  # imports and compiled patterns are not the text's cost
        run(blocks["prose with identifiers"][0])
    table: dict[str, dict[str, float]] = {}
    for kind, texts in blocks.items():
        timings: dict[str, list[float]] = defaultdict(list)
        for _ in range(runs):
            for tool, run in tools.items():  # interleaved: load drifts alike for every tool
                started = time.perf_counter()
                for text in texts:
                    run(text)
                timings[tool].append((time.perf_counter() - started) / len(texts) * 1000)
        table[kind] = {tool: statistics.median(values) for tool, values in timings.items()}
    return table


def presidio_predict(engine: object, texts: list[str], threshold: float) -> list[set[str]]:
    out = []
    for text in texts:
        results = engine.analyze(text=text, language="en", score_threshold=0.0)  # type: ignore[attr-defined]
        out.append(
            {
                PRESIDIO_ENTITIES[r.entity_type]
                for r in results
                if r.entity_type in PRESIDIO_ENTITIES and r.score >= threshold
            }
        )
    return out


def score(
    samples: list[tuple[str, str | None]], predicted: list[set[str]]
) -> dict[str, dict[str, float]]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for (_text, truth), kinds in zip(samples, predicted, strict=True):
        if truth is not None:
            if truth in kinds:
                tp[truth] += 1
            else:
                fn[truth] += 1
        for kind in kinds - {truth}:
            fp[kind] += 1
    table: dict[str, dict[str, float]] = {}
    for kind in [*TEMPLATES, "overall", "checksum-backed"]:
        if kind == "overall":
            t, p, n = sum(tp.values()), sum(fp.values()), sum(fn.values())
        elif kind == "checksum-backed":
            t = sum(tp[k] for k in CHECKSUM_TYPES)
            p = sum(fp[k] for k in CHECKSUM_TYPES)
            n = sum(fn[k] for k in CHECKSUM_TYPES)
        else:
            t, p, n = tp[kind], fp[kind], fn[kind]
        table[kind] = {
            "tp": t,
            "fp": p,
            "fn": n,
            "precision": t / (t + p) if t + p else float("nan"),
            "recall": t / (t + n) if t + n else float("nan"),
        }
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-type", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--blocks", type=int, default=20, help="10,000-character blocks")
    args = parser.parse_args()
    samples = build(args.per_type, args.seed)
    texts = [text for text, _ in samples]
    print(f"{len(samples)} texts, {sum(t is not None for _, t in samples)} with personal data")

    _offline_tldextract()
    engine = presidio_engine()
    results: dict[str, dict[str, object]] = {}
    timings: dict[str, list[float]] = defaultdict(list)
    predictions: dict[str, list[set[str]]] = {}
    for _ in range(args.runs):
        started = time.perf_counter()
        predictions["bastion"] = bastion_predict(texts)
        timings["bastion"].append(time.perf_counter() - started)
        started = time.perf_counter()
        predictions["presidio"] = presidio_predict(engine, texts, 0.0)
        timings["presidio"].append(time.perf_counter() - started)
    predictions["presidio@0.5"] = presidio_predict(engine, texts, 0.5)
    timings["presidio@0.5"] = timings["presidio"]
    for tool, predicted in predictions.items():
        median = statistics.median(timings[tool])
        results[tool] = {
            "rows_per_s": len(texts) / median,
            "seconds_median": median,
            "scores": score(samples, predicted),
        }
    header = f"{'type':<18}" + "".join(f"{tool:>26}" for tool in results)
    print(header)
    print(" " * 18 + "".join(f"{'precision  recall':>26}" for _ in results))
    for kind in [*TEMPLATES, "checksum-backed", "overall"]:
        cells = []
        for tool in results:
            s = results[tool]["scores"][kind]  # type: ignore[index]
            cells.append(f"{s['precision']:>13.3f} {s['recall']:>8.3f}   ")
        print(f"{kind:<18}" + "".join(f"{c:>26}" for c in cells))
    print(
        f"{'rows/s (median)':<18}"
        + "".join(f"{results[t]['rows_per_s']:>23,.0f}   " for t in results)
    )
    blocks = free_text(samples, args.blocks, args.seed)
    cost = free_text_cost(blocks, engine, args.runs)
    print(f"\nms per {BLOCK:,} characters of free text (median of {args.runs})")
    for kind, figures in cost.items():
        print(f"  {kind}: " + ", ".join(f"{tool} {ms:.2f}" for tool, ms in figures.items()))
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "pii.json").write_text(
        json.dumps(
            {
                "texts": len(texts),
                "per_type": args.per_type,
                "seed": args.seed,
                "runs": args.runs,
                "results": results,
                "blocks": args.blocks,
                "ms_per_10k_chars": cost,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
