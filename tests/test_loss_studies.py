"""The studies of the losses and penalties: experiment=poisson (KL against Frobenius under photon noise, each at
the d it chooses from the counts) and experiment=sparsity (L1 sweeps, Hoyer sparsity against error)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.poisson import count_split, photon_noise, results_table
from experiments.sparsity import alive, hoyer


def test_photon_noise_is_poisson_counts_scaled_back_and_the_split_gives_two_halves_that_add_up():
    A = np.full((200, 300), 0.5)
    counts, noisy = photon_noise(A, 8.0, seed=0)
    assert np.array_equal(noisy * 8.0, counts) and np.array_equal(counts, np.round(counts))
    assert counts.mean() == pytest.approx(4.0, rel=0.02) and counts.var() == pytest.approx(4.0, rel=0.05)
    first, second = count_split(counts, seed=1)
    assert np.array_equal(first + second, counts) and (first >= 0).all() and (second >= 0).all()
    # Binomial thinning of Poisson(4) counts: two independent Poisson(2) halves (mean = variance, uncorrelated)
    for half in (first, second):
        assert half.mean() == pytest.approx(2.0, rel=0.03) and half.var() == pytest.approx(2.0, rel=0.06)
    assert abs(np.corrcoef(first.ravel(), second.ravel())[0, 1]) < 0.02


def test_hoyer_sparsity_is_0_for_a_flat_vector_1_for_one_entry_and_scale_free():
    X = np.array([[1.0, 0.0, 3.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    np.testing.assert_allclose(hoyer(X, 0), [0.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(hoyer(7 * X, 0), hoyer(X, 0))
    assert hoyer(np.zeros((4, 1)), 0)[0] == 0.0
    W, H = np.array([[1.0, 1e-12], [2.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 0.0]])
    assert alive(W, H).tolist() == [True, False]


def test_the_poisson_table_has_a_row_per_photon_level():
    results = {
        loss: {1.0: {"d": 8, "psnr": 20.0, "oracle_d": 16, "oracle": 21.0}, 4.0: {"d": 16, "psnr": 24.0, "oracle_d": 16,
               "oracle": 24.0}} for loss in ("kl", "frobenius")
    }  # fmt: skip
    table = results_table(results, {1.0: 5.0, 4.0: 11.0})
    assert table.splitlines()[2] == "| 1 | 5.00 | 8 | 20.00 | 16 | 21.00 | 8 | 20.00 | 16 | 21.00 |"
    assert len(table.splitlines()) == 4


@pytest.mark.slow  # the study from the command line, small
def test_the_poisson_study_chooses_each_losss_d_from_the_counts_and_logs_the_oracle_beside_it(run_study, punks_sheet):
    run = run_study(
        "experiment=poisson",
        "data.n_images=40",
        "poisson.ranks=[2,4]",
        "poisson.photons=[2,32]",
        "solver.max_iter=20",
        f"data.path={punks_sheet}",
    )
    m = run.metrics
    for loss in ("kl", "frobenius"):
        for level in ("2", "32"):
            tag = f"{loss}.photons_{level}"
            chosen = int(m[f"d_chosen.{tag}"])
            heldout = {d: m[f"heldout_squared_error.{tag}.d_{d}"] for d in (2, 4)}
            assert chosen == min(heldout, key=heldout.get)  # chosen from the held-out counts, not the clean images
            assert m[f"psnr.{tag}"] == m[f"psnr_at_d.{tag}.d_{chosen}"]
            assert m[f"oracle_psnr.{tag}"] == max(m[f"psnr_at_d.{tag}.d_{d}"] for d in (2, 4))
    assert m["psnr_noisy.photons_2"] < m["psnr_noisy.photons_32"]
    assert {"figures/psnr_against_photons.png", "tables/poisson.md"} <= run.paths()


@pytest.mark.slow
def test_the_sparsity_study_logs_every_sweep_and_its_figures(run_study, punks_sheet):
    run = run_study(
        "experiment=sparsity", "data.n_images=40", "rank=6", "solver.max_iter=20", "sparsity.alphas=[0.001]",
        f"data.path={punks_sheet}",
    )  # fmt: skip
    m = run.metrics
    for name in ("none", "H_0.001", "W_0.001", "both_0.001"):
        assert 0 < m[f"relative_error.{name}"] < 1 and 0 <= m[f"hoyer_W.{name}"] <= 1
    assert {"figures/sparsity_against_error.png", "figures/basis_side_by_side.png", "tables/sparsity.md"} <= run.paths()
