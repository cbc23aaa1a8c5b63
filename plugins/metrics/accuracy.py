"""Classification quality of the model on a whole split (clean or triggered test set):
accuracy and AUROC, the numbers a reader checks before trusting any map."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord


@dataclass(frozen=True)
class Accuracy:
    scope: str = "model"
    batch_size: int = 128

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        from sklearn.metrics import roc_auc_score

        inp.model.eval()
        logits = torch.cat([inp.model(inp.images[i:i + self.batch_size])
                            for i in range(0, len(inp.images), self.batch_size)]).float()
        y = inp.labels.to(logits.device)
        correct = (logits.argmax(1) == y).float().cpu().numpy()
        prob = logits.softmax(1)[:, 1].cpu().numpy()
        yy = y.cpu().numpy()
        auroc = float(roc_auc_score(yy, prob)) if len(np.unique(yy)) == 2 else float("nan")
        prior = float(max(yy.mean(), 1 - yy.mean()))
        return [Score("accuracy", correct, True, chance=prior),
                Score("auroc", np.array([auroc]), True, chance=0.5)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("accuracy", "test accuracy and AUROC of the model (per split)", Accuracy, family="model",
                       spatial_dims=(2, 3))
