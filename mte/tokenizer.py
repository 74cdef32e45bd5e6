"""A BERT WordPiece tokenizer from a model folder's `tokenizer.json`, through the `tokenizers` library: the
encodings transformers' tokenizer gives, without importing transformers (`mte.bert` is its model)."""

from __future__ import annotations

import json
from pathlib import Path


class Tokenizer:
    """A BERT WordPiece `tokenizer.json` through the `tokenizers` library, called as a transformers tokenizer is
    (`tokenizer(texts, pairs, truncation=True, max_length=n)`): the same encodings, without importing transformers."""

    def __init__(self, backend, pad_token_id: int | None):
        self.backend_tokenizer = backend
        self.pad_token_id = pad_token_id

    def __call__(self, texts: list[str], pairs: list[str] | None = None, truncation: bool = True,
                 max_length: int = 512) -> dict[str, list[list[int]]]:
        self.backend_tokenizer.no_padding()
        if truncation:
            self.backend_tokenizer.enable_truncation(max_length, stride=0, strategy="longest_first",
                                                     direction="right")
        else:
            self.backend_tokenizer.no_truncation()
        batch = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        encodings = self.backend_tokenizer.encode_batch(batch, add_special_tokens=True)
        return {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings]}


def load_tokenizer(folder: str | Path) -> Tokenizer | None:
    """The BERT tokenizer saved in `folder` (its `tokenizer.json`), or None where transformers would build it
    differently (another tokenizer class, left truncation, a lower-casing flag the file does not follow)."""
    folder = Path(folder)
    try:
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        text = (folder / "tokenizer.json").read_text()
        saved = json.loads(text)
    except (OSError, ValueError):
        return None
    normalizer = saved.get("normalizer") or {}
    if (settings.get("tokenizer_class") not in ("BertTokenizer", "BertTokenizerFast")
            or settings.get("truncation_side", "right") != "right"
            or normalizer.get("type") != "BertNormalizer"
            or settings.get("do_lower_case", True) != normalizer.get("lowercase")
            or saved.get("post_processor", {}).get("type") != "TemplateProcessing"):
        return None
    from tokenizers import Tokenizer as Backend

    backend = Backend.from_str(text)
    pad = settings.get("pad_token", "[PAD]")
    return Tokenizer(backend, backend.token_to_id(pad if isinstance(pad, str) else pad.get("content", "[PAD]")))
