"""Typed configs read from and written to JSON.

`ModelConfig` accepts two spellings of the same architecture: the classic pytorchic-bert model file
(`dim, dim_ff, n_layers, ...`) and Hugging Face `config.json` (`hidden_size, intermediate_size, ...`).
`TrainConfig` accepts the classic train file. Every error names the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import logging
import math
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertkit.errors import UserError

log = logging.getLogger("bertkit")
# Classic name -> Hugging Face name. The classic names are the attribute names.
HF_NAMES = {
    "dim": "hidden_size",
    "dim_ff": "intermediate_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "p_drop_attn": "attention_probs_dropout_prob",
    "p_drop_hidden": "hidden_dropout_prob",
    "max_len": "max_position_embeddings",
    "n_segments": "type_vocab_size",
    "vocab_size": "vocab_size",
    "layer_norm_eps": "layer_norm_eps",
    "pad_token_id": "pad_token_id",
    "hidden_act": "hidden_act",
    "initializer_range": "initializer_range",
}
# Hugging Face keys that describe bookkeeping, not the network; read and dropped.
HF_IGNORED = set(
    (
        "architectures model_type _name_or_path transformers_version torch_dtype dtype gradient_checkpointing "
        "use_cache classifier_dropout output_past chunk_size_feed_forward output_hidden_states "
        "output_attentions return_dict tie_word_embeddings is_encoder_decoder bos_token_id eos_token_id "
        "sep_token_id directionality pooler_fc_size pooler_num_attention_heads pooler_num_fc_layers "
        "pooler_size_per_head pooler_type tokenizer_class num_labels label2id finetuning_task pruned_heads "
        "torchscript use_bfloat16 tf_legacy_loss xla_device prefix task_specific_params "
        "cross_attention_hidden_size tie_encoder_decoder decoder_start_token_id forced_bos_token_id "
        "forced_eos_token_id remove_invalid_values output_scores return_dict_in_generate"
    ).split()
)
# Generation settings that older transformers versions write into every config; dropped too.
HF_IGNORED |= set(
    (
        "max_length min_length do_sample early_stopping num_beams num_beam_groups diversity_penalty "
        "temperature top_k top_p typical_p repetition_penalty length_penalty no_repeat_ngram_size "
        "encoder_no_repeat_ngram_size bad_words_ids num_return_sequences exponential_decay_length_penalty "
        "suppress_tokens begin_suppress_tokens"
    ).split()
)
# Hugging Face settings that would change the network into one bertkit does not build.
HF_UNSUPPORTED = {
    "position_embedding_type": "absolute",
    "is_decoder": False,
    "add_cross_attention": False,
}
# Beyond these a network is a typo, not a model that fits in memory; checked before anything is built.
SHAPE_LIMITS = {
    "vocab_size": 1 << 22,
    "dim": 1 << 14,
    "n_layers": 256,
    "n_heads": 512,
    "dim_ff": 1 << 16,
    "max_len": 1 << 17,
    "n_segments": 1 << 10,
}
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def setting(default: Any, doc: str) -> Any:
    """A config key: its default, and what it means (its bounds, and its meaning at 0), for the reference
    (`docs/config.md`, made from these by scripts/config_reference.py)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


