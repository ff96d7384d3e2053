"""The expected gradient of one batch under dropout, on the packed path (bertkit's default) and on the padded
(plain) path: do the two draw gradients of the same mean and variance?

    python scripts/gradient_under_dropout.py ../shared/data/nsmc/train.tsv --text document --draws 30

MiniLM-L6 with a fresh two-label head takes the gradient of every parameter on the file's first batch, `draws`
times per round, in two rounds per path (packed, padded, packed, padded). For each pair of rounds it prints,
over all parameters' coordinates, the spread of the z-scores of the difference of mean gradients (about 1 when
the means agree) and the median ratio of the variances (about 1 when the spreads agree), then the same per
parameter for a few parameters taken alone.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from bertkit.data.readers import read_table
from bertkit.run import default_model_dir
from bertkit.tasks.classify import ClassificationTask
from bertkit.tokenizer import Tokenizer

SINGLED_OUT = (
    "classifier.weight",
    "bert.pooler.dense.weight",
    "bert.encoder.layers.5.ff_out.weight",
    "bert.encoder.layers.0.qkv.weight",
    "bert.embeddings.position.weight",
)
ROUNDS = (("packed", True), ("padded", False), ("packed again", True), ("padded again", False))
PAIRS = (("packed", "padded"), ("packed again", "padded again"), ("packed", "packed again"), ("padded", "padded again"))


def gradient_moments(task: ClassificationTask, model: torch.nn.Module, batch: dict, unpad: bool, draws: int):
    """Mean and unbiased variance, per coordinate, of the flattened gradient over `draws` dropout draws."""
    total = squares = None
    for _ in range(draws):
        model.zero_grad(set_to_none=True)
        task.loss(task.forward(model, batch, unpad), batch["targets"]).backward()
        gradient = torch.cat([p.grad.flatten() for p in model.parameters()]).double()
        total = gradient if total is None else total + gradient
        squares = gradient * gradient if squares is None else squares + gradient * gradient
    mean = total / draws
    return mean, (squares / draws - mean * mean).clamp(min=0) * draws / (draws - 1)


def agreement(first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor], draws: int) -> tuple[float, float]:
    """(sd of the z-scores of the mean difference, median variance ratio) over coordinates that vary."""
    (mean_a, var_a), (mean_b, var_b) = first, second
    error = ((var_a + var_b) / draws).sqrt()
    varies = error > 1e-12
    z = (mean_a - mean_b)[varies] / error[varies]
    return z.std().item(), (var_a[varies] / var_b[varies].clamp(min=1e-30)).median().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a labelled file")
    parser.add_argument("--text", default="text", help="its text column")
    parser.add_argument("--label", default="label", help="its label column")
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model_dir = default_model_dir()
    task = ClassificationTask(Tokenizer.from_pretrained(model_dir), model_dir, 128, args.text, args.label)
    rows = read_table(args.data, [args.text, args.label])[:2000]
    task.prepare(rows)
    examples, _ = task.encode(rows[: args.batch_size])
    batch = task.collate(examples)
    print(f"batch of {args.batch_size}: {batch['attention_mask'].float().mean().item():.0%} real tokens")
    torch.manual_seed(0)
    model = task.build_model().train()
    moments = {name: gradient_moments(task, model, batch, unpad, args.draws) for name, unpad in ROUNDS}

    print("all parameters: z-score sd, median variance ratio")
    for a, b in PAIRS:
        z_sd, ratio = agreement(moments[a], moments[b], args.draws)
        print(f"  {a} against {b}: {z_sd:.3f}, {ratio:.3f}")
    parts, start = {}, 0  # where each parameter lies in the flattened gradient
    for name, parameter in model.named_parameters():
        parts[name], start = slice(start, start + parameter.numel()), start + parameter.numel()
    for name in SINGLED_OUT:
        part = parts[name]
        spreads = [
            agreement(tuple(m[part] for m in moments[a]), tuple(m[part] for m in moments[b]), args.draws)[0]
            for a, b in PAIRS
        ]
        print(f"  {name}, z-score sd per pair: {', '.join(f'{s:.3f}' for s in spreads)}")


if __name__ == "__main__":
    main()
