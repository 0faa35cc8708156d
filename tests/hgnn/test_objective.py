"""Tests of the max-margin losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gfm.hgnn.objective import hinge_loss, in_batch_hinge_loss


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_hinge_zero_when_margin_met():
    src = unit([1.0, 0.0])
    pos = unit([1.0, 0.0])
    neg = unit([0.0, 1.0]).unsqueeze(1)
    assert float(hinge_loss(src, pos, neg, margin=0.5)) == 0.0


def test_hinge_counts_violations():
    src = unit([1.0, 0.0])
    pos = unit([0.0, 1.0])
    neg = unit([1.0, 0.0]).unsqueeze(1)
    # margin - s(u, v) + s(u, n) = 0.5 - 0 + 1
    assert abs(float(hinge_loss(src, pos, neg, margin=0.5)) - 1.5) < 1e-6


def test_hinge_averages_over_negatives():
    src = unit([1.0, 0.0])
    pos = unit([1.0, 0.0])
    neg = torch.stack([unit([1.0, 0.0], [0.0, 1.0])])
    # Terms: 0.2 - 1 + 1 = 0.2 and max(0, 0.2 - 1 + 0) = 0.
    assert abs(float(hinge_loss(src, pos, neg, margin=0.2)) - 0.1) < 1e-6


def test_in_batch_skips_duplicate_positives():
    src = unit([1.0, 0.0], [1.0, 0.0])
    pos = unit([1.0, 0.0], [1.0, 0.0])
    same = torch.tensor([7, 7])
    assert float(in_batch_hinge_loss(src, pos, same, margin=0.5)) == 0.0
    different = torch.tensor([7, 8])
    assert abs(float(in_batch_hinge_loss(src, pos, different, margin=0.5)) - 0.5) < 1e-6


def test_in_batch_gradient_flows():
    src = unit([1.0, 0.2], [0.1, 1.0]).requires_grad_()
    pos = unit([0.3, 1.0], [1.0, 0.0])
    loss = in_batch_hinge_loss(src, pos, torch.tensor([0, 1]), margin=0.5)
    loss.backward()
    assert float(loss.detach()) > 0.0
    assert src.grad is not None
    assert float(src.grad.abs().sum()) > 0.0


def test_in_batch_skips_anchor_itself():
    # Pairs (1, 2) and (2, 1) of a same-type relation: row 0's anchor is
    # node 1, which is row 1's positive, so that column is no negative.
    src = unit([1.0, 0.0], [0.0, 1.0])
    pos = unit([0.0, 1.0], [1.0, 0.0])
    dst_ids = torch.tensor([2, 1])
    src_ids = torch.tensor([1, 2])
    assert float(in_batch_hinge_loss(src, pos, dst_ids, 0.2, src_ids)) == 0.0
    # Without the source ids the anchor's own score of 1 counts against it.
    unmasked = float(in_batch_hinge_loss(src, pos, dst_ids, 0.2))
    assert abs(unmasked - 1.2) < 1e-6
