"""Hugging Face's names in `config.json`: what each of bertkit's model settings is called there, for each
member of the BERT family, and which of its other keys bertkit drops (bookkeeping), refuses (a network it does
not build) or warns about."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
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
# DistilBERT's config.json names the same settings its own way.
DISTILBERT_NAMES = {
    "dim": "dim",
    "dim_ff": "hidden_dim",
    "n_layers": "n_layers",
    "n_heads": "n_heads",
    "p_drop_attn": "attention_dropout",
    "p_drop_hidden": "dropout",
    "max_len": "max_position_embeddings",
    "vocab_size": "vocab_size",
    "pad_token_id": "pad_token_id",
    "hidden_act": "activation",
    "initializer_range": "initializer_range",
}

# ModernBERT's; its attention window, layer pattern, rotary bases and biases are read by `modern_from_hf`.
MODERNBERT_NAMES = {
    "dim": "hidden_size",
    "dim_ff": "intermediate_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "p_drop_attn": "attention_dropout",
    "p_drop_hidden": "mlp_dropout",
    "max_len": "max_position_embeddings",
    "vocab_size": "vocab_size",
    "layer_norm_eps": "norm_eps",
    "pad_token_id": "pad_token_id",
    "hidden_act": "hidden_activation",
    "initializer_range": "initializer_range",
    "local_attention": "local_attention",
    "classifier_pooling": "classifier_pooling",
    "classifier_activation": "classifier_activation",
}
MODERN_BIASES = ("norm_bias", "attention_bias", "mlp_bias", "classifier_bias")
# transformers' defaults, for a config.json that leaves them out
MODERN_DEFAULTS = {"global_rope_theta": 160000.0, "local_rope_theta": 10000.0, "global_attn_every_n_layers": 3}


@dataclass(frozen=True)
class Spelling:
    """How one `model_type` writes its config: transformers' class names start with `class_prefix`; `names`
    maps bertkit's settings to its keys; `fixed` holds the settings it has no key for, at the values its
    network implies; `positions_after_padding`: position ids count from `pad_token_id + 1` (RoBERTa's)."""

    class_prefix: str
    names: dict[str, str]
    fixed: dict[str, Any] = field(default_factory=dict)
    positions_after_padding: bool = False
    ignored: frozenset[str] = frozenset()  # keys of this type that change nothing bertkit computes


MODEL_TYPES = {
    "bert": Spelling("Bert", HF_NAMES),
    "roberta": Spelling("Roberta", HF_NAMES, positions_after_padding=True),
    "xlm-roberta": Spelling("XLMRoberta", HF_NAMES, positions_after_padding=True),
    # ELECTRA's discriminator; `embedding_size` below `hidden_size` adds a projection after the embeddings.
    "electra": Spelling(
        "Electra",
        {**HF_NAMES, "embedding_size": "embedding_size"},
        ignored=frozenset("summary_type summary_use_proj summary_activation summary_last_dropout".split()),
    ),
    # No segment embeddings; its LayerNorms' epsilon is fixed; the two head dropouts act in training only.
    "distilbert": Spelling(
        "DistilBert",
        DISTILBERT_NAMES,
        {"n_segments": 0, "layer_norm_eps": 1e-12},
        ignored=frozenset("qa_dropout seq_classif_dropout tie_weights_".split()),
    ),
    # Pre-norm, GeGLU, rotary positions, local and global attention; no segments, no position embeddings.
    "modernbert": Spelling(
        "ModernBert",
        MODERNBERT_NAMES,
        {"n_segments": 0},
        ignored=frozenset(
            (
                "initializer_cutoff_factor cls_token_id embedding_dropout deterministic_flash_attn "
                "sparse_prediction sparse_pred_ignore_index reference_compile repad_logits_with_grad"
            ).split()
        ),
    ),
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
    "sinusoidal_pos_embds": False,
}


def unread_hf_key(key: str, source: str) -> None:
    """A key bertkit does not read: an error when it looks like a misspelt network setting, else a warning."""
    network_keys = [*HF_NAMES.values(), *DISTILBERT_NAMES.values(), *MODERNBERT_NAMES.values(), *HF_UNSUPPORTED]
    if close := difflib.get_close_matches(key, network_keys, n=1, cutoff=0.8):
        raise UserError(f"{source}: unknown key '{key}' (did you mean '{close[0]}'?)")
    log.warning("%s: key '%s' is not read by bertkit (it does not change a BERT network)", source, key)


def modern_from_hf(data: dict[str, Any], source: str) -> dict[str, Any]:
    """ModernBERT's layer pattern, rotary bases and biases from its config.json, as bertkit's settings; the
    keys it consumes are removed from `data`. transformers 5 writes `layer_types` and `rope_parameters`,
    earlier versions `global_attn_every_n_layers` and `global_rope_theta` / `local_rope_theta`."""
    values: dict[str, Any] = {}
    biases = {data.pop(key, False) for key in MODERN_BIASES}
    if len(biases) != 1:
        raise UserError(f"{source}: keys {', '.join(MODERN_BIASES)} must agree (bertkit builds all or none)")
    values["biases"] = biases.pop()
    if data.pop("decoder_bias", True) is not True:
        raise UserError(f"{source}: key 'decoder_bias' = false is not supported (only true)")
    every = data.pop("global_attn_every_n_layers", MODERN_DEFAULTS["global_attn_every_n_layers"])
    layer_types = data.pop("layer_types", None)
    if layer_types is not None:  # transformers 5 writes both; the list is what it builds
        n_layers = data.get("num_hidden_layers")
        patterns = range(1, n_layers + 1) if isinstance(n_layers, int) and n_layers > 0 else ()
        every = next((n for n in patterns if layer_types == modern_layer_types(n_layers, n)), None)
        if every is None:
            raise UserError(
                f"{source}: key 'layer_types' must name each of the num_hidden_layers layers, every n-th from the "
                "first 'full_attention' and the others 'sliding_attention'"
            )
    values["global_every"] = every
    rope = data.pop("rope_parameters", None) or {}
    if not isinstance(rope, dict):
        raise UserError(f"{source}: key 'rope_parameters' must be an object, got {type(rope).__name__}")
    thetas = {"full_attention": "global_rope_theta", "sliding_attention": "local_rope_theta"}
    for layer_type, key in thetas.items():
        theta = data.pop(key, MODERN_DEFAULTS[key])
        if isinstance(rope.get(layer_type), dict):
            if rope[layer_type].get("rope_type", "default") != "default":
                raise UserError(f"{source}: key 'rope_parameters' scales {layer_type}; only the default is supported")
            theta = rope[layer_type].get("rope_theta", theta)
        values[key] = theta
    if data.pop("rope_scaling", None) is not None:
        raise UserError(f"{source}: key 'rope_scaling' is not supported (only none)")
    return values


def modern_layer_types(n_layers: int, every: int) -> list[str]:
    """transformers' names of each layer's attention: global on every `every`-th layer from the first."""
    return ["sliding_attention" if i % every else "full_attention" for i in range(n_layers)]


def modern_to_hf(n_layers: int, global_every: int, thetas: tuple[float, float], biases: bool) -> dict[str, Any]:
    """The keys of ModernBERT's config.json that `modern_from_hf` reads."""
    return {
        "layer_types": modern_layer_types(n_layers, global_every),
        "global_attn_every_n_layers": global_every,
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": thetas[0]},
            "sliding_attention": {"rope_type": "default", "rope_theta": thetas[1]},
        },
        **dict.fromkeys(MODERN_BIASES, biases),
        "decoder_bias": True,
        "tie_word_embeddings": True,
        # transformers' defaults are ids of ModernBERT's own vocabulary; the network reads none of them
        **dict.fromkeys(("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id"), None),
    }
