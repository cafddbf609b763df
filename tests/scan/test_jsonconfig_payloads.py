"""Payloads carried as data and credentials in model configs (issue #7, class 9). A config value
holding a serialized pickle (raw, hex, base64, compressed) is decoded and scanned like a file
(CFG001 + the pickle's own findings); a credential is reported with its value redacted (CFG002).
Before, config values were never looked at."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import os
import pickle
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity

MARK = "echo bastion-marker > marker"


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (MARK,))


PICKLE = pickle.dumps(_Payload(), protocol=4)
ENCODINGS = {
    "raw": PICKLE.decode("latin-1"),
    "hex": PICKLE.hex(),
    "base64": base64.b64encode(PICKLE).decode(),
    "base64-urlsafe": base64.urlsafe_b64encode(b"\x80\x04" + PICKLE[2:]).decode(),
    "zlib-base64": base64.b64encode(zlib.compress(PICKLE)).decode(),
    "gzip-base64": base64.b64encode(gzip.compress(PICKLE)).decode(),
    "base64-of-hex": base64.b64encode(PICKLE.hex().encode()).decode(),
}
DECODE = {
    "raw": "value.encode('latin-1')",
    "hex": "bytes.fromhex(value)",
    "base64": "base64.b64decode(value)",
    "base64-urlsafe": "base64.urlsafe_b64decode(value)",
    "zlib-base64": "zlib.decompress(base64.b64decode(value))",
    "gzip-base64": "gzip.decompress(base64.b64decode(value))",
    "base64-of-hex": "bytes.fromhex(base64.b64decode(value).decode())",
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_pickle_carried_in_a_config_value_is_scanned(encoding: str, tmp_path: Path) -> None:
    config = {"model_type": "llama", "hidden_size": 16, "preprocessing": ENCODINGS[encoding]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = scan_file(path)
    assert "PKL001" in rules(result, Severity.CRITICAL), result.findings
    assert "CFG001" in rules(result) and gate_fails(result)
    carried = [f for f in result.findings if f.rule_id == "PKL001"]
    assert carried[0].location.members and "preprocessing" in carried[0].location.members[0]
    # proven: the next consumer that decodes the value and unpickles it runs the payload
    consumer = (
        "import base64, gzip, json, pickle, sys, zlib\n"
        "value = json.load(open(sys.argv[1]))['preprocessing']\n"
        f"pickle.loads({DECODE[encoding]})\n"
    )
    subprocess.run(
        [sys.executable, "-c", consumer, str(path)], cwd=tmp_path, timeout=60, capture_output=True
    )
    assert (tmp_path / "marker").read_text().strip() == "bastion-marker"


def test_transformers_keeps_the_carried_value_for_the_consumer(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "vocab_size": 32,
                "preprocessing": ENCODINGS["base64"],
            }
        )
    )
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert config.preprocessing == ENCODINGS["base64"]
    assert "PKL001" in rules(scan_file(tmp_path / "config.json"), Severity.CRITICAL)


def test_nested_and_listed_values_are_scanned() -> None:
    config = {"a": {"b": [1, {"c": ENCODINGS["hex"]}]}, "tokenizer": {"x": ENCODINGS["base64"]}}
    result = scan_data(json.dumps(config).encode(), "tokenizer_config.json")
    members = {f.location.members[0] for f in result.findings if f.rule_id == "PKL001"}
    assert any("a.b[1].c" in m for m in members) and any("tokenizer.x" in m for m in members)


SECRETS = {
    "aws": ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
    "huggingface": ("hub_token", "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"),
    "github": ("hub", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
    "password": ("db_password", "Tr0ub4dor&3-correct-horse"),
    "private-key": (
        "signing",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----",
    ),
    "basic-auth": ("mirror", "https://deploy:s3cr3tP4ss@models.example.com/repo"),
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_secret_in_a_config_is_reported_redacted(kind: str) -> None:
    pytest.importorskip("detect_secrets")
    key, secret = SECRETS[kind]
    config = {"model_type": "llama", "training": {key: secret}}
    result = scan_data(json.dumps(config).encode(), "config.json")
    found = [f for f in result.findings if f.rule_id == "CFG002"]
    assert found and found[0].severity == Severity.HIGH, result.findings
    assert found[0].location.pointer == f"training.{key}"
    text = json.dumps([f.model_dump() for f in result.findings], default=str)
    assert secret not in text and secret[8:20] not in text  # never echoed


def test_tokenizer_configs_written_by_transformers_are_clean(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [
        "<unk>",
        "<s>",
        "</s>",
        "<|eot_id|>",
        "<|reserved_special_token_0|>",
        "<|finetune_right_pad_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
    ]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(
        ["hello world, tool_calls and reasoning"] * 20,
        trainers.BpeTrainer(vocab_size=300, special_tokens=specials),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<|finetune_right_pad_id|>",
    )
    fast.chat_template = (
        Path(__file__).parents[1]
        / "data"
        / "chat_templates"
        / "meta-llama-Llama-3.1-8B-Instruct.jinja"
    ).read_text("utf-8")
    fast.save_pretrained(tmp_path)
    for path in sorted(tmp_path.iterdir()):
        result = scan_file(path)
        assert rules(result, Severity.LOW) == set(), (path.name, result.findings)
        assert not result.errors and not result.incomplete


def test_ordinary_strings_that_look_encoded_are_not_payloads() -> None:
    config = {
        "_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
        "torch_dtype": "bfloat16",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "b64": base64.b64encode(b"just some harmless configuration text here").decode(),
        "architectures": ["LlamaForCausalLM"],
        "rope_scaling": {"rope_type": "llama3"},
    }
    result = scan_data(json.dumps(config).encode(), "config.json")
    assert rules(result, Severity.LOW) == set(), result.findings


def test_a_large_tokenizer_json_is_clean_and_quick(tmp_path: Path) -> None:
    # 150,000 merges and added tokens: short strings, many of which a permissive probe would
    # take for a protocol-0 pickle or for base64; none can carry a global
    vocab = {f"tok{i}x{i % 97}": i for i in range(150_000)}
    names = list(vocab)
    merges = [f"{a} {b}" for a, b in itertools.pairwise(names)]
    added = [
        {"id": 150_000 + i, "content": f"<|reserved_special_token_{i}|>", "special": True}
        for i in range(256)
    ]
    path = tmp_path / "tokenizer.json"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "added_tokens": added,
                "model": {"type": "BPE", "vocab": vocab, "merges": merges},
            }
        )
    )
    started = time.monotonic()
    result = scan_file(path)
    assert time.monotonic() - started < 20
    assert rules(result, Severity.LOW) == set(), result.findings[:5]
