import pytest
import torch
from scipy import stats
from sklearn import metrics as sk

from bertkit.train import metrics


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
