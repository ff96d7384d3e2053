"""Task models: the encoder plus one head each.

Attribute names follow Hugging Face's classes of the same name (`bert`, `classifier`, `qa_outputs`,
`cls.predictions`, `cls.seq_relationship`), so a saved directory loads in transformers unchanged. Each model
returns raw logits; losses belong to the tasks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.model.activations import ACTIVATIONS
from bertkit.model.bert import BertModel, init_bert_weights
from bertkit.model.dropout import Dropout
from bertkit.model.families import WEIGHT_NAMES
from bertkit.model.hf_dir import Pretrained


def num_labels(config: ModelConfig) -> int:
    """Label count from the config: one output for regression, two when no labels are named."""
    if config.problem_type == "regression":
        return 1
    return len(config.id2label) if config.id2label else 2


class TaskModel(Pretrained):
    def __init__(self, config: ModelConfig, add_pooler: bool, token_head: bool = False) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooler, token_head)

    def init_head(self, *modules: nn.Module) -> None:
        for module in modules:
            module.apply(lambda m: init_bert_weights(m, self.config.initializer_range))

    def last_hidden(
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None, positions: Tensor | None
    ) -> Tensor:
        """The last layer's states: (batch, seq, dim), or (positions, dim) at flat grid `positions` alone."""
        if positions is None:
            return self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        return self.bert.hidden_at(input_ids, attention_mask, token_type_ids, positions)


class _LinearClassifier(TaskModel):
    """Dropout and one linear layer, over the pooled [CLS] vector or over every token."""

    per_token: bool

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, add_pooler=not self.per_token, token_head=self.per_token)
        self.dropout = Dropout(config.p_drop_hidden)
        self.classifier = nn.Linear(config.dim, num_labels(config))
        self.init_head(self.classifier)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """For a token classifier, `positions` (flat indices into the batch*seq grid, of real tokens) gives
        the logits of those tokens alone, (positions, labels), equal to the full grid's there; past its
        attention the last layer runs for them alone."""
        if self.per_token:
            features = self.bert.token_features(self.last_hidden(input_ids, attention_mask, token_type_ids, positions))
        else:
            features = self.bert.pooled(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(features))


class BertForSequenceClassification(_LinearClassifier):
    """Logits (batch, labels) from the pooled [CLS] vector."""

    hf_head = "ForSequenceClassification"
    per_token = False


class BertForTokenClassification(_LinearClassifier):
    """Logits (batch, seq, labels), one row per token (or per token of `positions`)."""

    hf_head = "ForTokenClassification"
    per_token = True


class BertForQuestionAnswering(TaskModel):
    """Start and end logits (batch, seq) of an answer span."""

    hf_head = "ForQuestionAnswering"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, add_pooler=False, token_head=True)
        self.qa_outputs = nn.Linear(config.dim, 2)
        self.init_head(self.qa_outputs)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        hidden = self.bert.token_features(self.last_hidden(input_ids, attention_mask, token_type_ids, None))
        start, end = self.qa_outputs(hidden).unbind(dim=-1)
        return start, end


class PredictionTransform(nn.Module):
    """dense, activation, LayerNorm: hidden states to the embeddings' width (ELECTRA's may be narrower)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.embedding_size or config.dim
        self.dense = nn.Linear(config.dim, width, bias=config.biases)
        # ModernBERT's heads all take `classifier_activation`; the BERT family's, their own or `hidden_act`
        modern = config.model_type == "modernbert"
        activation = config.classifier_activation if modern else WEIGHT_NAMES[config.model_type].lm_activation
        self.activation = ACTIVATIONS[activation or config.hidden_act]
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps, bias=config.biases)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.LayerNorm(self.activation(self.dense(hidden)))


class MaskedLMHead(nn.Module):
    """Vocabulary logits; the output matrix is the word embedding matrix (tied), passed in at call time."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.transform = PredictionTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        return nn.functional.linear(self.transform(hidden), word_embeddings, self.bias)


