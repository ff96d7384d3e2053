"""sentence-transformers directories: the pooling (and normalisation) written beside a BERT's weights.

Layout: `modules.json` lists the modules (0: Transformer at the root, 1: Pooling in `1_Pooling/`, 2: Normalize
when vectors are scaled to unit length), `1_Pooling/config.json` names the pooling mode, and
`sentence_bert_config.json` the maximum length. bertkit reads the modes it computes (mean, cls, max) and
refuses any other module, rather than embed differently from sentence-transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bertkit.config import SHAPE_LIMITS
from bertkit.errors import UserError
from bertkit.sections import read_json

MODULES = "modules.json"
ST_CONFIG = "sentence_bert_config.json"
POOLING_DIR = "1_Pooling"
# 1_Pooling/config.json's flag for each mode bertkit computes
POOLING_FLAGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
OTHER_FLAGS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


@dataclass
class SentenceLayout:
    pooling: str = "mean"
    normalize: bool = False
    max_len: int | None = None


def is_sentence_dir(directory: Path) -> bool:
    return (directory / MODULES).is_file()


def pooling_mode(path: Path) -> str:
    """The pooling a Pooling module's config names: one `pooling_mode` (sentence-transformers 5 and later), or
    the flags of earlier versions, where none set means mean pooling, as sentence-transformers reads them."""
    config = read_json(path)
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [mode for mode, flag in POOLING_FLAGS.items() if config.get(flag)]
        modes += [flag for flag in OTHER_FLAGS if config.get(flag)]
        mode = modes if len(modes) != 1 else modes[0]
        mode = "mean" if mode == [] else mode
    if not isinstance(mode, str) or mode not in POOLING_FLAGS:
        raise UserError(f"{path}: pooling {mode!r}; bertkit pools by one of {', '.join(POOLING_FLAGS)}")
    return mode


def read_layout(directory: Path) -> SentenceLayout:
    """The pooling, normalisation and maximum length of a sentence-transformers directory."""
    modules = read_json(directory / MODULES, top=list)
    if not all(isinstance(m, dict) for m in modules):
        raise UserError(f"{directory / MODULES}: expected a list of modules")
    layout = SentenceLayout()
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    for module, kind in zip(modules, kinds, strict=True):
        if kind == "Pooling":
            layout.pooling = pooling_mode(directory / str(module.get("path", POOLING_DIR)) / "config.json")
        elif kind == "Normalize":
            layout.normalize = True
        elif kind != "Transformer":
            raise UserError(f"{directory / MODULES}: module {module.get('type')!r} is not one bertkit runs")
    if "Pooling" not in kinds:
        raise UserError(f"{directory / MODULES}: no Pooling module")
    if (directory / ST_CONFIG).is_file():
        max_len = read_json(directory / ST_CONFIG).get("max_seq_length")
        if max_len is not None and (type(max_len) is not int or not 4 <= max_len <= SHAPE_LIMITS["max_len"]):
            raise UserError(
                f"{directory / ST_CONFIG}: key 'max_seq_length' must be a whole number from 4 to "
                f"{SHAPE_LIMITS['max_len']}, got {max_len!r}"
            )
        layout.max_len = max_len
    return layout


def layout_files(layout: SentenceLayout, dim: int, max_len: int) -> dict[str, str]:
    """The files (name -> text) that make a saved BERT directory a sentence-transformers one."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"},
    ]
    if layout.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {
        "word_embedding_dimension": dim,
        **{flag: mode == layout.pooling for mode, flag in POOLING_FLAGS.items()},
    }
    pooling["pooling_mode_mean_sqrt_len_tokens"] = False
    return {
        MODULES: json.dumps(modules, indent=2),
        ST_CONFIG: json.dumps({"max_seq_length": max_len, "do_lower_case": False}, indent=2),
        f"{POOLING_DIR}/config.json": json.dumps(pooling, indent=2),
    }
