"""Tests of the validation AUC and HR@K."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gfm.hgnn.metrics import auc_score, hit_rate, link_metrics


def test_auc_perfect_random_and_ties():
    assert auc_score(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2])) == 1.0
    assert auc_score(torch.tensor([0.1]), torch.tensor([0.9])) == 0.0
    assert auc_score(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])) == 0.5
    assert math.isnan(auc_score(torch.tensor([]), torch.tensor([0.1])))


def test_auc_of_noise_is_near_half():
    generator = torch.Generator().manual_seed(0)
    pos = torch.rand(4000, generator=generator)
    neg = torch.rand(4000, generator=generator)
    assert abs(auc_score(pos, neg) - 0.5) < 0.03


def test_hit_rate_masks_known_neighbours_and_source():
    # Items 0..4 on a line of angles; item 0 is the source.
    angles = torch.tensor([0.0, 0.1, 0.2, 0.3, 1.5])
    emb = torch.stack([angles.cos(), angles.sin()], dim=1)
    held_out = torch.tensor([[0], [3]])
    # Without masking, 1 and 2 (and 0 itself) beat 3, so 3 ranks fourth.
    nothing_known = torch.empty(2, 0, dtype=torch.long)
    assert hit_rate(emb, emb, held_out, nothing_known, k=2, same_type=True) == 0.0
    # With 1 and 2 known neighbours of 0, item 3 ranks first.
    known = torch.tensor([[0, 0], [1, 2]])
    assert hit_rate(emb, emb, held_out, known, k=1, same_type=True) == 1.0


def test_link_metrics_separates_good_from_random():
    generator = torch.Generator().manual_seed(0)
    good = F.normalize(torch.randn(200, 16, generator=generator), dim=1)
    # Item 100 + i is a slightly moved copy of item i, and the pairs link them.
    good[100:] = F.normalize(
        good[:100] + 0.05 * torch.randn(100, 16, generator=generator), dim=1
    )
    relation = ("item", "co", "item")
    valid = {relation: torch.stack([torch.arange(100), torch.arange(100, 200)])}
    train = {relation: torch.empty(2, 0, dtype=torch.long)}
    metrics = link_metrics({"item": good}, valid, train, k=10, max_pairs=500, seed=0)
    noise = link_metrics(
        {"item": F.normalize(torch.randn(200, 16, generator=generator), dim=1)},
        valid,
        train,
        k=10,
        max_pairs=500,
        seed=0,
    )
    assert metrics["val_auc"] > 0.9
    assert metrics["val_hr"] > 0.9
    assert abs(noise["val_auc"] - 0.5) < 0.15
    assert noise["val_hr"] < 0.2
    assert metrics["val_pairs"] == 100
    assert "val_auc/item__co__item" in metrics