class BertForMaskedLM(TaskModel):
    """Masked-LM logits alone: the pretraining head of every family member (BERT's adds next-sentence
    prediction, `BertForPreTraining`). With `masked_positions`, (positions, vocab) for those tokens alone."""

    hf_head = "ForMaskedLM"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, add_pooler=False)
        self.cls = nn.Module()
        self.cls.predictions = MaskedLMHead(config)
        self.init_head(self.cls)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> Tensor:
        hidden = self.last_hidden(input_ids, attention_mask, token_type_ids, masked_positions)
        return self.cls.predictions(hidden, self.bert.embeddings.word.weight)


class PreTrainingHeads(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.predictions = MaskedLMHead(config)
        self.seq_relationship = nn.Linear(config.dim, 2)


class BertForPreTraining(TaskModel):
    """Masked-LM logits and next-sentence logits.

    With `masked_positions` (flat indices into the batch*seq grid) the vocabulary projection, the costliest
    matmul of pretraining, runs only where a prediction is scored, and so do the last encoder layer's
    feed-forward and attention output (for those tokens and [CLS], which the NSP head reads).
    """

    hf_head = "ForPreTraining"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, add_pooler=True)
        self.cls = PreTrainingHeads(config)
        self.init_head(self.cls)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if masked_positions is None:
            output = self.bert(input_ids, attention_mask, token_type_ids)
            hidden, pooled = output.last_hidden_state, output.pooler_output
        else:
            batch, width = input_ids.shape
            first_tokens = torch.arange(batch, device=input_ids.device) * width
            positions = torch.cat([first_tokens, masked_positions])
            selected = self.bert.hidden_at(input_ids, attention_mask, token_type_ids, positions)
            first_hidden, hidden = selected.split([batch, masked_positions.numel()])
            pooled = self.bert.pooler(first_hidden)
        mlm_logits = self.cls.predictions(hidden, self.bert.embeddings.word.weight)
        return mlm_logits, self.cls.seq_relationship(pooled)


POOLING_MODES = ("mean", "cls", "max")


def pool(hidden: Tensor, attention_mask: Tensor, mode: str) -> Tensor:
    """(batch, dim) sentence vectors from (batch, seq, dim) token vectors: the mean or the maximum over real
    tokens, or the [CLS] token's."""
    if mode == "cls":
        return hidden[:, 0]
    real = attention_mask.unsqueeze(-1).bool()
    if mode == "max":
        return hidden.masked_fill(~real, torch.finfo(hidden.dtype).min).amax(dim=1)
    return (hidden * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


class SentenceEncoder(BertModel):
    """Sentence-BERT: the encoder's token vectors pooled into one vector per text (`pooling`: mean, cls or
    max), scaled to unit length when `normalize`. Its weights are a plain BertModel's, so the directory it
    saves is what sentence-transformers' Transformer module loads; the pooling is read and saved beside
    them by the embedding task (`model/st_dir.py`). A config with labels and a classification problem adds
    `pair_classifier`, the linear layer over (u, v, |u - v|) that trains the encoder on labelled pairs (NLI)."""

    def __init__(self, config: ModelConfig, pooling: str = "mean", normalize: bool = False) -> None:
        super().__init__(config, add_pooler=False)
        self.pooling, self.normalize = pooling, normalize
        self.pair_classifier = None
        if config.id2label and config.problem_type == "single_label_classification":
            self.pair_classifier = nn.Linear(3 * config.dim, len(config.id2label))
            init_bert_weights(self.pair_classifier, config.initializer_range)

    def classify_pairs(self, first: Tensor, second: Tensor) -> Tensor:
        """Label logits of pairs of sentence vectors."""
        return self.pair_classifier(torch.cat([first, second, (first - second).abs()], dim=-1))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = super().forward(input_ids, attention_mask, token_type_ids).last_hidden_state
        vectors = pool(hidden, attention_mask, self.pooling)
        return nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors
