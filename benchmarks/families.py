"""Random-weight members of the BERT family, built and saved by transformers itself (the tests' oracle), with
tokenizers learnt from a corpus: byte-level BPE (RoBERTa), Unigram (XLM-R) and WordPiece saved as tokenizer.json
alone, as transformers 5 saves it (BERT, ELECTRA, DistilBERT)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

MODEL_TYPES = ("roberta", "xlm-roberta", "electra", "distilbert", "modernbert")
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France, and Seoul is the capital of Korea.",
    "한국어 문장을 토큰으로 나눕니다. 서울은 한국의 수도입니다.",
    "Café naïve résumé: Ünïcödé àccents everywhere.",
    "Emoji 🙂 and 🚀 in text, with a tab\tand   spaces.",
    "A gorgeous, witty, seductive movie that never lets go.",
]
CORPUS = TEXTS * 40
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def bpe_tokenizer(directory: Path, corpus: Sequence[str] = CORPUS, size: int = 400) -> Path:
    """A RoBERTa tokenizer: byte-level BPE learnt on `corpus`."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, initial_alphabet=alphabet)
    )
    learnt = json.loads(bpe.to_str())["model"]
    merges = [tuple(merge) for merge in learnt["merges"]]
    transformers.RobertaTokenizer(vocab=learnt["vocab"], merges=merges).save_pretrained(directory)
    return directory


def unigram_tokenizer(directory: Path, corpus: Sequence[str] = CORPUS, size: int = 300) -> Path:
    """An XLM-R tokenizer: SentencePiece-style Unigram learnt on `corpus`."""
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.train_from_iterator(
        corpus, trainers.UnigramTrainer(vocab_size=size, special_tokens=SPECIALS, unk_token="<unk>")
    )
    pieces = [tuple(piece) for piece in json.loads(unigram.to_str())["model"]["vocab"]]
    transformers.XLMRobertaTokenizer(vocab=pieces).save_pretrained(directory)
    return directory


def wordpiece_tokenizer(directory: Path, corpus: Sequence[str] = CORPUS, size: int = 300) -> Path:
    """A BERT WordPiece tokenizer saved by transformers 5: tokenizer.json, and no vocab.txt."""
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=size, special_tokens=WORDPIECE_SPECIALS)
    wordpiece.train_from_iterator(corpus, trainer)
    vocab = json.loads(wordpiece.to_str())["model"]["vocab"]
    transformers.BertTokenizer(vocab=vocab, do_lower_case=False).save_pretrained(directory)
    (directory / "vocab.txt").unlink(missing_ok=True)
    return directory


TOKENIZERS = {
    "bert": wordpiece_tokenizer,
    "roberta": bpe_tokenizer,
    "xlm-roberta": unigram_tokenizer,
    "electra": wordpiece_tokenizer,
    "distilbert": wordpiece_tokenizer,
    "modernbert": wordpiece_tokenizer,
}


def hf_config(
    model_type: str, vocab_size: int, pad_token_id: int, width: int = 32, layers: int = 2, dropout: float = 0.0, **extra
) -> transformers.PretrainedConfig:
    """`layers` layers `width` wide, a head per 8 dimensions, 128 positions; ELECTRA's embeddings half as wide
    (so projected); ModernBERT's second layer local."""
    heads = max(1, width // 8)
    if model_type == "distilbert":
        shape = {"dim": width, "n_layers": layers, "n_heads": heads, "hidden_dim": 2 * width}
        shape |= {"dropout": dropout, "attention_dropout": dropout, "max_position_embeddings": 128}
    elif model_type == "modernbert":
        shape = {"hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": heads}
        shape |= {"intermediate_size": 2 * width, "mlp_dropout": dropout, "attention_dropout": dropout}
        # every other layer local, with a window shorter than the test texts
        shape |= {"max_position_embeddings": 128, "global_attn_every_n_layers": 2, "local_attention": 8}
        shape |= {"classifier_pooling": "mean"}
        shape |= dict.fromkeys(("cls_token_id", "bos_token_id", "eos_token_id", "sep_token_id"), None)
    else:
        shape = {"hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": heads}
        shape |= {
            "intermediate_size": 2 * width,
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": dropout,
        }
        shape |= {"max_position_embeddings": 128 + (pad_token_id + 1 if "roberta" in model_type else 0)}
        shape |= {"type_vocab_size": 1 if "roberta" in model_type else 2}
    if model_type == "electra":
        shape["embedding_size"] = width // 2
    return transformers.AutoConfig.for_model(
        model_type, vocab_size=vocab_size, pad_token_id=pad_token_id, **shape, **extra
    )


def hf_directory(
    root: Path, model_type: str, head: str = "Model", seed: int = 0, corpus: Sequence[str] = CORPUS, **extra
) -> Path:
    """A random `model_type` with `head` ("ForSequenceClassification", ...) and its tokenizer (learnt on
    `corpus`), saved by transformers into `root/<model_type>-<head>`; its weights are far from zero so that
    heads matter. `extra`: config settings (`width`, `layers`, `dropout`, `id2label`, ...)."""
    tokenizer_dir = root / f"{model_type}-tokenizer"
    if not tokenizer_dir.is_dir():
        TOKENIZERS[model_type](tokenizer_dir, corpus, 300 if corpus is CORPUS else 8000)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    config = hf_config(model_type, len(tokenizer), tokenizer.pad_token_id, **extra)
    torch.manual_seed(seed)
    cls = getattr(transformers, "AutoModel" + ("" if head == "Model" else head))
    model = cls.from_config(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    out = root / f"{model_type}-{head}"
    model.save_pretrained(out)
    for name in tokenizer_dir.iterdir():
        shutil.copy(name, out / name.name)
    return out
