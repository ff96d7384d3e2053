"""Pretraining: masked-LM plus (optionally) next-sentence prediction, on BertForPreTraining; or, with
`objective: electra`, replaced-token detection (`model/electra.py`).

The corpus is tokenised once into memory-mapped shards (`data/corpus.py`); every epoch draws new sentence
pairs and masks from it (`data/masking.py`), and the first documents are held out, with fixed pairs and
masks, for evaluation. The vocabulary projection runs only at the masked positions. The loss is the mean
over the masked tokens of the batch plus the NSP cross-entropy, as in Google's and Hugging Face's code. Under
ELECTRA it is the generator's MLM loss plus `discriminator_weight` (50, the paper's) times the mean over real
tokens of the discriminator's binary cross-entropy.

A saved pretraining model predicts too: for each [MASK] of a text, the likeliest tokens (`fill-mask`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import ModelConfig
from bertkit.data.batching import Batch, Example
from bertkit.data.corpus import FORMATS, META, Corpus, prepare_corpus, stale_because
from bertkit.data.masking import DEV_EPOCH, Masker, MaskingSettings, PretrainExample, PretrainExamples, build_pairs
from bertkit.data.readers import Row
from bertkit.errors import UserError
from bertkit.model.dropout import set_dropout
from bertkit.model.electra import BertForReplacedTokenDetection
from bertkit.model.heads import BertForMaskedLM, BertForPreTraining
from bertkit.scoring.metrics import Mean
from bertkit.sections import read_json, setting
from bertkit.tasks.base import Outputs, Splits, Task, load_model

if TYPE_CHECKING:
    from bertkit.run_config import RunConfig

log = logging.getLogger("bertkit")
FILL_MASK_TOP_K = 5
OBJECTIVES = ("mlm", "electra")


@dataclasses.dataclass
class PretrainSettings:
    """The `pretrain` section: the corpus and how instances are drawn from it. `text` is the column a saved
    model reads for fill-mask predictions."""

    files: list | None = setting(None, "the corpus: text files")
    format: str = setting(
        "sentences", "sentences (one a line, a blank line between documents) or documents (one a line)"
    )
    prepared: str | None = setting(
        None, "the tokenised shards; unset: <output_dir>/corpus, built when missing or stale"
    )
    scrub: bool = setting(
        False, "replace e-mails, phone numbers and other PII with placeholder tokens before tokenising"
    )
    short_seq_prob: float = setting(0.1, "share of instances made shorter than max_len, in [0, 1)")
    nsp: bool = setting(False, "train next-sentence prediction too (BERT's original recipe; it pays little)")
    mask_prob: float = setting(0.15, "share of tokens masked, in (0, 1)")
    whole_word: bool = setting(False, "mask every piece of a word together")
    dev_documents: int = setting(
        100, "the first documents held out for evaluation (at most a tenth of the corpus), at least 0; 0: no dev"
    )
    text: str = setting("text", "the column a saved model reads for fill-mask predictions")
    objective: str = setting(
        "mlm", "mlm (masked-LM, with NSP when `nsp`) or electra (replaced-token detection; `nsp` false)"
    )
    discriminator_weight: float = setting(
        50.0, "electra: the discriminator's loss weight against the generator's, above 0"
    )
    dropout: float | None = setting(
        None, "every dropout probability while pretraining, in [0, 1); 0: off; unset: the model's own"
    )

    def validate(self, source: str = "config") -> None:
        if self.format not in FORMATS:
            raise UserError(f"{source}: key 'pretrain.format' must be one of {FORMATS}, got {self.format!r}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"{source}: key 'pretrain.objective' must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.discriminator_weight <= 0:
            raise UserError(f"{source}: key 'pretrain.discriminator_weight' must be positive")
        if self.objective == "electra" and self.nsp:
            raise UserError(f"{source}: key 'pretrain.nsp' must be false with objective electra (it has no NSP)")
        if not 0.0 <= self.short_seq_prob < 1.0:
            raise UserError(f"{source}: key 'pretrain.short_seq_prob' must be in [0, 1), got {self.short_seq_prob}")
        if not 0.0 < self.mask_prob < 1.0:
            raise UserError(
                f"{source}: key 'pretrain.mask_prob' must be in (0, 1) (0 masks nothing), got {self.mask_prob}"
            )
        if self.dev_documents < 0:
            raise UserError(f"{source}: key 'pretrain.dev_documents' must not be negative")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise UserError(f"{source}: key 'pretrain.dropout' must be in [0, 1), got {self.dropout}")


@dataclass(eq=False)  # hashed by identity, for the epoch cache
class PretrainingData:
    """A prepared corpus and how a run draws from it: `epoch(n)` gives epoch n's examples, `dev` fixed ones."""

    corpus: Corpus
    masker: Masker
    seed: int
    train_documents: range
    dev: PretrainExamples | None

    @functools.lru_cache(maxsize=1)  # noqa: B019 (one object per run; the trainer asks for epoch 0 twice)
    def epoch(self, epoch: int) -> PretrainExamples:
        settings = self.masker.settings
        pairs = build_pairs(self.corpus, self.train_documents, settings, self.seed * 1_000_003 + epoch)
        return PretrainExamples(self.corpus, pairs, self.masker, self.seed, epoch)


