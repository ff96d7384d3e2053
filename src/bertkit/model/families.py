"""The BERT family's weight names: what each `model_type` calls bertkit's layers in its files, as data.

bertkit names its layers for the reader (`encoder.layers.0.qkv`) and fuses query, key and value into one
matrix; every member of the family is the same encoder under other names, with a few differences the model
reads from its config (RoBERTa's position ids, DistilBERT's missing segments, ELECTRA's narrower embeddings)
and from here (the activation of the dense layer over the first token, the masked-LM head's). A task model's
encoder sits under `bert.` in bertkit and under `roberta.`, `electra.`, ... in the family's files; its heads
keep transformers' names where they share BERT's shape and are renamed here where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (bertkit pattern, Hugging Face pattern) for encoder names that differ; `{i}` is a layer number.
BERT_ENCODER = (
    ("embeddings.word.", "embeddings.word_embeddings."),
    ("embeddings.position.", "embeddings.position_embeddings."),
    ("embeddings.segment.", "embeddings.token_type_embeddings."),
    ("embeddings.norm.", "embeddings.LayerNorm."),
    ("embeddings.project.", "embeddings_project."),  # ELECTRA's, when its embeddings are narrower
    ("encoder.layers.{i}.attn_out.", "encoder.layer.{i}.attention.output.dense."),
    ("encoder.layers.{i}.attn_norm.", "encoder.layer.{i}.attention.output.LayerNorm."),
    ("encoder.layers.{i}.ff_in.", "encoder.layer.{i}.intermediate.dense."),
    ("encoder.layers.{i}.ff_out.", "encoder.layer.{i}.output.dense."),
    ("encoder.layers.{i}.ff_norm.", "encoder.layer.{i}.output.LayerNorm."),
)
DISTILBERT_ENCODER = (
    ("embeddings.word.", "embeddings.word_embeddings."),
    ("embeddings.position.", "embeddings.position_embeddings."),
    ("embeddings.norm.", "embeddings.LayerNorm."),
    ("encoder.layers.{i}.attn_out.", "transformer.layer.{i}.attention.out_lin."),
    ("encoder.layers.{i}.attn_norm.", "transformer.layer.{i}.sa_layer_norm."),
    ("encoder.layers.{i}.ff_in.", "transformer.layer.{i}.ffn.lin1."),
    ("encoder.layers.{i}.ff_out.", "transformer.layer.{i}.ffn.lin2."),
    ("encoder.layers.{i}.ff_norm.", "transformer.layer.{i}.output_layer_norm."),
)
MODERNBERT_ENCODER = (
    ("embeddings.word.", "embeddings.tok_embeddings."),
    ("embeddings.norm.", "embeddings.norm."),
    ("encoder.layers.{i}.attn_norm.", "layers.{i}.attn_norm."),
    ("encoder.layers.{i}.qkv.", "layers.{i}.attn.Wqkv."),  # already fused, in bertkit's order
    ("encoder.layers.{i}.attn_out.", "layers.{i}.attn.Wo."),
    ("encoder.layers.{i}.ff_norm.", "layers.{i}.mlp_norm."),
    ("encoder.layers.{i}.ff_in.", "layers.{i}.mlp.Wi."),
    ("encoder.layers.{i}.ff_out.", "layers.{i}.mlp.Wo."),
    ("encoder.final_norm.", "final_norm."),
)
BERT_LM = (
    ("cls.predictions.transform.dense.", "cls.predictions.transform.dense."),
    ("cls.predictions.transform.LayerNorm.", "cls.predictions.transform.LayerNorm."),
    ("cls.predictions.bias", "cls.predictions.bias"),
)


def _lm_head(dense: str, norm: str, bias: str) -> tuple[tuple[str, str], ...]:
    return tuple(zip((ours for ours, _ in BERT_LM), (dense, norm, bias), strict=True))


@dataclass(frozen=True)
class WeightNames:
    """One family member's names. `heads`: per transformers head ("ForSequenceClassification", ...), the
    (bertkit, Hugging Face) name prefixes of head weights that differ, the encoder's own included (the dense
    layer over the first token is BERT's pooler, RoBERTa's `classifier.dense`). `aliases`: other names a file
    may hold a weight under; `not_weights`: names that are buffers or tied copies, never loaded."""

    prefix: str
    encoder: tuple[tuple[str, str], ...]
    qkv: str | None  # the three attention projections, `{i}` the layer and `{part}` one of `qkv_parts`; None: fused
    qkv_parts: tuple[str, ...]
    first_token_activation: str  # of the dense layer over the first token: BERT's pooler's, or the head's
    lm_activation: str | None  # of the masked-LM transform; None: the config's `hidden_act`
    heads: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    not_weights: tuple[str, ...] = ()

    @property
    def encoder_parts(self) -> tuple[str, ...]:
        """How the encoder's names begin in the family's files."""
        return tuple({hf.split("{i}")[0].split(".")[0] + "." for _, hf in self.encoder} | {"pooler."})


_BERT_LIKE = {
    "encoder": BERT_ENCODER,
    "qkv": "encoder.layer.{i}.attention.self.{part}.",
    "qkv_parts": ("query", "key", "value"),
}
_ROBERTA = WeightNames(
    "roberta.",
    **_BERT_LIKE,
    first_token_activation="tanh",
    lm_activation="gelu",
    heads={
        "ForSequenceClassification": (
            ("bert.pooler.dense.", "classifier.dense."),
            ("classifier.", "classifier.out_proj."),
        ),
        "ForMaskedLM": _lm_head("lm_head.dense.", "lm_head.layer_norm.", "lm_head.bias"),
    },
    aliases={"lm_head.decoder.bias": "lm_head.bias"},
    not_weights=("lm_head.decoder.weight", "embeddings.token_type_ids"),
)
_MODERN_HEAD = (("bert.pooler.dense.", "head.dense."), ("bert.pooler.norm.", "head.norm."))
WEIGHT_NAMES = {
    "bert": WeightNames(
        "bert.",
        **_BERT_LIKE,
        first_token_activation="tanh",
        lm_activation=None,
        heads={"ForPreTraining": BERT_LM, "ForMaskedLM": BERT_LM},
        aliases={"cls.predictions.decoder.bias": "cls.predictions.bias"},
        not_weights=("cls.predictions.decoder.weight",),
    ),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "electra": WeightNames(
        "electra.",
        **_BERT_LIKE,
        first_token_activation="gelu",  # its classification head's, where BERT's pooler has tanh
        lm_activation="gelu",
        heads={
            "ForSequenceClassification": (
                ("bert.pooler.dense.", "classifier.dense."),
                ("classifier.", "classifier.out_proj."),
            ),
            "ForMultipleChoice": (("bert.pooler.dense.", "sequence_summary.summary."),),
            "ForMaskedLM": _lm_head(
                "generator_predictions.dense.", "generator_predictions.LayerNorm.", "generator_lm_head.bias"
            ),
        },
        not_weights=("generator_lm_head.weight",),
    ),
    "modernbert": WeightNames(
        "model.",
        encoder=MODERNBERT_ENCODER,
        qkv=None,
        qkv_parts=(),
        first_token_activation="gelu",  # unused: its heads' dense layer takes `classifier_activation`
        lm_activation=None,
        heads={
            # every head reads the encoder through `head` (dense, activation, norm), bertkit's pooler
            **dict.fromkeys(("ForSequenceClassification", "ForTokenClassification", "ForMultipleChoice"), _MODERN_HEAD),
            "ForQuestionAnswering": (*_MODERN_HEAD, ("qa_outputs.", "classifier.")),
            "ForMaskedLM": _lm_head("head.dense.", "head.norm.", "decoder.bias"),
        },
        not_weights=("decoder.weight",),
    ),
    "distilbert": WeightNames(
        "distilbert.",
        encoder=DISTILBERT_ENCODER,
        qkv="transformer.layer.{i}.attention.{part}.",
        qkv_parts=("q_lin", "k_lin", "v_lin"),
        first_token_activation="relu",  # its `pre_classifier` is followed by a ReLU
        lm_activation=None,
        heads={
            "ForSequenceClassification": (("bert.pooler.dense.", "pre_classifier."),),
            "ForMultipleChoice": (("bert.pooler.dense.", "pre_classifier."),),
            "ForMaskedLM": _lm_head("vocab_transform.", "vocab_layer_norm.", "vocab_projector.bias"),
        },
        not_weights=("vocab_projector.weight",),
    ),
}
