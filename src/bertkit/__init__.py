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
    "Tokenizer",
    "TrainConfig",
    "UserError",
    "load",
    "pick_device",
]
