"""A tiny, randomly initialised MedGemma look-alike, built offline, for code-path tests.

The model is a real ``Gemma3ForConditionalGeneration`` (the class MedGemma 4B uses),
shrunk to a few thousand parameters: a one-layer SigLIP vision tower on 64x64-pixel
images (16-pixel patches, 4x4 patches pooled to ``mm_tokens_per_image`` = 4 tokens)
and a one-layer Gemma 3 text decoder. The processor is a ``Gemma3Processor`` with a
character-level ``GemmaTokenizer`` (every printable ASCII character is a token, plus
Gemma 3's special and image tokens) and a Gemma-style chat template. Everything is
written with ``save_pretrained``, so ``AutoProcessor`` and ``AutoModelForImageTextToText``
reload it from the folder with ``local_files_only=True``.

Its answers are random text: it proves that loading, prompting, decoding and parsing
run end to end, never that boxes are right.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

IMAGE_SIZE_PX = 64
PATCH_SIZE_PX = 16
MM_TOKENS_PER_IMAGE = 4  # (64 / 16)^2 = 16 patches, average-pooled 2x2 -> 4 image tokens

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
TURN = ["<start_of_turn>", "<end_of_turn>"]
BOI, EOI, IMAGE_TOKEN = "<start_of_image>", "<end_of_image>", "<image_soft_token>"

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def _vocabulary() -> dict[str, int]:
    """Special tokens first (Gemma's ids 0-4), then turn and image tokens, then one token per character."""
    tokens = SPECIAL + TURN + [BOI, EOI, IMAGE_TOKEN, "▁", "\n"]
    tokens += [c for c in string.printable if c not in " \n\t\r\x0b\x0c"]
    tokens += [f"<0x{b:02X}>" for b in range(256)]  # byte fallback for anything else
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def build_tiny_medgemma(directory: Path) -> Path:
    """Write a tiny random Gemma 3 image-text-to-text model and its processor into ``directory``.

    Takes a second or two and a few hundred kilobytes; returns ``directory``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        GemmaTokenizer,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = _vocabulary()
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=[],
        extra_special_tokens=TURN,
        boi_token=BOI,
        eoi_token=EOI,
        image_token=IMAGE_TOKEN,
        add_bos_token=False,  # the chat template writes <bos>
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_tokens([BOI, EOI, IMAGE_TOKEN], special_tokens=True)
    image_processor = Gemma3ImageProcessor(
        size={"height": IMAGE_SIZE_PX, "width": IMAGE_SIZE_PX},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=MM_TOKENS_PER_IMAGE,
    )

    config = Gemma3Config(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "max_position_embeddings": 1024,
            "sliding_window": 256,
            "pad_token_id": vocab["<pad>"],
            "eos_token_id": [vocab["<eos>"], vocab["<end_of_turn>"]],
            "bos_token_id": vocab["<bos>"],
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE_PX,
            "patch_size": PATCH_SIZE_PX,
            "vision_use_head": False,
        },
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        boi_token_index=vocab[BOI],
        eoi_token_index=vocab[EOI],
        image_token_index=vocab[IMAGE_TOKEN],
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [vocab["<eos>"], vocab["<end_of_turn>"]]
    model.generation_config.pad_token_id = vocab["<pad>"]
    model.generation_config.bos_token_id = vocab["<bos>"]
    model.generation_config.do_sample = False
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
