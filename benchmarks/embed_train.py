"""The reference for `task: embed` run configs: sentence-transformers' own trainer with the same settings.

The same starting directory (its pooling and normalisation), data, max_len, lr, epochs, batch, warmup,
weight decay and clipping; the loss that matches the config's (`CosineSimilarityLoss` on score /
score_scale, `CoSENTLoss`, `MultipleNegativesRankingLoss` with batches free of duplicate texts,
`SoftmaxLoss` over (u, v, |u - v|), whose classifier lives in the loss and so stays the last epoch's);
evaluated at each epoch end on dev and its best epoch kept, as bertkit keeps its best; scored with
bertkit's metrics on test (dev where there is no test). Real training tokens/s: the tokens of both texts
of every training pair over the time of the steps alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.task import step_timer, trainer_arguments
from bertkit.data.batching import Batch
from bertkit.data.readers import Row
from bertkit.device import pick_device
from bertkit.run import build_task
from bertkit.run_config import RunConfig
from bertkit.tasks.embed import EmbedTask


def _score(task: EmbedTask, model, loss, rows: list[Row]) -> dict:
    """bertkit's evaluator of the embed task's loss on the reference model's vectors of `rows`."""
    settings = task.settings
    first, second = (
        model.encode([str(row[column]) for row in rows], batch_size=64, convert_to_tensor=True).float().cpu()
        for column in (settings.text_a, settings.text_b)
    )
    outputs = {"embeddings": first, "second": second, "similarity": F.cosine_similarity(first, second)}
    if task.classifying:
        with torch.no_grad():
            features = torch.cat([first, second, (first - second).abs()], dim=1)
            outputs["logits"] = loss.classifier(features.to(loss.classifier.weight.device)).cpu()
    examples = task.encode(rows) if task.objective.target != "none" else []
    targets = torch.tensor([example.target for example in examples])
    evaluator = task.objective.evaluator(task.labels)
    evaluator.add(outputs, Batch({"targets": targets}, examples))
    return evaluator.result()


def sentence_transformers_run(config: RunConfig, seed: int, work_dir: Path) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

    task = build_task(config)
    assert isinstance(task, EmbedTask)
    settings = task.settings
    train_rows = task.read_train(config.data)
    task.prepare(train_rows)
    files = (("dev", config.data.dev), ("test", config.data.test))
    rows = {split: task.read(path, with_targets=True) for split, path in files if path}
    torch.manual_seed(seed)
    device = pick_device(config.device)
    model = SentenceTransformer(str(task.model_source), device=str(device))
    model.max_seq_length = config.max_len

    columns = {"sentence1": [str(r[settings.text_a]) for r in train_rows]}
    columns["sentence2"] = [str(r[settings.text_b]) for r in train_rows]
    if task.classifying:
        columns["label"] = [task.labels.index(str(r[settings.label]).strip()) for r in train_rows]
        loss = losses.SoftmaxLoss(model, model.get_sentence_embedding_dimension(), len(task.labels))
    elif task.objective.distinct_texts:
        loss = losses.MultipleNegativesRankingLoss(model)
    else:
        columns["score"] = [float(r[settings.score]) / settings.score_scale for r in train_rows]
        loss = losses.CoSENTLoss(model) if settings.loss == "cosent" else losses.CosineSimilarityLoss(model)

    selection_rows = rows.get("dev", train_rows)

    class BertkitMetric(SentenceEvaluator):
        primary_metric = "main"

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict:
            return {"main": _score(task, model, loss, selection_rows)[task.main_metric]}

    train = config.train
    timer = step_timer(device)
    batches = BatchSamplers.NO_DUPLICATES if task.objective.distinct_texts else BatchSamplers.BATCH_SAMPLER
    args = Arguments(**trainer_arguments(config, seed, work_dir), batch_sampler=batches)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        evaluator=BertkitMetric(),
        callbacks=[timer],
    )
    trainer.train()
    split = "test" if "test" in rows else "dev" if "dev" in rows else "train"
    scores = _score(task, trainer.model, loss, rows.get(split, train_rows))
    real_tokens = train.n_epochs * sum(len(example) for example in task.encode(train_rows))
    return {"split": split, "main": scores[task.main_metric], "train_tokens_per_s": real_tokens / timer.seconds}
