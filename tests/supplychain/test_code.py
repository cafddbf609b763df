"""`bastion code`: precision/recall on the labelled snippets, notebooks (cells, magics, outputs),
locations for SARIF, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from code_samples import SNIPPETS

from bastion.cli.main import main
from bastion.config import Settings
from bastion.supplychain.code import run_code_scan
from bastion.supplychain.personal_data import personal_data


@pytest.fixture(scope="module")
def snippet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("snippets")
    for name, source, _expected in SNIPPETS:
        (folder / f"{name}.py").write_text(source)
    return folder


def test_precision_and_recall_on_labelled_snippets(snippet_dir: Path) -> None:
    report = run_code_scan([snippet_dir], Settings(workers=2))
    found = {r.path.removesuffix(".py"): {f.rule_id for f in r.findings} for r in report.results}
    tp = fp = fn = 0
    for name, _source, expected in SNIPPETS:
        got = found[name]
        tp += len(got & expected)
        fp += len(got - expected)
        fn += len(expected - got)
    assert len(SNIPPETS) >= 60
    assert tp / (tp + fp) >= 0.95 and tp / (tp + fn) >= 0.95, (tp, fp, fn)


def notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Train\nUses torch.load in prose: not code."),
        nbformat.v4.new_code_cell(
            "%pip install torch\nimport torch\n\nmodel = torch.load('ckpt.pt')"
        ),
        nbformat.v4.new_code_cell(
            "df.head()",
            outputs=[
                nbformat.v4.new_output(
                    "execute_result",
                    data={
                        "text/plain": "name  email\n0 Ann  ann.smith@corp.io\n"
                        "1 Bob  +44 20 7946 0958"
                    },
                )
            ],
        ),
        nbformat.v4.new_code_cell(
            "HF_TOKEN = 'hf_x'\nprint('ok')",
            outputs=[nbformat.v4.new_output("stream", text="card 4539 1488 0343 6467 charged\n")],
        ),
    ]
    path = tmp_path / "train.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_notebook_findings_point_at_cell_and_file_line(tmp_path: Path) -> None:
    path = notebook(tmp_path)
    report = run_code_scan([path], Settings(workers=1))
    findings = report.results[0].findings
    torch_load = next(f for f in findings if f.rule_id == "COD001")
    assert torch_load.location.pointer == "cell 2"
    raw_lines = path.read_text().splitlines()
    assert "torch.load" in raw_lines[torch_load.location.line - 1]  # type: ignore[operator]
    personal = {f.message for f in findings if f.rule_id == "COD010"}
    assert any("e-mail" in m and "cell 3" in m for m in personal)
    assert any("phone" in m for m in personal)
    assert any("payment card" in m and "cell 4" in m for m in personal)


def test_personal_data_detector_is_checked_not_pattern_only() -> None:
    assert dict(personal_data("IBAN DE89 3704 0044 0532 0130 00")).get("IBAN")
    assert "IBAN" not in dict(personal_data("IBAN DE00 3704 0044 0532 0130 00"))
    assert "payment card number" not in dict(personal_data("order 4111 1111 1111 1112"))
    assert "e-mail address" not in dict(personal_data("write to someone@example.com"))
    assert "e-mail address" not in dict(personal_data("or ops@mail.example.org"))
    for real in ("jane@latest.com", "bob@contest.com", "ann@counterexample.com"):
        assert "e-mail address" in dict(personal_data(f"mail {real}")), real  # not suffixes
    assert personal_data("no personal data here: loss=0.231 acc=0.91").__next__ is not None
    assert list(personal_data("no personal data here: loss=0.231 acc=0.91")) == []


def _iban(country: str, bban: str) -> str:
    """`country` + the ISO 13616 check digits + `bban`: passes mod 97 whatever its length."""
    remainder = int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    return f"{country}{98 - remainder:02d}{bban}"


def test_cod010_iban_has_its_countrys_registered_length() -> None:
    """A string passing mod 97 is an IBAN only at its country's length in the registry (COD010
    once took any length from 15 to 34)."""
    for valid in (
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "NO9386011117947",  # 15, the shortest
        "MT84MALT011000012345MTLCAST001S",  # 31
        _iban("FR", "20041010050500013M02606"),
    ):
        assert dict(personal_data(f"pay to {valid} today")).get("IBAN"), valid
    for wrong_length in (
        _iban("DE", "3704004405320130001"),  # 23 characters; Germany's are 22
        _iban("NO", "860111179470"),  # 16; Norway's are 15
        _iban("GB", "WEST1234569876543"),  # 21; the UK's are 22
    ):
        assert len(wrong_length) not in (15, 22)
        assert "IBAN" not in dict(personal_data(f"pay to {wrong_length} today")), wrong_length


def _in_script(zero: int, text: str) -> str:
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in text)


@pytest.mark.parametrize(
    "zero",
    [0x0660, 0x06F0, 0x0966, 0xFF10],
    ids=["arabic-indic", "persian", "devanagari", "fullwidth"],
)
def test_cod010_reads_card_digits_of_any_script(zero: int) -> None:
    """A card number printed in another script's digits is the same number: Luhn reads them as
    digits (identifiers.luhn_valid reads ASCII only, so they are converted first)."""
    for card in ("4539148803436467", "4539 1488 0343 6467", "378282246310005"):
        text = "charged card " + _in_script(zero, card)
        masked = card[:2] + "…" + card[-2:]  # in ASCII digits
        assert dict(personal_data(text)).get("payment card number") == masked, text
    for not_luhn in ("4539148803436468", "4539 1488 0343 6466"):
        assert list(personal_data("charged card " + _in_script(zero, not_luhn))) == [], not_luhn


def test_cod010_reads_full_width_letters_and_digits() -> None:
    full_width = str.maketrans(
        {c: chr(ord(c) + 0xFEE0) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    )
    assert (
        dict(personal_data("IBAN " + "DE89 3704 0044 0532 0130 00".translate(full_width))).get(
            "IBAN"
        )
        == "DE…00"
    )
    wrong = "DE00 3704 0044 0532 0130 00".translate(full_width)
    assert "IBAN" not in dict(personal_data("IBAN " + wrong))


def test_cod010_text_unfolding_under_nfkc_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """U+FDFD unfolds into 18 characters under NFKC: the text read stays at MAX_TEXT."""
    from bastion.supplychain import personal_data as module

    seen: list[int] = []
    original = module.EMAIL

    class Spy:
        def finditer(self, value: str) -> object:
            seen.append(len(value))
            return original.finditer(value)

    monkeypatch.setattr(module, "EMAIL", Spy())
    assert list(personal_data("\ufdfd" * module.MAX_TEXT)) == []
    assert seen == [module.MAX_TEXT]


def test_cod010_card_needs_luhn() -> None:
    for card in ("4539148803436467", "5500 0055 5555 5559", "6011-0009-9013-9424"):
        assert dict(personal_data(f"card {card}")).get("payment card number"), card
        broken = card[:-1] + str((int(card[-1]) + 1) % 10)
        assert "payment card number" not in dict(personal_data(f"card {broken}")), broken


@pytest.mark.parametrize(
    "line",
    [
        "1,4539148803436467,2029",
        "id,card,year\n1,4539148803436467,2029\n2,x,2030",
        "1;4539148803436467;2029",
        "1 4539148803436467 2029",  # print(i, card, year): joined to its neighbours by the pattern
        "0 1 4539148803436467",
        "1-4539148803436467-2029",
        "1 4539-1488-0343-6467 2029",
        "2023-01-03 4539148803436467",
    ],
)
def test_cod010_card_in_a_printed_row(line: str) -> None:
    assert dict(personal_data(line)).get("payment card number") == "45…67", line
    broken = line.replace("6467", "6468")
    assert "payment card number" not in dict(personal_data(broken)), broken


def test_cod010_test_card_numbers_are_not_cards() -> None:
    """Card numbers of two digits or fewer are the schemes' published test numbers (Visa's
    4111 1111 1111 1111), in a printed row or alone."""
    for text in ("1,4111111111111111,2029", "card 4111 1111 1111 1111", "5555555555554444"):
        assert list(personal_data(text)) == [], text


@pytest.mark.parametrize(
    "text",
    [
        "mail jane@corp.io",
        "mail _jane@corp.io",
        "mail .jane@corp.io",
        "_jane@corp.io",
        ".jane@corp.io",
        "jane_@corp.io",
        "j.a_ne@corp.io",
        "path/x.jane@corp.io",
        "mailto:jane@corp.io",
        "<jane@corp.io>.",
        "jane@corp.io_2",
        "jane@-corp.io",
        "a+b@corp.io",
        "+b@corp.io",
    ],
)
def test_cod010_email_is_the_data_stages(text: str) -> None:
    """COD010 finds an e-mail address exactly where the data stage's detector does (a local
    part starting with '_' or '.' is no address to either)."""
    from bastion.personal.detectors import detect

    in_notebook = "e-mail address" in dict(personal_data(text))
    assert in_notebook == any(m.kind == "email" for m in detect(text)), text


def test_error_and_json_outputs_are_read(tmp_path: Path) -> None:
    """Personal data in an exception's message, a traceback (a failing call prints its
    arguments) or a JSON output is in the notebook as much as in a printed line."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "send(user)",
            outputs=[
                nbformat.v4.new_output(
                    "error",
                    ename="ValueError",
                    evalue="no account for jane.doe@corp.io",
                    traceback=["\x1b[31mValueError\x1b[0m", "charge(card='4539 1488 0343 6467')"],
                )
            ],
        ),
        nbformat.v4.new_code_cell(
            "record",
            outputs=[
                nbformat.v4.new_output(
                    "display_data", data={"application/json": {"iban": "DE89370400440532013000"}}
                )
            ],
        ),
    ]
    path = tmp_path / "errors.ipynb"
    nbformat.write(nb, str(path))
    findings = run_code_scan([path], Settings(workers=1)).results[0].findings
    personal = {f.message for f in findings if f.rule_id == "COD010"}
    assert any("e-mail" in m and "cell 1" in m for m in personal), personal
    assert any("payment card" in m and "cell 1" in m for m in personal), personal
    assert any("IBAN" in m and "cell 2" in m for m in personal), personal


