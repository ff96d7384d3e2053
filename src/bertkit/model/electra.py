"""Replaced-token detection (ELECTRA): a small masked-LM generator proposes a token at every masked position,
and the discriminator, a plain BERT encoder with a one-logit head per token, learns for every token whether
it was replaced. Every token teaches the discriminator, not only the masked 15%, which is why it learns more
per token than masked-LM when compute is small.

Saved, the directory is an ordinary BERT one: the discriminator's encoder under `bert.`, which fine-tuning
(bertkit's or transformers') loads as it is; its head and the generator (`generator.`) ride along in the same
weights file, reported as left over by loaders that do not want them.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.model.activations import ACTIVATIONS
from bertkit.model.heads import BertForPreTraining, TaskModel

GENERATOR_SCALE = 4  # the generator is a quarter of the discriminator's width, as the ELECTRA paper finds best
HEAD_DIM = 64


def generator_config(config: ModelConfig) -> ModelConfig:
    """The generator's shape: the discriminator's depth and vocabulary at a quarter of its width."""
    dim = max(HEAD_DIM, config.dim // GENERATOR_SCALE)
    return dataclasses.replace(config, dim=dim, n_heads=max(1, dim // HEAD_DIM), dim_ff=4 * dim)


class ReplacedTokenHead(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.dim, config.dim)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.dense_prediction = nn.Linear(config.dim, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.dense_prediction(self.activation(self.dense(hidden))).squeeze(-1)


class BertForReplacedTokenDetection(TaskModel):
    """The generator's MLM logits at the masked positions, the input with its samples put in, and the
    discriminator's logit for every token of it (replaced or not)."""

    hf_head = "ForPreTraining"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, add_pooler=False)
        self.discriminator_predictions = ReplacedTokenHead(config)
        self.generator = BertForPreTraining(generator_config(config))
        self.init_head(self.discriminator_predictions)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        if masked_positions is None:
            masked_positions = torch.zeros(0, dtype=torch.long, device=input_ids.device)
        mlm_logits, _ = self.generator(input_ids, attention_mask, token_type_ids, masked_positions=masked_positions)
        with torch.no_grad():  # the samples are data for the discriminator: no gradient flows back through them
            sampled = torch.multinomial(mlm_logits.detach().float().softmax(-1), 1).squeeze(-1)
            corrupted = input_ids.flatten().index_put((masked_positions,), sampled).view_as(input_ids)
        hidden = self.bert(corrupted, attention_mask, token_type_ids).last_hidden_state
        return mlm_logits, self.discriminator_predictions(hidden), corrupted