class PretrainTask(Task):
    name = "pretrain"
    settings_type = PretrainSettings
    pipeline_tag = "fill-mask"
    transformers_class = "AutoModelForMaskedLM"
    hf_heads = ("ForMaskedLM", "ForPreTraining")
    reads_training_file = False  # its corpus is its section's `files`
    commands = ("train", "pretrain")
    summary = "pretrain: masked-LM and next-sentence prediction, or ELECTRA"
    reads = "text files: a sentence a line and a blank line between documents, or a document a line"
    gives = "an encoder to fine-tune; per masked text the likeliest tokens"
    # Dev loss picks the best model: on the early unigram plateau every evaluation ties on MLM accuracy.
    main_metric = "loss"
    higher_is_better = False

    @property
    def electra(self) -> bool:
        return self.settings.objective == "electra"

    def masking(self) -> MaskingSettings:
        s = self.settings
        specials = self.tokenizer.template.special_count(pair=s.nsp)
        return MaskingSettings(self.max_len, s.short_seq_prob, s.nsp, s.mask_prob, s.whole_word, specials)

    def data(self, output_dir: str | Path, seed: int) -> PretrainingData:
        """Tokenise the corpus into shards unless it is prepared already, and set aside the dev documents."""
        settings = self.settings
        corpus_dir = Path(settings.prepared or Path(output_dir) / "corpus")
        prepared = (corpus_dir / META).is_file()
        if prepared and settings.files:
            why = stale_because(
                read_json(corpus_dir / META), settings.files, settings.format, settings.scrub, self.tokenizer
            )
            if why and settings.prepared:
                raise UserError(f"key 'pretrain.prepared': {corpus_dir} does not match 'pretrain.files': {why}")
            if why:
                log.info("%s: prepared again (%s)", corpus_dir, why)
                prepared = False
        if not prepared:
            if not settings.files:
                raise UserError(f"config: key 'pretrain.files' is required ({corpus_dir} holds no prepared corpus)")
            meta = prepare_corpus(settings.files, self.tokenizer, corpus_dir, settings.format, settings.scrub)
            log.info(
                "corpus: %d documents, %d sentences, %d tokens",
                *(meta[k] for k in ("documents", "sentences", "tokens")),
            )
        corpus = Corpus(corpus_dir)
        if corpus.meta["vocab_size"] != self.tokenizer.vocab_size:
            raise UserError(
                f"{corpus_dir}: prepared with a {corpus.meta['vocab_size']}-token vocabulary, "
                f"the tokenizer has {self.tokenizer.vocab_size}; prepare it again"
            )
        masking = self.masking()
        masker = Masker(self.tokenizer, masking)
        n_dev = min(settings.dev_documents, corpus.n_documents // 10)
        data = PretrainingData(corpus, masker, seed, range(n_dev, corpus.n_documents), None)
        if n_dev:  # fixed pairs and masks, so that evaluations compare
            data.dev = PretrainExamples(
                corpus, build_pairs(corpus, range(n_dev), masking, seed), masker, seed, DEV_EPOCH
            )
        return data

    def splits(self, config: RunConfig) -> Splits:
        data = self.data(config.output_dir, config.train.seed)
        log.info("pretraining on %d instances per epoch", len(data.epoch(0)))
        files = ", ".join(f"`{name}`" for name in self.settings.files or [self.settings.prepared])
        used = {"train": f"{files}, {len(data.train_documents):,} documents"}
        if data.dev is not None:
            used["dev"] = f"the first {data.train_documents.start:,} documents of the same, held out"
        return Splits(data.epoch, data.dev, used=used)

    def adopt(self, config: ModelConfig, hf_head: str) -> None:
        """A masked-LM from transformers predicts the tokens at its masks; BERT's pretraining model also has
        next-sentence prediction. ELECTRA's discriminator (ElectraForPreTraining) predicts no tokens."""
        if config.hf_class(hf_head) not in ("BertForPreTraining", config.hf_class("ForMaskedLM")):
            raise UserError(f"{self.model_source}: {config.hf_class(hf_head)} predicts no tokens; fine-tune it")
        self.settings.nsp = hf_head == "ForPreTraining"

    def build_model(self) -> BertForPreTraining | BertForMaskedLM | BertForReplacedTokenDetection:
        """Continue from a Hugging Face directory (heads it lacks start fresh), or start from a model JSON,
        whose embeddings then take the vocabulary's size. Masked-LM alone has its own model, which every
        family member has in transformers; next-sentence prediction and ELECTRA are BERT's."""
        cls = (
            BertForReplacedTokenDetection
            if self.electra
            else BertForPreTraining
            if self.settings.nsp
            else BertForMaskedLM
        )
        source = self.model_source / "config.json" if self.model_source.is_dir() else self.model_source
        if cls is not BertForMaskedLM and (model_type := ModelConfig.from_json(source).model_type) != "bert":
            raise UserError(
                f"{source}: a {model_type} model pretrains with masked-LM alone: set pretrain.nsp false "
                f"(and pretrain.objective mlm)"
            )
        if self.model_source.is_dir():
            model = cls.from_pretrained(self.model_source)
        else:
            model = load_model(cls, self.model_source, self.tokenizer, vocab_size=self.tokenizer.vocab_size)
        if self.settings.dropout is not None:
            set_dropout(model, self.settings.dropout)
        return model

    def collate(self, examples: Sequence[PretrainExample | Example]) -> Batch:
        """Training and dev instances carry their masked positions and labels; texts to fill in have theirs at
        the [MASK] tokens."""
        batch = super().collate(examples)
        ids = batch["input_ids"]
        if isinstance(examples[0], PretrainExample):
            width = ids.shape[1]
            batch.tensors["masked_positions"] = torch.cat(
                [torch.from_numpy(e.positions) + row * width for row, e in enumerate(examples)]
            )
            batch.tensors["mlm_labels"] = torch.cat([torch.from_numpy(e.labels) for e in examples])
            # NSP labels: 0 when B continues A, 1 when B is random (Hugging Face's convention)
            batch.tensors["nsp_labels"] = torch.tensor([e.is_random for e in examples], dtype=torch.long)
        else:
            batch.tensors["masked_positions"] = (ids.flatten() == self.tokenizer.mask_id).nonzero().flatten()
        return batch

    def forward(self, model: nn.Module, batch: Batch) -> Outputs:
        inputs = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        if not self.electra:
            logits = model(*inputs, masked_positions=batch["masked_positions"])
            if isinstance(logits, Tensor):  # masked-LM alone
                return {"mlm_logits": logits}
            return {"mlm_logits": logits[0], "nsp_logits": logits[1]}
        mlm_logits, rtd_logits, corrupted = model(*inputs, masked_positions=batch["masked_positions"])
        outputs = {"mlm_logits": mlm_logits, "rtd_logits": rtd_logits}
        if "mlm_labels" in batch.tensors:  # which tokens the generator's samples replaced
            original = batch["input_ids"].flatten().index_put((batch["masked_positions"],), batch["mlm_labels"])
            outputs["replaced"] = corrupted != original.view_as(corrupted)
        return outputs

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor:
        loss = F.cross_entropy(outputs["mlm_logits"].float(), batch["mlm_labels"])
        if self.settings.nsp:
            loss = loss + F.cross_entropy(outputs["nsp_logits"].float(), batch["nsp_labels"])
        if self.electra:
            real = batch["attention_mask"].bool()
            logits, replaced = outputs["rtd_logits"].float()[real], outputs["replaced"][real].float()
            loss = loss + self.settings.discriminator_weight * F.binary_cross_entropy_with_logits(logits, replaced)
        return loss

    def loss_count(self, batch: Batch) -> int:
        # The MLM loss averages over masked tokens; NSP's (over pairs) then weighs by them too, a close match.
        return len(batch["mlm_labels"])

    def metrics(self) -> PretrainMetrics:
        return PretrainMetrics(self.settings.nsp, self.settings.discriminator_weight if self.electra else None)

    @property
    def leaves_parameters_unused(self) -> bool:
        """ELECTRA's generator is a BERT pretraining model whose next-sentence head and pooler get no gradient."""
        return self.electra

    @classmethod
    def starter_settings(cls, data_file: str) -> dict[str, Any]:
        return {"files": [data_file]}

    @property
    def input_columns(self) -> list[str]:
        return [self.settings.text]

    def read(self, path: str | Path, with_targets: bool) -> list[Row]:
        if with_targets:
            raise UserError(f"a {self.name} model is scored on its corpus by `bertkit pretrain`, not on a file")
        return super().read(path, with_targets)

    def encode(self, rows: Sequence[Row], with_targets: bool = False) -> list[Example]:
        texts = [str(row[self.settings.text]) for row in rows]
        encodings = self.tokenizer.encode_batch(texts, max_length=self.max_len)
        return [Example(e.ids, e.type_ids, row=index) for index, e in enumerate(encodings)]

    def predictions(self, n_rows: int) -> FillMaskPredictions:
        return FillMaskPredictions(self, n_rows)


class PretrainMetrics:
    """MLM loss, accuracy and perplexity over every masked token (the generator's, under ELECTRA); NSP loss and
    accuracy over every pair; under ELECTRA the discriminator's loss and accuracy over every real token, and
    its precision, recall and F1 at finding the replaced ones."""

    def __init__(self, nsp: bool, discriminator_weight: float | None = None) -> None:
        self.nsp, self.electra, self.discriminator_weight = nsp, discriminator_weight is not None, discriminator_weight
        self.mlm_loss, self.mlm_accuracy = Mean(), Mean()
        self.nsp_loss, self.nsp_accuracy = Mean(), Mean()
        self.rtd_loss, self.rtd_accuracy = Mean(), Mean()
        self.found = self.flagged = self.replaced = 0

    def add(self, outputs: Outputs, batch: Batch) -> None:
        logits, labels = outputs["mlm_logits"].float(), batch["mlm_labels"]
        self.mlm_loss.add(F.cross_entropy(logits, labels, reduction="sum"), labels.numel())
        self.mlm_accuracy.add((logits.argmax(-1) == labels).sum(), labels.numel())
        if self.nsp:
            nsp_logits, nsp_labels = outputs["nsp_logits"].float(), batch["nsp_labels"]
            self.nsp_loss.add(F.cross_entropy(nsp_logits, nsp_labels, reduction="sum"), nsp_labels.numel())
            self.nsp_accuracy.add((nsp_logits.argmax(-1) == nsp_labels).sum(), nsp_labels.numel())
        if self.electra:
            real = batch["attention_mask"].bool()
            logits, replaced = outputs["rtd_logits"].float()[real], outputs["replaced"][real]
            self.rtd_loss.add(
                F.binary_cross_entropy_with_logits(logits, replaced.float(), reduction="sum"), len(logits)
            )
            flagged = logits > 0
            self.rtd_accuracy.add((flagged == replaced).sum(), len(logits))
            self.found += int((flagged & replaced).sum())
            self.flagged += int(flagged.sum())
            self.replaced += int(replaced.sum())

    def result(self) -> dict:
        result = {
            "mlm_loss": self.mlm_loss.value,
            "mlm_accuracy": self.mlm_accuracy.value,
            "mlm_perplexity": math.exp(min(self.mlm_loss.value, 50.0)),
            "loss": self.mlm_loss.value,
        }
        if self.nsp:
            result.update(nsp_loss=self.nsp_loss.value, nsp_accuracy=self.nsp_accuracy.value)
            result["loss"] += self.nsp_loss.value
        if self.electra:
            precision = self.found / max(self.flagged, 1)
            recall = self.found / max(self.replaced, 1)
            f1 = 2 * precision * recall / max(precision + recall, 1e-12)
            result.update(rtd_loss=self.rtd_loss.value, rtd_accuracy=self.rtd_accuracy.value)
            result.update(rtd_precision=precision, rtd_recall=recall, rtd_f1=f1)
            result["loss"] += self.discriminator_weight * self.rtd_loss.value  # as training weighs it
        return result


class FillMaskPredictions:
    """Per row, for each [MASK] in order, the likeliest tokens and their probabilities."""

    def __init__(self, task: PretrainTask, n_rows: int) -> None:
        self.tokenizer = task.tokenizer
        self.records: list[dict | None] = [None] * n_rows

    def add(self, outputs: Outputs, batch: Batch) -> None:
        probabilities = outputs["mlm_logits"].float().softmax(-1).cpu()
        top = probabilities.topk(min(FILL_MASK_TOP_K, probabilities.shape[-1]), dim=-1)
        rows = (batch["masked_positions"] // batch["input_ids"].shape[1]).tolist()
        masks: list[list[dict]] = [[] for _ in batch.examples]
        for row, ids, scores in zip(rows, top.indices.tolist(), top.values.tolist(), strict=True):
            tokens = self.tokenizer.convert_ids_to_tokens(ids)
            masks[row].append({"tokens": tokens, "probabilities": scores})
        for example, filled in zip(batch.examples, masks, strict=True):
            self.records[example.row] = {"masks": filled}

    def result(self) -> list[dict]:
        return self.records