def test_numeric_notebook_output_is_not_personal_data() -> None:
    """What notebooks print most: arrays, probabilities, training progress, DataFrames. Found by
    an attack on a version of COD010 built on the data stage's cell detectors, which read
    '0.1234 0.5678' and '0  541  578  721' as phone numbers in almost every such output."""
    outputs = [
        "array([[0.2205, 0.7795],\n       [0.3672, 0.6328]])",
        "[0.6931 0.682  0.6711 0.665 ]",
        "Epoch 3/5 - loss: 0.0132 - accuracy: 0.8375 - val_loss: 0.2594 - 1250/1250 [====] - 45s",
        "     a    b    c\n0  541  578  721\n1  102  993  456\n2  777  310  128",
        "         date  value\n0 2023-01-03  0.1234\n1 2023-01-04  0.5678",
        "       count      mean       std       min\nx  1000.0  0.501234  0.288675  0.000123",
    ]
    for text in outputs:
        assert list(personal_data(text)) == [], text


def test_broken_sources_are_reported_not_crashing(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def f(:\n")
    (tmp_path / "bad.ipynb").write_text("{not json")
    (tmp_path / "deep.py").write_text("x = " + "(" * 5000 + ")" * 5000 + "\n")
    report = run_code_scan([tmp_path], Settings(workers=1))
    results = {r.path: r for r in report.results}
    for name in ("bad.py", "bad.ipynb", "deep.py"):  # a gap of its own kind, not a finding
        assert not results[name].findings and not results[name].incomplete
        assert "unreadable" in {s.code for s in results[name].skips}
    assert results["bad.py"].skips[0].location.line == 1
    assert not report.errors


def test_cli_sarif_lands_on_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.py").write_text("import torch\n\n\nm = torch.load('x.pt')\n")
    assert main(["code", str(tmp_path), "-f", "sarif", "--no-store", "-q"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    result = sarif["runs"][0]["results"][0]
    region = result["locations"][0]["physicalLocation"]["region"]
    assert result["ruleId"] == "COD001" and region == {"startLine": 4, "startColumn": 5}
    (tmp_path / "train.py").write_text("import torch\nm = torch.load('x.pt', weights_only=True)\n")
    assert main(["code", str(tmp_path), "--no-store", "-q"]) == 0
