"""Typed configs read from and written to JSON.

`ModelConfig` accepts two spellings of the same architecture: the classic pytorchic-bert model file
(`dim, dim_ff, n_layers, ...`) and Hugging Face `config.json` (`hidden_size, intermediate_size, ...`).
`TrainConfig` accepts the classic train file. Every error names the key and the file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path
from typing import Any

from bertkit.errors import UserError
from bertkit.hf_keys import (
    HF_IGNORED,
    HF_NAMES,
    HF_UNSUPPORTED,
    MODEL_TYPES,
    Spelling,
    modern_from_hf,
    modern_to_hf,
    unread_hf_key,
)
from bertkit.sections import build_section, read_json, setting

log = logging.getLogger("bertkit")
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
REPORT_TO = ("tensorboard",)  # what `train.report_to` may name
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("linear", "cosine")
MODERN_SETTINGS = (
    "local_attention",
    "global_every",
    "global_rope_theta",
    "local_rope_theta",
    "biases",
    "classifier_pooling",
    "classifier_activation",
)


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
    model_type: str = setting("bert", f"the family member: {', '.join(MODEL_TYPES)}")
    embedding_size: int | None = setting(
        None, "width of the embeddings when below `dim` (ELECTRA's), projected to `dim`; unset: `dim`"
    )
    local_attention: int = setting(
        128, "modernbert: the window of local attention layers (each token sees half on either side), at least 2"
    )
    global_every: int = setting(
        1, "modernbert: every n-th layer from the first attends globally, the others locally; 1: all global"
    )
    global_rope_theta: float = setting(160000.0, "modernbert: rotary base of the global layers, above 0")
    local_rope_theta: float = setting(10000.0, "modernbert: rotary base of the local layers, above 0")
    biases: bool = setting(True, "modernbert: LayerNorms and linear layers have biases (the BERT family's always do)")
    classifier_pooling: str = setting("cls", "modernbert: what classification heads read: cls (first token) or mean")
    classifier_activation: str = setting("gelu", "modernbert: activation of the heads' dense layer, as hidden_act")
    id2label: dict | None = setting(None, "label names by id, written by the task (a map of 0..n-1 to distinct names)")
    problem_type: str | None = setting(
        None, "written by the task: single_label_classification, multi_label_classification or regression"
    )

    def validate(self, source: str = "config") -> None:
        if self.model_type not in MODEL_TYPES:
            raise UserError(
                f"{source}: key 'model_type' is {self.model_type!r}; bertkit reads {', '.join(MODEL_TYPES)}"
            )
        for key, most in SHAPE_LIMITS.items():
            least = self.spelling.fixed.get(key, 1)  # DistilBERT has no segment embeddings: 0
            if not least <= getattr(self, key) <= most:
                raise UserError(f"{source}: key '{key}' must be in [{least}, {most}], got {getattr(self, key)}")
        if self.embedding_size is not None:
            if "embedding_size" not in self.spelling.names:
                raise UserError(f"{source}: key 'embedding_size' is ELECTRA's; a {self.model_type} model has none")
            if not 0 < self.embedding_size <= SHAPE_LIMITS["dim"]:
                raise UserError(f"{source}: key 'embedding_size' must be in [1, {SHAPE_LIMITS['dim']}]")
        self._validate_modern(source)
        if self.positions < 1:
            raise UserError(f"{source}: key 'max_len' ({self.max_len}) leaves no position after the padding id")
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

    def _validate_modern(self, source: str) -> None:
        if self.model_type != "modernbert":
            fresh = ModelConfig()
            for key in MODERN_SETTINGS:
                if getattr(self, key) != getattr(fresh, key):
                    raise UserError(f"{source}: key '{key}' is ModernBERT's; a {self.model_type} model has none")
            return
        if self.local_attention < 2 or self.global_every < 1:
            raise UserError(f"{source}: keys 'local_attention' (>= 2) and 'global_every' (>= 1) are out of range")
        if not self.global_rope_theta > 0 or not self.local_rope_theta > 0:
            raise UserError(f"{source}: keys 'global_rope_theta' and 'local_rope_theta' must be above 0")
        if self.classifier_pooling not in ("cls", "mean"):
            raise UserError(f"{source}: key 'classifier_pooling' must be cls or mean, got {self.classifier_pooling!r}")
        if self.classifier_activation not in ACTIVATIONS:
            raise UserError(f"{source}: key 'classifier_activation' must be one of {ACTIVATIONS}")
        if (self.dim // self.n_heads) % 2:
            raise UserError(f"{source}: rotary positions need an even head width ('dim' / 'n_heads')")

    @property
    def spelling(self) -> Spelling:
        return MODEL_TYPES[self.model_type]

    @property
    def position_offset(self) -> int:
        """The position id of a sequence's first token: RoBERTa's count from after the padding id."""
        return self.pad_token_id + 1 if self.spelling.positions_after_padding else 0

    @property
    def positions(self) -> int:
        """The longest sequence the position embeddings allow."""
        return self.max_len - self.position_offset

    @property
    def ff_in_width(self) -> int:
        """Rows of the feed-forward's first layer: ModernBERT's gives the gate too (GeGLU)."""
        return 2 * self.dim_ff if self.model_type == "modernbert" else self.dim_ff

    def hf_class(self, head: str) -> str:
        """transformers' class of this family with `head` ("Model", "ForSequenceClassification", ...)."""
        return self.spelling.class_prefix + head

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
        model_type = data.get("model_type", "bert")
        if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
            raise UserError(f"{source}: key 'model_type' is {model_type!r}; bertkit reads {', '.join(MODEL_TYPES)}")
        for key, supported in HF_UNSUPPORTED.items():
            if data.get(key, supported) != supported:
                raise UserError(f"{source}: key '{key}' = {data[key]!r} is not supported (only {supported!r})")
        spelling = MODEL_TYPES[model_type]
        data = dict(data)
        modern = modern_from_hf(data, source) if model_type == "modernbert" else {}
        classic_of = {hf: classic for classic, hf in spelling.names.items()}
        values: dict[str, Any] = {"model_type": model_type, **spelling.fixed, **modern}
        for key, value in data.items():
            if value is None:  # null: unset, as transformers reads it
                continue
            if key in classic_of:
                values[classic_of[key]] = value
            elif key == "id2label":
                values["id2label"] = _label_ids(value, source)
            elif key == "problem_type":
                values["problem_type"] = value
            elif key in spelling.ignored or key in HF_IGNORED or key in HF_UNSUPPORTED or key.startswith("_"):
                continue
            else:
                unread_hf_key(key, source)
        return build_section(cls, values, source)

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(read_json(path), source=str(path))

    def to_hf_dict(self, head: str = "Model") -> dict[str, Any]:
        """config.json for transformers' class of this family with `head`."""
        data: dict[str, Any] = {"architectures": [self.hf_class(head)], "model_type": self.model_type}
        data.update({hf: getattr(self, classic) for classic, hf in self.spelling.names.items()})
        if "embedding_size" in data:  # transformers' ELECTRA default is not `hidden_size`: always written
            data["embedding_size"] = self.embedding_size or self.dim
        if self.model_type == "modernbert":
            thetas = (self.global_rope_theta, self.local_rope_theta)
            data |= modern_to_hf(self.n_layers, self.global_every, thetas, self.biases)
        else:
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
    batch_ramp: float = setting(
        0.0,
        "share of the planned steps over which a step's micro-batches grow evenly from 1 to `grad_accum` "
        "(a batch-size ramp), in [0, 1); 0: every step takes `grad_accum`",
    )
    max_grad_norm: float = setting(
        1.0, "clip the gradients' total norm to this, at least 0; 0: no clipping (as transformers)"
    )
    precision: str = setting(
        "auto", "auto (bf16 on CUDA and on CPUs whose bf16 matmuls pay, else fp32), fp32, bf16 or fp16"
    )
    group_by_length: bool = setting(False, "false: random batches; true: batches of similar length")
    schedule: str = setting(
        "linear", "the learning rate after warmup: linear (down to 0 in a straight line) or cosine (one cycle)"
    )
    unpad: bool = setting(
        True,
        "true: where padding is over a tenth of a batch, only real tokens go through the network; "
        "false: the plain padded path",
    )
    compile: bool = setting(
        False,
        "true: each encoder layer runs through torch.compile (attention as it is, between compiled parts); "
        "the compile time is logged",
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
    report_to: list = setting(
        [], 'where else the logged metrics go: ["tensorboard"] writes event files in the run\'s tensorboard/'
    )

    def validate(self, source: str = "config") -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"{source}: key 'precision' must be one of {PRECISIONS}, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"{source}: key 'schedule' must be one of {SCHEDULES}, got {self.schedule!r}")
        for sink in self.report_to:
            if sink not in REPORT_TO:
                raise UserError(f"{source}: key 'report_to' may hold {', '.join(REPORT_TO)}, got {sink!r}")
            if importlib.util.find_spec(sink) is None:
                raise UserError(f"{source}: key 'report_to': {sink} is not installed (pip install 'bertkit[{sink}]')")
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
        if not 0.0 <= self.batch_ramp < 1.0:
            raise UserError(f"{source}: key 'batch_ramp' is a fraction of total steps in [0, 1), got {self.batch_ramp}")
        if self.batch_ramp and self.grad_accum == 1:
            raise UserError(f"{source}: key 'batch_ramp' grows the batch by micro-batches: set 'grad_accum' above 1")
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
