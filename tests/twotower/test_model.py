"""Tests of the towers and the in-batch softmax loss."""

from __future__ import annotations

import math

import torch

from gfm.twotower.features import UserInputs
from gfm.twotower.model import ItemTower, UserTower, in_batch_softmax_loss


def test_user_tower_outputs_unit_vectors():
    torch.manual_seed(0)
    tower = UserTower(num_history_types=2, history_dim=4, categorical_sizes=[5, 3],
                      categorical_dim=3, num_numeric=1, tower_dims=[8, 6])
    inputs = UserInputs(torch.randn(7, 2, 4), torch.ones(7, 2),
                        torch.randint(0, 3, (7, 2)), torch.randn(7, 1))

    out = tower(inputs)

    assert out.shape == (7, 6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(7))
    assert tower.init_args["tower_dims"] == [8, 6]


def test_item_tower_ignores_padding_tokens():
    torch.manual_seed(0)
    tower = ItemTower(dense_dim=4, field_sizes=[6], categorical_dim=3, tower_dims=[5])
    dense = torch.randn(1, 4).repeat(2, 1)
    tokens = torch.tensor([[2, 0, 0], [2, 2, 0]])

    out = tower(dense, [tokens])

    assert out.shape == (2, 5)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_loss_matches_cross_entropy_without_duplicates():
    users = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    items = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)

    loss = in_batch_softmax_loss(users, items, torch.arange(4), None, temperature=0.5)

    expected = torch.nn.functional.cross_entropy(users @ items.T / 0.5, torch.arange(4))
    torch.testing.assert_close(loss, expected)


def test_loss_masks_repeated_item():
    users = torch.nn.functional.normalize(torch.randn(3, 3), dim=1)
    items = torch.nn.functional.normalize(torch.randn(3, 3), dim=1)
    items[2] = items[0]
    rows = torch.tensor([7, 8, 7])

    loss = in_batch_softmax_loss(users, items, rows, None, temperature=1.0)

    logits = users @ items.T
    expected = torch.stack([
        -torch.log_softmax(logits[0, [0, 1]], 0)[0],
        -torch.log_softmax(logits[1], 0)[1],
        -torch.log_softmax(logits[2, [1, 2]], 0)[1],
    ]).mean()
    torch.testing.assert_close(loss, expected)


def test_logq_correction_subtracts_log_probability():
    users = torch.nn.functional.normalize(torch.randn(3, 3), dim=1)
    items = torch.nn.functional.normalize(torch.randn(3, 3), dim=1)
    log_q = torch.log(torch.tensor([0.7, 0.2, 0.1]))

    loss = in_batch_softmax_loss(users, items, torch.arange(3), log_q, temperature=1.0)

    expected = torch.nn.functional.cross_entropy(users @ items.T - log_q, torch.arange(3))
    torch.testing.assert_close(loss, expected)
    assert not math.isclose(
        loss.item(), in_batch_softmax_loss(users, items, torch.arange(3), None, 1.0).item())
