"""Hugging Face stack: tiny transformers built from config objects and saved with
save_pretrained (safetensors and the legacy .bin), tokenizers built from a vocabulary, PEFT
adapters, accelerate's save_state, sentence-transformers models built from modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .registry import writes

TINY = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "vocab_size": 64,
}
HF = ("transformers", "torch")


def _bert() -> Any:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        **TINY,
        max_position_embeddings=32,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    return BertForSequenceClassification(config)


def _llama() -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        **TINY,
        num_key_value_heads=1,
        max_position_embeddings=64,
        rope_scaling={"rope_type": "linear", "factor": 2.0},
    )
    return LlamaForCausalLM(config)


def _tokenizer(template: str | None = None) -> Any:
    """A fast tokenizer built from a word-level vocabulary (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "<s>",
        "</s>",
        "hello",
        "world",
        "user",
        "assistant",
        "system",
    ]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=32,
    )
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer


@writes(
    "hf/bert-classifier",
    "transformers",
    "BertForSequenceClassification(config).save_pretrained() + tokenizer",
    HF,
)
def _bert_pretrained(path: Path) -> None:
    _bert().save_pretrained(path)
    _tokenizer().save_pretrained(path)


@writes(
    "hf/gpt2-generation",
    "transformers",
    "GPT2LMHeadModel with a GenerationConfig, save_pretrained()",
    HF,
)
def _gpt2(path: Path) -> None:
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            n_embd=16,
            n_layer=1,
            n_head=2,
            n_positions=32,
            vocab_size=64,
            bos_token_id=0,
            eos_token_id=0,
        )
    )
    model.generation_config = GenerationConfig(
        max_new_tokens=8, do_sample=True, top_p=0.9, temperature=0.7, eos_token_id=0
    )
    model.save_pretrained(path)


@writes(
    "hf/llama-chat",
    "transformers",
    "LlamaForCausalLM(config).save_pretrained() with a sharded checkpoint, tokenizer with a "
    "chat template",
    HF,
)
def _llama_pretrained(path: Path) -> None:
    from .templates import chat_templates

    model = _llama()
    model.save_pretrained(path, max_shard_size="4KB")
    templates = chat_templates()
    template = templates.get(
        "meta-llama-Llama-3.1-8B-Instruct", next(iter(templates.values()), None)
    )
    _tokenizer(template).save_pretrained(path)


@writes("hf/t5-seq2seq", "transformers", "T5ForConditionalGeneration(config).save_pretrained()", HF)
def _t5(path: Path) -> None:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_layers=1,
        num_heads=2,
        vocab_size=64,
        decoder_start_token_id=0,
    )
    T5ForConditionalGeneration(config).save_pretrained(path)


@writes(
    "hf/vit-image",
    "transformers",
    "ViTForImageClassification(config) + ViTImageProcessor, save_pretrained()",
    HF,
)
def _vit(path: Path) -> None:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(
        **{k: v for k, v in TINY.items() if k != "vocab_size"},
        image_size=8,
        patch_size=4,
        num_labels=3,
    )
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 8, "width": 8}).save_pretrained(path)


@writes(
    "hf/bert-torch-save.bin",
    "transformers",
    "torch.save(model.state_dict()) of a transformers model as pytorch_model.bin",
    HF,
)
def _bert_bin(path: Path) -> None:
    import torch

    torch.save(_bert().state_dict(), path)


@writes(
    "hf/whole-model.pt",
    "transformers",
    "torch.save(model) of a whole transformers model (config and module classes pickled)",
    HF,
)
def _whole_hf(path: Path) -> None:
    import torch

    torch.save(_bert(), path)


@writes(
    "hf/training-args.bin",
    "transformers",
    "Trainer's training_args.bin: torch.save(TrainingArguments)",
    HF,
)
def _training_args(path: Path) -> None:
    import torch
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(path.parent / "out"),
        learning_rate=3e-5,
        num_train_epochs=2,
        per_device_train_batch_size=4,
        report_to=[],
        lr_scheduler_type="cosine",
        warmup_steps=10,
    )
    torch.save(args, path)


@writes(
    "hf/trainer-output",
    "transformers",
    "Trainer.train() output_dir: checkpoint folder with optimizer.pt, scheduler.pt, "
    "rng_state.pth, trainer_state.json, training_args.bin",
    (*HF, "accelerate"),
)
def _trainer(path: Path) -> None:
    import torch
    from transformers import Trainer, TrainingArguments

    class Rows(torch.utils.data.Dataset[dict[str, Any]]):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": torch.tensor([2, 6 + i % 2, 3]), "labels": torch.tensor(i % 2)}

    args = TrainingArguments(
        output_dir=str(path),
        max_steps=2,
        save_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
    )
    Trainer(model=_bert(), args=args, train_dataset=Rows()).train()


@writes(
    "hf/peft-lora", "peft", "get_peft_model(LoRA).save_pretrained(): adapter only", ("peft", *HF)
)
def _peft(path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=2,
        lora_alpha=4,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    get_peft_model(_llama(), config).save_pretrained(path)


@writes(
    "hf/accelerate-state",
    "accelerate",
    "Accelerator.save_state(): model, optimizer, scheduler, sampler and RNG state files",
    ("accelerate", "torch"),
)
def _accelerate(path: Path) -> None:
    import torch
    from accelerate import Accelerator

    from .user_models import TinyNet

    accelerator = Accelerator(cpu=True)
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer)
    loader = torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=4, shuffle=True)
    model, optimizer, scheduler, loader = accelerator.prepare(model, optimizer, scheduler, loader)
    for batch in loader:
        accelerator.backward(model(batch).sum())
        optimizer.step()
        scheduler.step()
    accelerator.save_state(str(path))


@writes(
    "hf/sentence-transformer",
    "sentence_transformers",
    "SentenceTransformer(modules=[Transformer, Pooling, Dense, Normalize]).save()",
    ("sentence_transformers", *HF),
)
def _sentence(path: Path) -> None:
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        BertModel(BertConfig(**TINY, max_position_embeddings=32)).save_pretrained(tmp)
        _tokenizer().save_pretrained(tmp)
        encoder = models.Transformer(tmp, max_seq_length=16)
        pooling = models.Pooling(encoder.get_word_embedding_dimension(), pooling_mode="mean")
        dense = models.Dense(in_features=16, out_features=8, activation_function=torch.nn.Tanh())
        model = SentenceTransformer(
            modules=[encoder, pooling, dense, models.Normalize()], device="cpu"
        )
        model.save(str(path))
