"""Hugging Face BERT directories: read and write `config.json` and weights under Hugging Face's names.

bertkit names its layers for the reader (`encoder.layers.0.qkv`) and fuses query, key and value into one
matrix; Hugging Face names them `encoder.layer.0.attention.self.query` and so on. The translation lives
here and nowhere else. Heads keep Hugging Face's names (`classifier`, `cls.predictions`, ...) as they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.errors import UserError
from bertkit.hf_keys import HF_NAMES
from bertkit.io import atomic_directory

if TYPE_CHECKING:
    from bertkit.tokenizer import Tokenizer

log = logging.getLogger("bertkit")

SAFETENSORS = "model.safetensors"
PICKLE = "pytorch_model.bin"
BACKBONE_PARTS = ("embeddings.", "encoder.", "pooler.")
# (bertkit pattern, Hugging Face pattern) for backbone names that differ; `{i}` is a layer number.
RENAMES = [
    ("embeddings.word.", "embeddings.word_embeddings."),
    ("embeddings.position.", "embeddings.position_embeddings."),
    ("embeddings.segment.", "embeddings.token_type_embeddings."),
    ("embeddings.norm.", "embeddings.LayerNorm."),
    ("encoder.layers.{i}.attn_out.", "encoder.layer.{i}.attention.output.dense."),
    ("encoder.layers.{i}.attn_norm.", "encoder.layer.{i}.attention.output.LayerNorm."),
    ("encoder.layers.{i}.ff_in.", "encoder.layer.{i}.intermediate.dense."),
    ("encoder.layers.{i}.ff_out.", "encoder.layer.{i}.output.dense."),
    ("encoder.layers.{i}.ff_norm.", "encoder.layer.{i}.output.LayerNorm."),
]
# Present in Hugging Face files but not weights of their own: a constant buffer and a tied copy.
NOT_WEIGHTS = ("embeddings.position_ids", "cls.predictions.decoder.weight")


def _regex(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(re.escape("{i}"), r"(\d+)"))


_TO_OURS = [(_regex(hf), ours.replace("{i}", r"\1")) for ours, hf in RENAMES]
_TO_HF = [(_regex(ours), hf.replace("{i}", r"\1")) for ours, hf in RENAMES]
_QKV_HF = re.compile(r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$")
_QKV_OURS = re.compile(r"^encoder\.layers\.(\d+)\.qkv\.(weight|bias)$")


def _rename(name: str, table: list[tuple[re.Pattern, str]]) -> str:
    for pattern, replacement in table:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return name


def from_hf_names(state: dict[str, Tensor], backbone_prefix: str) -> dict[str, Tensor]:
    """Hugging Face state dict -> bertkit names, with the backbone under `backbone_prefix`."""
    result: dict[str, Tensor] = {}
    qkv_parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for name, tensor in state.items():
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))
        name = name.removeprefix("bert.")
        if name in NOT_WEIGHTS:
            continue
        if name == "cls.predictions.decoder.bias":
            name = "cls.predictions.bias"  # the same tensor as the bias, under its other name
        if not name.startswith(BACKBONE_PARTS):
            result.setdefault(name, tensor)
            continue
        if match := _QKV_HF.match(name):
            layer, part, kind = match.groups()
            qkv_parts.setdefault((layer, kind), {})[part] = tensor
            continue
        result[backbone_prefix + _rename(name, _TO_OURS)] = tensor
    for (layer, kind), parts in qkv_parts.items():
        if len(parts) != 3:
            missing = sorted({"query", "key", "value"} - parts.keys())
            raise UserError(f"layer {layer}: attention {kind} has no {', '.join(missing)} weights")
        fused = torch.cat([parts["query"], parts["key"], parts["value"]])
        result[f"{backbone_prefix}encoder.layers.{layer}.qkv.{kind}"] = fused
    return result


def to_hf_names(state: dict[str, Tensor], backbone_prefix: str) -> dict[str, Tensor]:
    """bertkit state dict -> Hugging Face names (the inverse of `from_hf_names`)."""
    result: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if not name.startswith(backbone_prefix) or not name[len(backbone_prefix) :].startswith(BACKBONE_PARTS):
            result[name] = tensor.contiguous()
            continue
        inner = name[len(backbone_prefix) :]
        if match := _QKV_OURS.match(inner):
            layer, kind = match.groups()
            for part, chunk in zip(("query", "key", "value"), tensor.chunk(3), strict=True):
                result[f"{backbone_prefix}encoder.layer.{layer}.attention.self.{part}.{kind}"] = chunk.contiguous()
            continue
        result[backbone_prefix + _rename(inner, _TO_HF)] = tensor.contiguous()
    return result


def read_weights(directory: Path) -> dict[str, Tensor]:
    """Weights of a directory: safetensors first; a pickle only through the weights-only loader."""
    if (directory / SAFETENSORS).is_file():
        try:
            return load_file(directory / SAFETENSORS)
        except SafetensorError as err:  # truncated, empty or not safetensors at all
            raise UserError(f"{directory / SAFETENSORS}: damaged weights file ({err})") from None
    if (directory / PICKLE).is_file():
        try:
            return torch.load(directory / PICKLE, map_location="cpu", weights_only=True)
        except Exception as err:  # the weights-only unpickler refuses anything but tensors
            raise UserError(f"{directory / PICKLE}: not a plain weights file ({err})") from None
    raise UserError(f"{directory}: no {SAFETENSORS} or {PICKLE}")


# Hugging Face weight -> the config shape it must have, checked before a model of that shape is built.
SHAPE_OF = {
    "embeddings.word_embeddings.weight": ("vocab_size", "dim"),
    "embeddings.position_embeddings.weight": ("max_len", "dim"),
    "embeddings.token_type_embeddings.weight": ("n_segments", "dim"),
    "encoder.layer.0.intermediate.dense.weight": ("dim_ff", "dim"),
}


def check_shapes(directory: Path, config: ModelConfig) -> None:
    """The weights' shapes against config.json, read from the safetensors header alone: a config that does
    not belong to its weights is one clear error, not a model of the wrong size built first."""
    path = directory / SAFETENSORS
    if not path.is_file():
        return
    try:
        with safe_open(path, "pt") as weights:
            names = weights.keys()  # a safetensors file handle is not iterable
            shapes = {name.removeprefix("bert."): weights.get_slice(name).get_shape() for name in names}
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: damaged weights file ({err})") from None
    for name, keys in SHAPE_OF.items():
        expected = [getattr(config, key) for key in keys]
        if name in shapes and list(shapes[name]) != expected:
            said = ", ".join(f"{HF_NAMES[k]} {getattr(config, k)}" for k in keys)
            raise UserError(f"{directory / 'config.json'}: {said}, but {name} in the weights is {list(shapes[name])}")
    layers = {int(m.group(1)) for name in shapes if (m := re.match(r"encoder\.layer\.(\d+)\.", name))}
    if layers and max(layers) + 1 != config.n_layers:
        raise UserError(
            f"{directory / 'config.json'}: num_hidden_layers {config.n_layers}, but the weights have {max(layers) + 1}"
        )


def count_vocab_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as lines:
        return sum(1 for _ in lines)


class Pretrained(nn.Module):
    """Loading from and saving to Hugging Face directories, for the encoder and every task model.

    A task model keeps its encoder in `self.bert` (Hugging Face's layout), a bare encoder is the backbone
    itself. `hf_architecture` is what `config.json` names, so that transformers' Auto classes pick the
    matching class.
    """

    config: ModelConfig
    hf_architecture = "BertModel"

    @property
    def backbone_prefix(self) -> str:
        return "bert." if hasattr(self, "bert") else ""

    @classmethod
    def from_pretrained(cls, directory: str | Path, **config_overrides: Any):
        """Build from `config.json` and load the weights; `config_overrides` replace config fields."""
        directory = Path(directory)
        if not directory.is_dir():
            raise UserError(f"{directory}: model directory not found")
        config = ModelConfig.from_json(directory / "config.json")
        if config_overrides:
            config = dataclasses.replace(config, **config_overrides)
            config.validate(str(directory / "config.json"))
        vocab = directory / "vocab.txt"
        if vocab.is_file() and (rows := count_vocab_lines(vocab)) != config.vocab_size:
            raise UserError(
                f"{vocab}: {rows} tokens, but the model's embeddings have {config.vocab_size} rows "
                f"(config.json vocab_size); the vocabulary does not belong to this model"
            )
        check_shapes(directory, config)
        model = cls(config)
        model.load_hf_state(read_weights(directory), source=str(directory))
        return model

    def load_hf_state(self, hf_state: dict[str, Tensor], source: str) -> None:
        """Load Hugging Face-named weights; report by name what is missing or left over."""
        state = from_hf_names(hf_state, self.backbone_prefix)
        expected = self.state_dict()
        for name, tensor in state.items():
            if name in expected and expected[name].shape != tensor.shape:
                raise UserError(
                    f"{source}: weight {name} has shape {tuple(tensor.shape)}, "
                    f"the model expects {tuple(expected[name].shape)}"
                )
        missing = sorted(expected.keys() - state.keys())
        unexpected = sorted(state.keys() - expected.keys())
        backbone_missing = [
            name for name in missing if name.removeprefix(self.backbone_prefix).startswith(("embeddings.", "encoder."))
        ]
        if backbone_missing:
            raise UserError(
                f"{source}: encoder weights missing: {', '.join(backbone_missing[:10])}"
                + (f" and {len(backbone_missing) - 10} more" if len(backbone_missing) > 10 else "")
            )
        self.load_state_dict(state, strict=False)
        if missing:
            log.warning("%s: newly initialised (not in the checkpoint): %s", source, ", ".join(missing))
        if unexpected:
            log.warning("%s: not used by %s: %s", source, type(self).__name__, ", ".join(unexpected))

    def save_pretrained(
        self,
        directory: str | Path,
        tokenizer: Tokenizer | None = None,
        extra_files: dict[str, str] | None = None,
        state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write config.json, model.safetensors, the tokenizer files and `extra_files` (name -> text); the
        directory changes atomically. `state`: the weights when the model's own are sharded (FSDP)."""
        state = self.state_dict() if state is None else state
        weights = to_hf_names({k: v.detach().float().cpu() for k, v in state.items()}, self.backbone_prefix)
        if tokenizer is not None and tokenizer.vocab_size != self.config.vocab_size:
            raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens, the model {self.config.vocab_size} rows")
        with atomic_directory(directory) as tmp:
            config = self.config.to_hf_dict(self.hf_architecture)
            (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
            save_file(weights, tmp / SAFETENSORS, metadata={"format": "pt"})
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            for name, text in (extra_files or {}).items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text(text, encoding="utf-8")
            if (tmp / PICKLE).exists():  # a stale pickle beside new safetensors would mislead other loaders
                (tmp / PICKLE).unlink()
