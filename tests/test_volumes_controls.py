"""Shape-matched controls and ROAD imputation on volumes (issue #15), and the 2-D results
unchanged: the N-D code against frozen copies of the 2-D code (``tests/legacy_2d.py``)."""
from __future__ import annotations

import torch

from xaibench_plugins.metrics._regions import brain_masks, random_placements
from xaibench.kit.perturb import Filler, road_impute

from . import legacy_2d


def _blob_masks(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """N irregular masks (a random box with random holes), and brains (a centred ball)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(n, *shape, dtype=torch.bool)
    for i in range(n):
        sl = tuple(slice(int(a), int(a) + int(b)) for a, b in
                   zip(torch.randint(2, 5, (len(shape),), generator=g), torch.randint(2, 5, (len(shape),), generator=g)))
        m[(i, *sl)] = True
    return m & (torch.rand(m.shape, generator=g) > 0.3)


def _ball(n: int, shape: tuple[int, ...]) -> torch.Tensor:
    grids = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) - (s - 1) / 2 for s in shape), indexing="ij")
    r = sum(gr ** 2 for gr in grids).sqrt()
    return (r < min(shape) * 0.45).expand(n, *shape)


def test_control_3d_keeps_voxel_count_and_lies_in_brain():
    masks, brain = _blob_masks(5, (16, 16, 16), 1), _ball(5, (16, 16, 16))
    out = random_placements(masks, brain, 6, torch.Generator().manual_seed(0))
    assert out.shape == (5, 6, 16, 16, 16)
    counts = out.flatten(2).sum(2)
    assert torch.equal(counts, masks.flatten(1).sum(1).view(-1, 1).expand(-1, 6))
    assert not bool((out & ~brain.unsqueeze(1)).any())
    assert not bool((out == masks.unsqueeze(1)).flatten(2).all(2).any())  # never the tested set itself
    assert len({tuple(o.nonzero().min(0).values.tolist()) for o in out.flatten(0, 1)}) > 5  # placements vary


def test_control_3d_uses_the_48_cube_transforms():
    """A chiral set (three arms of lengths 4, 3, 2 from one corner voxel): each of the 48
    signed axis permutations gives a different orientation; a rotation-only control would
    give 24."""
    m = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    m[0, 0, 0, 0:4] = True
    m[0, 0, 0:3, 0] = True
    m[0, 0:2, 0, 0] = True
    out = random_placements(m, torch.ones(1, 8, 8, 8, dtype=torch.bool), 3000, torch.Generator().manual_seed(0))
    seen = set()
    for o in out[0]:
        idx = o.nonzero()
        seen.add(tuple(map(tuple, (idx - idx.min(0).values).tolist())))
    assert len(seen) == 48


def test_brain_mask_of_volumes():
    x = torch.zeros(2, 1, 4, 4, 4)
    x[0, 0, 1, 1, 1] = 1
    b = brain_masks(x)
    assert b.shape == (2, 4, 4, 4) and int(b[0].sum()) == 1 and bool(b[1].all())
    named = brain_masks(x, {"brain": torch.ones(4, 4, 4)})
    assert named.shape == (2, 4, 4, 4) and bool(named.all())


def _legacy_placements(masks, brain, draws, gen, avoid=None):
    return legacy_2d.random_placements(masks, brain, draws, gen, avoid)


def test_control_2d_bit_identical_to_before():
    for shape, seed in (((24, 24), 3), ((20, 28), 4)):
        masks, brain = _blob_masks(7, shape, seed), _ball(7, shape)
        masks[2] = False  # an empty mask among others
        avoid = _blob_masks(7, shape, seed + 10)
        for av in (None, avoid):
            g_new, g_old = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            for _ in range(3):  # the stream stays in step across calls
                new = random_placements(masks, brain, 5, g_new, av)
                old = _legacy_placements(masks, brain, 5, g_old, av)
                assert torch.equal(new, old)
                assert bool(new.any())
    empty = torch.zeros(2, 8, 8, dtype=torch.bool)
    g_new, g_old = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(random_placements(empty, ~empty, 2, g_new), legacy_2d.random_placements(empty, ~empty, 2, g_old))
    assert torch.equal(torch.rand(3, generator=g_new), torch.rand(3, generator=g_old))


def test_road_2d_bit_identical_to_before():
    g = torch.Generator().manual_seed(5)
    for shape in ((32, 32), (17, 40)):
        x = torch.rand(3, 1, *shape, generator=g)
        removed = torch.rand(3, *shape, generator=g) > 0.6
        assert torch.equal(road_impute(x, removed), legacy_2d.road_impute(x, removed))


def test_road_3d_reproduces_a_linear_ramp_in_a_removed_cube():
    d = torch.arange(16, dtype=torch.float64)
    ramp = (0.2 + 0.01 * d.view(-1, 1, 1) + 0.02 * d.view(1, -1, 1) - 0.015 * d.view(1, 1, -1)).expand(16, 16, 16)
    x = ramp.reshape(1, 1, 16, 16, 16).clone()
    removed = torch.zeros(1, 16, 16, 16, dtype=torch.bool)
    removed[0, 4:11, 3:12, 5:10] = True
    corrupted = torch.where(removed.unsqueeze(1), torch.zeros_like(x), x)
    out = Filler("road", noise=0.0, tol=1e-10, max_iter=2000).apply(corrupted, removed, None)
    assert out.shape == x.shape
    assert float((out - x).abs().max()) < 1e-6
    assert float((corrupted - x).abs().max()) > 0.1  # the hole really was emptied


def test_road_3d_noise_only_inside_the_hole():
    x = torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    removed = torch.zeros(2, 8, 8, 8, dtype=torch.bool)
    removed[:, 2:5, 2:5, 2:5] = True
    out = Filler("road", noise=0.01).apply(x, removed, None, torch.Generator().manual_seed(1))
    assert torch.equal(out[~removed.unsqueeze(1).expand_as(x)], x[~removed.unsqueeze(1).expand_as(x)])
    assert not torch.equal(out, x)
