"""Text pairs: [CLS] a [SEP] b [SEP] with segment ids 0 and 1, classified (NLI, paraphrase) or scored
(semantic similarity, MSE). A pair too long loses tokens from its longer side first (`longest_first`).

Everything else is classification's (`tasks/classify.py`): the label order of the training data, saved in
`config.json`; an unseen label in dev, test or `evaluate` data is an error; accuracy, macro-F1 and MCC, or
Pearson and Spearman; a saved model loads in transformers' AutoModelForSequenceClassification.
"""

from __future__ import annotations

import dataclasses

from bertkit.errors import UserError
from bertkit.sections import setting
from bertkit.tasks.classify import ClassificationTask
from bertkit.tasks.problems import Regression, SingleLabel


@dataclasses.dataclass
class PairSettings:
    """The `pair` section: the two text columns, the label column, and whether the label is a class
    (`single_label`) or a number (`regression`): chosen here, never guessed from how labels are written."""

    text_a: str = setting("sentence1", "the first text's column")
    text_b: str = setting("sentence2", "the second text's column")
    label: str = setting("label", "the label column")
    problem_type: str = setting(SingleLabel.name, "single_label (a class) or regression (a finite number)")

    def validate(self, source: str = "config") -> None:
        if self.problem_type not in (SingleLabel.name, Regression.name):
            raise UserError(f"{source}: key 'pair.problem_type' must be {SingleLabel.name} or {Regression.name}")


class PairTask(ClassificationTask):
    name = "pair"
    settings_type = PairSettings
    summary = "label a pair of texts (NLI, paraphrase) or score it (similarity)"
    reads = "TSV, CSV or JSONL: two text columns and a label column"
    gives = "per pair: the label and each label's probability (or the value)"
    column_guesses = {
        "text_a": ("sentence1", "text_a", "premise", "question1", "question", "sentence_a", "text1"),
        "text_b": ("sentence2", "text_b", "hypothesis", "question2", "sentence", "sentence_b", "text2"),
        "label": ("label", "labels", "class", "category", "target", "topic", "sentiment"),
    }

    @property
    def input_columns(self) -> list[str]:
        return [self.settings.text_a, self.settings.text_b]
