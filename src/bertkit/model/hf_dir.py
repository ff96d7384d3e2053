"""Hugging Face BERT directories: read and write `config.json` and weights under Hugging Face's names.

bertkit names its layers for the reader (`encoder.layers.0.qkv`) and fuses query, key and value into one
matrix; Hugging Face names them `encoder.layer.0.attention.self.query` and so on. The translation lives
here and nowhere else. Heads keep Hugging Face's names (`classifier`, `cls.predictions`, ...) as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as FastTokenizer
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.errors import UserError
from bertkit.io import atomic_directory
from bertkit.model.families import WEIGHT_NAMES
from bertkit.tokenizer import INPUT_NAMES

if TYPE_CHECKING:
    from bertkit.tokenizer import Tokenizer

log = logging.getLogger("bertkit")

SAFETENSORS = "model.safetensors"
PICKLE = "pytorch_model.bin"
OUR_ENCODER_PARTS = ("embeddings.", "encoder.", "pooler.")


def _regex(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(re.escape("{i}"), r"(\d+)"))


@functools.cache
def _tables(model_type: str) -> tuple[list, list, re.Pattern, re.Pattern]:
    """Regex tables of a family's encoder names, both ways, and of its query/key/value names, both ways."""
    names = WEIGHT_NAMES[model_type]
    to_ours = [(_regex(hf), ours.replace("{i}", r"\1")) for ours, hf in names.encoder]
    to_hf = [(_regex(ours), hf.replace("{i}", r"\1")) for ours, hf in names.encoder]
    never = re.compile("(?!)")  # a family whose files hold query, key and value fused renames them as any layer
    parts = "|".join(names.qkv_parts)
    qkv_hf = never
    if names.qkv is not None:
        qkv_hf = re.compile(
            "^"
            + re.escape(names.qkv).replace(re.escape("{i}"), r"(\d+)").replace(re.escape("{part}"), f"({parts})")
            + r"(weight|bias)$"
        )
    qkv_ours = re.compile(r"^encoder\.layers\.(\d+)\.qkv\.(weight|bias)$") if names.qkv is not None else never
    return to_ours, to_hf, qkv_hf, qkv_ours


def _rename(name: str, table: list[tuple[re.Pattern, str]]) -> str:
    for pattern, replacement in table:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return name


def _head_rename(name: str, pairs: tuple[tuple[str, str], ...], to_hf: bool) -> str | None:
    for ours, hf in pairs:
        source, target = (ours, hf) if to_hf else (hf, ours)
        if name.startswith(source):
            return target + name[len(source) :]
    return None


def from_hf_names(state: dict[str, Tensor], backbone_prefix: str, model_type: str = "bert", head: str = "Model"):
    """Hugging Face state dict of a `model_type` with `head` -> bertkit names, with the encoder under
    `backbone_prefix`."""
    names = WEIGHT_NAMES[model_type]
    to_ours, _, qkv_hf, _ = _tables(model_type)
    result: dict[str, Tensor] = {}
    qkv_parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for name, tensor in state.items():
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))
        name = names.aliases.get(name, name)
        if name in names.not_weights or name.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue
        if (ours := _head_rename(name, names.heads.get(head, ()), to_hf=False)) is not None:
            result.setdefault(
                backbone_prefix + ours.removeprefix("bert.") if ours.startswith("bert.") else ours, tensor
            )
            continue
        name = name.removeprefix(names.prefix)
        if not name.startswith(names.encoder_parts):
            result.setdefault(name, tensor)
            continue
        if match := qkv_hf.match(name):
            layer, part, kind = match.groups()
            qkv_parts.setdefault((layer, kind), {})[part] = tensor
            continue
        result[backbone_prefix + _rename(name, to_ours)] = tensor
    for (layer, kind), parts in qkv_parts.items():
        if len(parts) != 3:
            missing = sorted(set(names.qkv_parts) - parts.keys())
            raise UserError(f"layer {layer}: attention {kind} has no {', '.join(missing)} weights")
        fused = torch.cat([parts[part] for part in names.qkv_parts])
        result[f"{backbone_prefix}encoder.layers.{layer}.qkv.{kind}"] = fused
    return result


