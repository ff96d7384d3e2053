import pytest
import torch
from scipy import stats
from sklearn import metrics as sk

from bertkit.scoring import metrics


@pytest.fixture
def labelled():
    generator = torch.Generator().manual_seed(0)
    gold = torch.randint(0, 4, (500,), generator=generator)
    predicted = torch.where(
        torch.rand(500, generator=generator) < 0.7, gold, torch.randint(0, 4, (500,), generator=generator)
    )
    return predicted, gold


def test_single_label_matches_sklearn(labelled):
    predicted, gold = labelled
    result = metrics.single_label(predicted, gold, ["a", "b", "c", "d"])
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(gold, predicted))
    assert result["macro_f1"] == pytest.approx(sk.f1_score(gold, predicted, average="macro"))
    assert result["mcc"] == pytest.approx(sk.matthews_corrcoef(gold, predicted))
    assert result["confusion_matrix"] == sk.confusion_matrix(gold, predicted).tolist()
    recall = sk.recall_score(gold, predicted, average=None)
    assert [result["per_class"][k]["recall"] for k in "abcd"] == pytest.approx(recall.tolist())


def test_multi_label_matches_sklearn():
    generator = torch.Generator().manual_seed(1)
    gold = torch.rand(200, 5, generator=generator) < 0.3
    predicted = gold ^ (torch.rand(200, 5, generator=generator) < 0.15)
    result = metrics.multi_label(predicted, gold, list("abcde"))
    assert result["micro_f1"] == pytest.approx(sk.f1_score(gold, predicted, average="micro"))
    assert result["macro_f1"] == pytest.approx(sk.f1_score(gold, predicted, average="macro"))
    assert result["subset_accuracy"] == pytest.approx(sk.accuracy_score(gold, predicted))


def test_regression_matches_scipy():
    generator = torch.Generator().manual_seed(2)
    gold = torch.randint(0, 6, (300,), generator=generator).float()  # many ties, as in STS scores
    predicted = gold + torch.randn(300, generator=generator)
    result = metrics.regression(predicted, gold)
    assert result["pearson"] == pytest.approx(stats.pearsonr(predicted, gold).statistic)
    assert result["spearman"] == pytest.approx(stats.spearmanr(predicted, gold).statistic)


def test_accumulated_batch_by_batch_the_metrics_equal_those_of_the_whole_set(labelled):
    predicted, gold = labelled
    counts = metrics.ConfusionCounts(4)
    for start in range(0, 500, 64):
        counts.add(predicted[start : start + 64], gold[start : start + 64])
    assert counts.report(list("abcd")) == metrics.single_label(predicted, gold, list("abcd"))
    generator = torch.Generator().manual_seed(3)
    gold_sets = torch.rand(200, 5, generator=generator) < 0.3
    predicted_sets = gold_sets ^ (torch.rand(200, 5, generator=generator) < 0.15)
    label_counts = metrics.MultiLabelCounts(5)
    for start in range(0, 200, 64):
        label_counts.add(predicted_sets[start : start + 64], gold_sets[start : start + 64])
    whole = metrics.MultiLabelCounts(5)
    whole.add(predicted_sets, gold_sets)
    assert label_counts.report(list("abcde")) == whole.report(list("abcde"))
    assert whole.report(list("abcde"))["subset_accuracy"] == pytest.approx(sk.accuracy_score(gold_sets, predicted_sets))
