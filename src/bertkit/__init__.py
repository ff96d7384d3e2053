"""bertkit: tokenize, pretrain, fine-tune, evaluate and serve BERT models."""

from bertkit.config import ModelConfig, TrainConfig
from bertkit.device import pick_device
from bertkit.errors import UserError
from bertkit.inference import load
from bertkit.model.bert import BertModel
from bertkit.model.heads import (
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from bertkit.tokenizer import Encoding, Tokenizer

__all__ = [
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "Encoding",
    "ModelConfig",
    "RunConfig",
    "RunResult",
    "Tokenizer",
    "TrainConfig",
    "UserError",
    "evaluate",
    "load",
    "pick_device",
    "pretrain",
    "train",
]

# The training API loads the trainer (and its plotting) only when it is asked for: `import bertkit` stays light
# for serving and prediction.
_TRAINING = {
    "RunConfig": "bertkit.run_config",
    **dict.fromkeys(("RunResult", "evaluate", "pretrain", "train"), "bertkit.api"),
}


def __getattr__(name: str):
    if name in _TRAINING:
        import importlib

        return getattr(importlib.import_module(_TRAINING[name]), name)
    raise AttributeError(f"module 'bertkit' has no attribute {name!r}")
