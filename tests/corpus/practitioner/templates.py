"""Real chat templates (collected in tests/data/chat_templates/, with their sources) shipped the
two ways models carry them: a tokenizer's save_pretrained (tokenizer_config.json and
chat_template.jinja) and GGUF metadata written by the gguf library (tokenizer.chat_template)."""

from __future__ import annotations

import functools
from pathlib import Path

from .registry import writes

TEMPLATES = Path(__file__).resolve().parents[2] / "data" / "chat_templates"


@functools.cache
def chat_templates() -> dict[str, str]:
    """name -> template text, sorted by name."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(TEMPLATES.glob("*.jinja"))}


def _tokenizer_folder(template: str) -> object:
    def write(path: Path) -> None:
        from .hf_models import _tokenizer

        _tokenizer(template).save_pretrained(path)

    return write


def _gguf_file(name: str, template: str) -> object:
    def write(path: Path) -> None:
        import gguf
        import numpy as np

        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_name(name)
        writer.add_context_length(32)
        writer.add_embedding_length(4)
        writer.add_block_count(1)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(["<unk>", "<s>", "</s>", "hello"])
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_chat_template(template)
        writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return write


for _name, _text in chat_templates().items():
    writes(
        f"templates/{_name}",
        "transformers",
        "tokenizer.chat_template = <real template>; tokenizer.save_pretrained()",
        ("transformers", "tokenizers"),
    )(_tokenizer_folder(_text))  # type: ignore[arg-type]
    writes(
        f"templates/{_name}.gguf",
        "gguf",
        "gguf.GGUFWriter with tokenizer.chat_template",
        ("gguf", "numpy"),
    )(_gguf_file(_name, _text))  # type: ignore[arg-type]