def to_hf_names(state: dict[str, Tensor], backbone_prefix: str, model_type: str = "bert", head: str = "Model"):
    """bertkit state dict -> Hugging Face names of a `model_type` with `head` (the inverse of `from_hf_names`)."""
    names = WEIGHT_NAMES[model_type]
    _, to_hf, _, qkv_ours = _tables(model_type)
    their_prefix = names.prefix if backbone_prefix else ""
    result: dict[str, Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.contiguous()
        qualified = "bert." + name[len(backbone_prefix) :] if name.startswith(backbone_prefix) else name
        if (hf := _head_rename(qualified, names.heads.get(head, ()), to_hf=True)) is not None:
            result[hf] = tensor
            continue
        inner = name[len(backbone_prefix) :]
        if not name.startswith(backbone_prefix) or not inner.startswith(OUR_ENCODER_PARTS):
            result[name] = tensor
            continue
        if match := qkv_ours.match(inner):
            layer, kind = match.groups()
            for part, chunk in zip(names.qkv_parts, tensor.chunk(3), strict=True):
                result[their_prefix + names.qkv.format(i=layer, part=part) + kind] = chunk.contiguous()
            continue
        result[their_prefix + _rename(inner, to_hf)] = tensor
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


# bertkit weight -> the config shape it must have, checked before a model of that shape is built; "width" is
# the embeddings' (ELECTRA's `embedding_size`, else `dim`).
SHAPE_OF = {
    "embeddings.word.weight": ("vocab_size", "width"),
    "embeddings.position.weight": ("max_len", "width"),
    "embeddings.segment.weight": ("n_segments", "width"),
    "encoder.layers.0.ff_in.weight": ("dim_ff", "dim"),  # twice `dim_ff` rows where it has a gate
}


def check_shapes(directory: Path, config: ModelConfig) -> None:
    """The weights' shapes against config.json, read from the safetensors header alone: a config that does
    not belong to its weights is one clear error, not a model of the wrong size built first."""
    path = directory / SAFETENSORS
    if not path.is_file():
        return
    prefix, (to_ours, *_) = WEIGHT_NAMES[config.model_type].prefix, _tables(config.model_type)
    try:
        with safe_open(path, "pt") as weights:
            names = weights.keys()  # a safetensors file handle is not iterable
            shapes = {
                _rename(name.removeprefix(prefix), to_ours): weights.get_slice(name).get_shape() for name in names
            }
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: damaged weights file ({err})") from None
    width_key = "embedding_size" if config.embedding_size else "dim"
    for name, keys in SHAPE_OF.items():
        keys = tuple(width_key if key == "width" else key for key in keys)
        expected = [config.ff_in_width if key == "dim_ff" else getattr(config, key) for key in keys]
        if name in shapes and list(shapes[name]) != expected:
            said = ", ".join(f"{config.spelling.names[k]} {getattr(config, k)}" for k in keys)
            raise UserError(f"{directory / 'config.json'}: {said}, but {name} in the weights is {list(shapes[name])}")
    layers = {int(m.group(1)) for name in shapes if (m := re.match(r"encoder\.layers\.(\d+)\.", name))}
    if layers and max(layers) + 1 != config.n_layers:
        layers_key = config.spelling.names["n_layers"]
        raise UserError(
            f"{directory / 'config.json'}: {layers_key} {config.n_layers}, but the weights have {max(layers) + 1}"
        )


def check_vocab_size(directory: Path, config: ModelConfig) -> None:
    """A vocab.txt has a row per embedding; a tokenizer.json's ids must all have one (a model may hold more
    rows than its tokenizer uses)."""
    vocab, tokenizer_file = directory / "vocab.txt", directory / "tokenizer.json"
    if vocab.is_file():
        with vocab.open(encoding="utf-8") as lines:
            rows = sum(1 for _ in lines)
        if rows != config.vocab_size:
            raise UserError(
                f"{vocab}: {rows} tokens, but the model's embeddings have {config.vocab_size} rows "
                f"(config.json vocab_size); the vocabulary does not belong to this model"
            )
    elif tokenizer_file.is_file():
        try:
            ids = FastTokenizer.from_file(str(tokenizer_file)).get_vocab(with_added_tokens=True).values()
        except Exception:  # unreadable: the tokenizer's own loading says so in one line
            return
        if ids and max(ids) >= config.vocab_size:
            raise UserError(
                f"{tokenizer_file}: token ids up to {max(ids)}, but the model's embeddings have "
                f"{config.vocab_size} rows (config.json vocab_size); the tokenizer does not belong to this model"
            )


class Pretrained(nn.Module):
    """Loading from and saving to Hugging Face directories, for the encoder and every task model.

    A task model keeps its encoder in `self.bert` (Hugging Face's layout), a bare encoder is the backbone
    itself. `hf_head` is transformers' name of the head ("ForSequenceClassification"): with the family's
    prefix, the class `config.json` names, so that transformers' Auto classes pick the matching class.
    """

    config: ModelConfig
    hf_head: ClassVar[str] = "Model"

    @property
    def hf_architecture(self) -> str:
        return self.config.hf_class(self.hf_head)

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
        check_vocab_size(directory, config)
        check_shapes(directory, config)
        model = cls(config)
        model.load_hf_state(read_weights(directory), source=str(directory))
        return model

    def load_hf_state(self, hf_state: dict[str, Tensor], source: str) -> None:
        """Load Hugging Face-named weights; report by name what is missing or left over."""
        state = from_hf_names(hf_state, self.backbone_prefix, self.config.model_type, self.hf_head)
        expected = self.state_dict()
        for name, tensor in list(state.items()):
            if name in expected and expected[name].shape != tensor.shape:
                said = f"weight {name} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[name].shape)}"
                if name.removeprefix(self.backbone_prefix).startswith(("embeddings.", "encoder.")):
                    raise UserError(f"{source}: {said}")
                log.warning("%s: %s: the head starts fresh (another label set)", source, said)
                del state[name]
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
        weights = {k: v.detach().float().cpu() for k, v in state.items()}
        weights = to_hf_names(weights, self.backbone_prefix, self.config.model_type, self.hf_head)
        if tokenizer is not None and not tokenizer.fits(self.config.vocab_size):
            raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens, the model {self.config.vocab_size} rows")
        with atomic_directory(directory) as tmp:
            config = self.config.to_hf_dict(self.hf_head)
            (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
            save_file(weights, tmp / SAFETENSORS, metadata={"format": "pt"})
            if tokenizer is not None:
                # DistilBERT reads no segment ids: transformers' tokenizer must not hand it any
                names = [name for name in INPUT_NAMES if self.config.n_segments or name != "token_type_ids"]
                tokenizer.save_pretrained(tmp, input_names=names)
            for name, text in (extra_files or {}).items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text(text, encoding="utf-8")
            if (tmp / PICKLE).exists():  # a stale pickle beside new safetensors would mislead other loaders
                (tmp / PICKLE).unlink()