def _check_type(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Return `value` converted to the field's type, or raise naming the key and the file."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
        origin = typing.get_origin(annotation)
    expected = origin or annotation
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{source}: key '{key}' must be a finite number, got {value}")
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise UserError(f"{source}: key '{key}' must be {expected.__name__}, got {type(value).__name__} ({value!r})")
    return value


def unknown_key(key: str, known: typing.Iterable[str], source: str, prefix: str = "") -> UserError:
    """The error for a key no section has: the section's keys, and the closest of them when one is close."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
    section = f"the {prefix[:-1]!r} section's" if prefix else "top-level"
    return UserError(f"{source}: unknown key '{prefix}{key}' ({hint}{section} keys: {', '.join(known)})")


def _origin(key: str, source: str, set_keys: typing.AbstractSet[str]) -> str:
    """Where a key's value came from: a `--set` on the command line, or the file."""
    if any(k == key or k.startswith(key + ".") for k in set_keys):
        return f"--set {key}"
    return source


def build_section(
    cls: type,
    data: dict[str, Any],
    source: str,
    prefix: str = "",
    extra_keys: tuple = (),
    set_keys: typing.AbstractSet[str] = frozenset(),
) -> Any:
    """A config dataclass from a JSON object: unknown keys, wrong types and impossible values name the key and
    the file (or the `--set` among `set_keys` that gave it). `extra_keys` are known to the message (sections
    read elsewhere)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise unknown_key(key, names | set(extra_keys), _origin(prefix + key, source, set_keys), prefix)
    values = {
        key: _check_type(value, hints[key], prefix + key, _origin(prefix + key, source, set_keys))
        for key, value in data.items()
    }
    config = cls(**values)
    if validate := getattr(config, "validate", None):
        validate(source)
    return config


def read_json(path: str | Path, top: type = dict) -> Any:
    """A JSON file whose top level is a `top` (an object, or a list); a missing, unreadable, non-UTF-8 or
    malformed file is a user error naming it (and the line)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file (a JSON file is expected)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: invalid JSON (nested too deeply)") from None
    if not isinstance(data, top):
        raise UserError(f"{path}: expected a JSON {'object' if top is dict else 'list'} at the top level")
    return data


def _unread_hf_key(key: str, source: str) -> None:
    """A key bertkit does not read: an error when it looks like a misspelt network setting, else a warning."""
    network_keys = [*HF_NAMES.values(), *HF_UNSUPPORTED]
    if close := difflib.get_close_matches(key, network_keys, n=1, cutoff=0.8):
        raise UserError(f"{source}: unknown key '{key}' (did you mean '{close[0]}'?)")
    log.warning("%s: key '%s' is not read by bertkit (it does not change a BERT network)", source, key)


def _label_ids(value: Any, source: str) -> dict[int, str]:
    """`id2label` with int ids (JSON object keys are strings): the names of ids 0..n-1, each once."""
    error = UserError(f"{source}: key 'id2label' must map the ids 0, 1, ... to distinct label names")
    if not isinstance(value, dict) or not value:
        raise error
    try:
        labels = {int(i): name for i, name in value.items()}
    except ValueError:
        raise error from None
    names = list(labels.values())
    if sorted(labels) != list(range(len(labels))) or not all(isinstance(n, str) for n in names):
        raise error
    if len(set(names)) != len(names):
        raise error
    return labels


@dataclasses.dataclass
class ModelConfig:
    """The shape of a BERT network, plus the label names of a task head when it has one."""

    vocab_size: int = setting(30522, "rows of the token embeddings, 1 to 4,194,304; must equal the vocabulary's size")
    dim: int = setting(768, "hidden width (`hidden_size`), 1 to 16,384, a multiple of `n_heads`")
    n_layers: int = setting(12, "encoder layers (`num_hidden_layers`), 1 to 256")
    n_heads: int = setting(12, "attention heads, 1 to 512")
    dim_ff: int = setting(3072, "feed-forward width (`intermediate_size`), 1 to 65,536")
    p_drop_hidden: float = setting(
        0.1, "dropout after embeddings, attention output and feed-forward, in [0, 1); 0: off"
    )
    p_drop_attn: float = setting(0.1, "dropout on attention probabilities, in [0, 1); 0: off")
    max_len: int = setting(
        512, "position embeddings (`max_position_embeddings`), 1 to 131,072; the run's `max_len` may not exceed it"
    )
    n_segments: int = setting(2, "segment (token type) embeddings, 1 to 1,024")
    layer_norm_eps: float = setting(1e-12, "LayerNorm epsilon, above 0")
    pad_token_id: int = setting(0, "id of [PAD], inside the vocabulary")
    hidden_act: str = setting("gelu", "feed-forward activation: gelu, gelu_new, gelu_pytorch_tanh or relu")
    initializer_range: float = setting(0.02, "standard deviation of fresh weights, at least 0")
    id2label: dict | None = setting(None, "label names by id, written by the task (a map of 0..n-1 to distinct names)")
    problem_type: str | None = setting(
        None, "written by the task: single_label_classification, multi_label_classification or regression"
    )

    def validate(self, source: str = "config") -> None:
        for key, most in SHAPE_LIMITS.items():
            if not 0 < getattr(self, key) <= most:
                raise UserError(f"{source}: key '{key}' must be in [1, {most}], got {getattr(self, key)}")
        if self.dim % self.n_heads:
            raise UserError(f"{source}: key 'dim' ({self.dim}) must be divisible by 'n_heads' ({self.n_heads})")
        if not self.layer_norm_eps > 0 or self.initializer_range < 0:
            raise UserError(f"{source}: keys 'layer_norm_eps' (> 0) and 'initializer_range' (>= 0) are out of range")
        for key in ("p_drop_hidden", "p_drop_attn"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise UserError(f"{source}: key '{key}' must be in [0, 1), got {getattr(self, key)}")
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(f"{source}: key 'hidden_act' must be one of {ACTIVATIONS}, got {self.hidden_act!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise UserError(f"{source}: key 'problem_type' must be one of {PROBLEM_TYPES}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise UserError(f"{source}: key 'pad_token_id' ({self.pad_token_id}) is outside the vocabulary")

    @property
    def labels(self) -> list[str] | None:
        """Label names in id order, when the config carries a task head's labels."""
        if not self.id2label:
            return None
        return [self.id2label[i] for i in range(len(self.id2label))]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        """Build from either spelling; the presence of `hidden_size` or `model_type` marks Hugging Face's."""
        if "hidden_size" in data or "model_type" in data:
            return cls._from_hf(data, source)
        return build_section(cls, data, source)

    @classmethod
    def _from_hf(cls, data: dict[str, Any], source: str) -> ModelConfig:
        if data.get("model_type", "bert") != "bert":
            raise UserError(f"{source}: key 'model_type' is {data['model_type']!r}; bertkit reads BERT models only")
        for key, supported in HF_UNSUPPORTED.items():
            if data.get(key, supported) != supported:
                raise UserError(f"{source}: key '{key}' = {data[key]!r} is not supported (only {supported!r})")
        classic_of = {hf: classic for classic, hf in HF_NAMES.items()}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is None:  # null: unset, as transformers reads it
                continue
            if key in classic_of:
                values[classic_of[key]] = value
            elif key == "id2label":
                values["id2label"] = _label_ids(value, source)
            elif key == "problem_type":
                values["problem_type"] = value
            elif key not in HF_IGNORED and key not in HF_UNSUPPORTED and not key.startswith("_"):
                _unread_hf_key(key, source)
        return build_section(cls, values, source)

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(read_json(path), source=str(path))

    def to_hf_dict(self, architecture: str = "BertModel") -> dict[str, Any]:
        data: dict[str, Any] = {"architectures": [architecture], "model_type": "bert"}
        data.update({hf: getattr(self, classic) for classic, hf in HF_NAMES.items()})
        data["position_embedding_type"] = "absolute"
        if self.id2label:
            data["id2label"] = {str(i): name for i, name in self.id2label.items()}
            data["label2id"] = {name: i for i, name in self.id2label.items()}
        if self.problem_type:
            data["problem_type"] = self.problem_type
        return data

    def to_classic_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in HF_NAMES}


@dataclasses.dataclass
class TrainConfig:
    """The classic train file: `warmup` is a fraction of the total steps; `total_steps` caps training when set."""

    seed: int = setting(42, "seed of initial weights, batch order, masks and dropout, in [0, 2^31)")
    batch_size: int = setting(32, "examples per micro-batch, at least 1")
    lr: float = setting(5e-5, "peak learning rate of AdamW, above 0")
    n_epochs: int = setting(3, "passes over the training data, at least 1")
    warmup: float = setting(0.1, "share of the steps spent warming the learning rate up, in [0, 1); 0: no warmup")
    save_steps: int = setting(
        500, "evaluate on dev and write a checkpoint every this many steps (and at each epoch end), at least 1"
    )
    total_steps: int | None = setting(None, "stop after this many steps, at least 1; unset: `n_epochs` decides")
    weight_decay: float = setting(0.01, "AdamW weight decay, never on biases and LayerNorm, at least 0; 0: off")
    grad_accum: int = setting(1, "micro-batches per optimizer step, at least 1")
    max_grad_norm: float = setting(
        1.0, "clip the gradients' total norm to this, at least 0; 0: no clipping (as transformers)"
    )
    precision: str = setting(
        "auto", "auto (bf16 on CUDA and on CPUs whose bf16 matmuls pay, else fp32), fp32, bf16 or fp16"
    )
    group_by_length: bool = setting(False, "false: random batches; true: batches of similar length")
    unpad: bool = setting(
        True,
        "true: where padding is over a tenth of a batch, only real tokens go through the network; "
        "false: the plain padded path",
    )
    keep_checkpoints: int = setting(2, "checkpoints kept (the newest), at least 1")
    patience: int | None = setting(
        None, "evaluations without a better dev score before stopping, at least 1; unset: never stop early"
    )
    log_steps: int = setting(10, "write a training line to metrics.jsonl every this many steps, at least 1")
    eval_batch_size: int = setting(64, "examples per evaluation batch, at least 1")
    max_minutes: float | None = setting(
        None, "training-time budget in minutes, above 0; the schedule is fitted to the steps it allows; unset: none"
    )
    fsdp: bool = setting(
        False, "under torchrun: shard weights, gradients and optimizer state (FSDP) rather than replicate them (DDP)"
    )

    def validate(self, source: str = "config") -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"{source}: key 'precision' must be one of {PRECISIONS}, got {self.precision!r}")
        for key in (
            "batch_size",
            "n_epochs",
            "save_steps",
            "grad_accum",
            "keep_checkpoints",
            "log_steps",
            "eval_batch_size",
        ):
            if getattr(self, key) <= 0:
                raise UserError(f"{source}: key '{key}' must be positive, got {getattr(self, key)}")
        if self.lr <= 0:
            raise UserError(f"{source}: key 'lr' must be positive, got {self.lr}")
        if not 0 <= self.seed < 2**31:
            raise UserError(f"{source}: key 'seed' must be in [0, 2^31), got {self.seed}")
        for key in ("weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise UserError(f"{source}: key '{key}' must not be negative (0: off), got {getattr(self, key)}")
        if self.patience is not None and self.patience <= 0:
            raise UserError(f"{source}: key 'patience' must be positive (unset: never stop early), got {self.patience}")
        if not 0.0 <= self.warmup < 1.0:
            raise UserError(f"{source}: key 'warmup' is a fraction of total steps in [0, 1), got {self.warmup}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UserError(f"{source}: key 'max_minutes' must be positive, got {self.max_minutes}")
        if self.total_steps is not None and self.total_steps <= 0:
            raise UserError(f"{source}: key 'total_steps' must be positive, got {self.total_steps}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        return build_section(cls, data, source)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_json(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DataConfig:
    """The files of a run's splits; paths are relative to the working directory. Which columns they hold is
    the task's to say, in its own section."""

    train: str | None = setting(
        None, "the training file (TSV, CSV, JSONL; CoNLL for tag; SQuAD JSON for qa); required but for pretrain"
    )
    dev: str | None = setting(
        None, "the dev file: evaluated at each epoch end and every `train.save_steps`; picks the best model"
    )
    test: str | None = setting(None, "the test file: scored once, with the best model")
    train_rows: int | None = setting(
        None, "train on the first N rows of the training file only, at least 1; unset: all"
    )

    def validate(self, source: str = "config") -> None:
        if self.train_rows is not None and self.train_rows <= 0:
            raise UserError(f"{source}: key 'data.train_rows' must be positive, got {self.train_rows}")


# Keys of earlier run configs and where they live now: in the section of the task that reads them.
MOVED_KEYS = {
    "problem_type": "classify.problem_type",
    "threshold": "classify.threshold",
    "data.text": "classify.text",
    "data.text_pair": "pair.text_b (with task pair)",
    "classify.text_pair": "pair.text_b (with task pair)",
    "data.label": "classify.label",
    "data.label_separator": "classify.label_separator",
    "corpus": "pretrain",
}


@dataclasses.dataclass
class RunConfig:
    """A whole run, fine-tuning or pretraining. `model` is a Hugging Face directory to start from, a classic
    model JSON to train from random weights (then `tokenizer` names the vocabulary directory), or unset for the
    pip-shipped all-MiniLM-L6-v2. `train` may be inline or the path of a classic train file. The task's own
    settings (`settings`) are the section named after the task: `"classify": {"text": "sentence"}`, say."""

    task: str = setting(
        "classify", "classify, pair, tag, qa, embed or pretrain; its settings are the section of that name"
    )
    model: str | None = setting(
        None,
        "a Hugging Face model directory or hub id to fine-tune, or a model JSON for random weights; "
        "unset: the pip-shipped all-MiniLM-L6-v2",
    )
    tokenizer: str | None = setting(None, "the directory of vocab.txt, needed when `model` is a model JSON")
    output_dir: str = setting(
        "runs/run", "the run directory; one run a directory (`--resume` continues it, `--overwrite` replaces it)"
    )
    max_len: int = setting(128, "tokens per input, [CLS] and [SEP] included, from 4 to the model's positions")
    device: str | None = setting(None, "cpu, cuda, cuda:N or mps; unset: the best available")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    settings: Any = None

    def validate(self, source: str = "config") -> None:
        if self.max_len < 4:
            raise UserError(
                f"{source}: key 'max_len' must be at least 4 ([CLS], a token, [SEP], ...), got {self.max_len}"
            )

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        source: str = "config",
        task_settings: dict[str, type] | None = None,
        set_keys: typing.AbstractSet[str] = frozenset(),
    ) -> RunConfig:
        """`task_settings` maps each task's name to the dataclass of its section (the task registry's, given
        by whoever assembles the run); `set_keys` are the keys a `--set` gave, for the messages."""
        if task_settings is None:
            from bertkit.tasks import TASKS  # the tasks import this module

            task_settings = {name: task.settings_type for name, task in TASKS.items()}
        data = dict(data)
        for old, new in MOVED_KEYS.items():
            section, _, key = old.rpartition(".")
            holder = data.get(section, {}) if section else data
            if isinstance(holder, dict) and key in holder:
                raise UserError(f"{source}: key '{old}' is now '{new}' (the task's own section); move it there")
        name = data.get("task", cls.task)
        if not isinstance(name, str) or name not in task_settings:
            close = difflib.get_close_matches(str(name), task_settings, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = _origin("task", source, set_keys)
            raise UserError(f"{where}: unknown task {name!r} ({hint}known: {', '.join(task_settings)})")
        section = functools.partial(build_section, source=source, set_keys=set_keys)
        settings = section(task_settings[name], _section(data.pop(name, {}), name, source), prefix=f"{name}.")
        train = data.pop("train", {})
        if isinstance(train, str):  # the path of a classic train file
            train_config = TrainConfig.from_json(train)
        else:
            train_config = section(TrainConfig, _section(train, "train", source), prefix="train.")
        data_config = section(DataConfig, _section(data.pop("data", {}), "data", source), prefix="data.")
        if "settings" in data:
            raise UserError(f"{source}: unknown key 'settings' (the task's settings go under '{name}')")
        config = section(cls, data, extra_keys=("data", "train", name))
        return dataclasses.replace(config, train=train_config, data=data_config, settings=settings)

    @classmethod
    def from_json(
        cls,
        path: str | Path,
        overrides: Sequence[str] = (),
        defaults: dict[str, Any] | None = None,
        task_settings: dict[str, type] | None = None,
    ) -> RunConfig:
        """The config of a JSON file, after `overrides` (`--set key=value`); `defaults` fill absent keys."""
        data = {**(defaults or {}), **read_json(path)}
        for assignment in overrides:
            apply_override(data, assignment)
        set_keys = {assignment.partition("=")[0] for assignment in overrides}
        return cls.from_dict(data, str(path), task_settings, set_keys)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        data = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in data.items()}
        return {**data, self.task: dataclasses.asdict(self.settings)}


def _section(value: Any, key: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{source}: key '{key}' must be an object")
    return value


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply `key=value` or `section.key=value`; the value is read as JSON when it parses, else as text."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set {assignment!r}: expected key=value")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    *sections, last = key.split(".")
    target = data
    for section in sections:
        if isinstance(target.get(section), str):
            target[section] = read_json(target[section])
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise UserError(f"--set {assignment!r}: {section!r} is not a section")
    target[last] = value
