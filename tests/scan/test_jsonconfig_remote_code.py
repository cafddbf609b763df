"""Every remote-code switch of transformers (and sentence-transformers' module types) is reported
(issue #7, class 6): before, only a non-empty auto_map *dict* at the top of a config was. The
list form of a tokenizer's auto_map and custom_pipelines are proven with the real loader: with
trust_remote_code=True, transformers imports the module named there (which writes a marker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import rules, scan_data, scan_file

from bastion.findings import Severity

pytest.importorskip("transformers")

_MODULE = "import os\nopen(os.environ['BASTION_MARKER'], 'w').write('bastion-marker')\n"


def _load_with_transformers(folder: Path, code: str) -> str:
    """Run `code` (which loads `folder` with trust_remote_code=True) offline in a subprocess;
    return the marker file's content ('' when the shipped module was not imported)."""
    marker = folder.parent / "marker"
    env = {
        **os.environ,
        "BASTION_MARKER": str(marker),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(folder.parent / "hf-home"),
        "TRANSFORMERS_VERBOSITY": "error",
    }
    subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        env=env,
        capture_output=True,
        timeout=300,
        cwd=folder.parent,
    )
    return marker.read_text() if marker.exists() else ""


def _findings(folder: Path, name: str) -> list[tuple[str, str]]:
    result = scan_file(folder / name)
    return [(f.rule_id, f.message) for f in result.findings if f.rule_id == "HFC001"]


def test_tokenizer_auto_map_in_list_form_is_reported_and_runs(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenization_evil.py").write_text(
        _MODULE + "from transformers import PreTrainedTokenizer\n"
        "class EvilTokenizer(PreTrainedTokenizer):\n    pass\n"
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "auto_map": ["tokenization_evil.EvilTokenizer", None],
                "tokenizer_class": "EvilTokenizer",
            }
        )
    )
    found = _findings(folder, "tokenizer_config.json")
    assert found and "list form" in found[0][1] and "tokenization_evil" in found[0][1]
    assert (
        _load_with_transformers(
            folder,
            (
                "import sys\nfrom transformers import AutoTokenizer\ntry:\n"
                "    AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
                "except Exception:\n    pass\n"
            ),
        )
        == "bastion-marker"
    )


def test_custom_pipelines_is_reported_and_runs(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "pipe_evil.py").write_text(
        _MODULE + "from transformers import Pipeline\nclass EvilPipe(Pipeline):\n    pass\n"
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "vocab_size": 32,
                "custom_pipelines": {
                    "evil-task": {"impl": "pipe_evil.EvilPipe", "pt": ["AutoModel"]}
                },
            }
        )
    )
    found = _findings(folder, "config.json")
    assert any(
        "custom_pipelines" in message and "pipe_evil.EvilPipe" in message
        for _rule, message in found
    ), found
    assert (
        _load_with_transformers(
            folder,
            (
                "import sys\nfrom transformers import pipeline\ntry:\n"
                "    pipeline(model=sys.argv[1], trust_remote_code=True)\n"
                "except Exception:\n    pass\n"
            ),
        )
        == "bastion-marker"
    )


@pytest.mark.parametrize(
    ("name", "config", "expected"),
    [
        ("config.json", {"auto_map": {"AutoModel": "modeling_x.XModel"}}, "modeling_x.XModel"),
        (
            "config.json",
            {"auto_map": {"AutoConfig": "someone/other--configuration_x.XConfig"}},
            "code from another repository: someone/other",
        ),
        (
            "tokenizer_config.json",
            {"auto_map": {"AutoTokenizer": ["tok_x.Slow", "tok_x.Fast"]}},
            "tok_x.Fast",
        ),
        (
            "preprocessor_config.json",
            {
                "auto_map": {
                    "AutoImageProcessor": {"torchvision": "img_x.Fast", "pil": "img_x.Slow"}
                }
            },
            "img_x.Fast",
        ),
        (
            "processor_config.json",
            {"image_processor": {"auto_map": {"AutoImageProcessor": "img_x.Proc"}}},
            "img_x.Proc",
        ),
        (
            "config_sentence_transformers.json",
            {"model_kwargs": {"trust_remote_code": True}},
            "trust_remote_code=True",
        ),
        (
            "modules.json",
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {"idx": 1, "name": "1", "path": "1_Custom", "type": "custom_mod.Layer"},
            ],
            "custom_mod.Layer",
        ),
    ],
)
def test_every_remote_code_switch_is_reported(name: str, config: object, expected: str) -> None:
    result = scan_data(json.dumps(config).encode(), name)
    messages = [f.message for f in result.findings if f.rule_id == "HFC001"]
    assert len(messages) == 1 and expected in messages[0], result.findings
    assert "HFC001" in rules(result, Severity.MEDIUM)


def test_configs_written_by_transformers_are_not_flagged(tmp_path: Path) -> None:
    from transformers import GenerationConfig, LlamaConfig

    LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=32,
    ).save_pretrained(tmp_path)
    GenerationConfig(max_new_tokens=5).save_pretrained(tmp_path)
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
            ]
        )
    )
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"model_kwargs": {"trust_remote_code": False}, "prompts": {}})
    )
    for path in sorted(tmp_path.glob("*.json")):
        result = scan_file(path)
        assert rules(result, Severity.LOW) == set(), (path.name, result.findings)


def test_sentence_transformers_module_type_is_reported_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "custom_layer.py").write_text(
        _MODULE + "import torch\nclass Layer(torch.nn.Module):\n    @classmethod\n"
        "    def load(cls, *args, **kwargs):\n        return cls()\n"
    )
    (folder / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "custom_layer.Layer"}])
    )
    found = _findings(folder, "modules.json")
    assert found and "custom_layer.Layer" in found[0][1]
    assert (
        _load_with_transformers(
            folder,
            (
                "import sys\nfrom sentence_transformers import SentenceTransformer\ntry:\n"
                "    SentenceTransformer(sys.argv[1], trust_remote_code=True)\n"
                "except Exception:\n    pass\n"
            ),
        )
        == "bastion-marker"
    )
