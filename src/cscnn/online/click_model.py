"""The synthetic world's ground truth as a function: the true click probability of any user, ad, slot and device.

The generator writes only the answers it is asked for (truth/items.parquet, truth/users.parquet, the probability
of every logged row); playing the users online needs the whole click model for pages nobody logged. The world
is re-drawn in memory from its own `world.json` config and seed (the generator is deterministic), and checked
against the truth files on disk, so a world from another generator is refused instead of simulated wrongly.

Only synthetic worlds (`cscnn data synth`) have this: an imported Amazon world's users cannot be played.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.config import WorldConfig
from cscnn.data.io import open_world
from cscnn.data.synth.params import (
    DEVICE_EFFECT,
    DEVICE_P,
    DEVICES,
    PROBABILITY_DIR,
    TRUTH_DIR,
    Catalogue,
    Population,
)

# The generator's own draws, in its order. Private on purpose there (its module is hashed into the generator
# version, which a change would bump and so regenerate every world); read-only use here.
from cscnn.data.synth.world import WORLD_FILE, _draw_items, _draw_truth, _draw_users
from cscnn.errors import CSCNNError


class NoTruthError(CSCNNError):
    """The folder is not a synthetic world whose click model can be re-drawn (or it was changed)."""


@dataclass(frozen=True)
class WorldTruth:
    """The click model of one synthetic world: users (with activity and affinity), the catalogue (with each
    item's visual score, item effect and first day) and the logit's weights."""

    root: Path
    cfg: WorldConfig
    population: Population
    catalogue: Catalogue
    start_day: pd.Timestamp

    @classmethod
    def load(cls, root: Path) -> WorldTruth:
        root = Path(root)
        marker = root / WORLD_FILE
        if not marker.is_file():
            raise NoTruthError(f"{root}: no {WORLD_FILE}; only a synthetic world (`cscnn data synth`) can be simulated")
        summary = json.loads(marker.read_text())
        recorded = summary.get("config")
        if not isinstance(recorded, dict) or summary.get("generator") != "cscnn.data.synth":
            raise NoTruthError(
                f"{root}: {WORLD_FILE} is not a synthetic world's (an imported world has no click model)"
            )
        known = {f.name for f in dataclasses.fields(WorldConfig)}
        cfg = WorldConfig(**{k: v for k, v in recorded.items() if k in known})
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)]
        truth = _draw_truth(cfg, streams[0])
        population = _draw_users(cfg, truth, streams[1])
        catalogue = _draw_items(cfg, truth, streams[2])
        _check_against_disk(root, population, catalogue)
        truth = cls(root, cfg, population, catalogue, pd.Timestamp(cfg.start_day, tz="UTC"))
        truth._check_probabilities()
        return truth

    def _check_probabilities(self, rows: int = 2000) -> None:
        """The whole click model (affinities, weights, position and device effects), not only the items: the
        re-drawn probabilities of logged rows must be the ones the generator wrote next to them."""
        world, folder = open_world(self.root), self.root / TRUTH_DIR / PROBABILITY_DIR
        day = next((d for d in world.days if (folder / f"{d}.parquet").is_file()), None)
        if day is None:
            raise NoTruthError(f"{self.root}: no {TRUTH_DIR}/{PROBABILITY_DIR}/<day>.parquet to check the click model")
        logged = world.impressions([day]).head(rows)
        written = pd.read_parquet(folder / f"{day}.parquet")["probability"]
        user = pd.Index(self.user_ids).get_indexer(logged["user_id"])
        item = pd.Index(self.item_ids).get_indexer(logged["item_id"])
        device = pd.Index(DEVICE_NAMES).get_indexer(logged["device"])
        if (user < 0).any() or (item < 0).any() or (device < 0).any():
            raise NoTruthError(f"{self.root}: day {day} names users, items or devices the re-drawn world lacks")
        redrawn = self.probability(user, item, logged["position"].to_numpy(), device)
        if not np.allclose(redrawn, written.to_numpy()[: len(logged)], rtol=0, atol=1e-9):
            raise NoTruthError(
                f"{self.root}: the re-drawn click model does not give the probabilities written for {day}: made by "
                "another generator version, or edited; regenerate it with `cscnn data synth --force`"
            )

    # --- lookups ---------------------------------------------------------------------------------------------

    def day_index(self, day: str) -> int:
        index = (pd.Timestamp(day, tz="UTC") - self.start_day).days
        if not 0 <= index < self.cfg.n_days:
            last = (self.start_day + pd.Timedelta(days=self.cfg.n_days - 1)).date()
            raise CSCNNError(f"day {day} is outside this world ({self.start_day.date()}..{last})")
        return index

    def available(self, day: int) -> np.ndarray:
        """Catalogue rows on sale on day index `day` (the day's new ads included)."""
        return np.flatnonzero(self.catalogue.first_day <= day)

    @property
    def user_ids(self) -> np.ndarray:
        return self.population.users["user_id"].to_numpy()

    @property
    def item_ids(self) -> np.ndarray:
        return self.catalogue.items["item_id"].to_numpy()

    def probability(self, user: np.ndarray, item: np.ndarray, position: np.ndarray, device: np.ndarray) -> np.ndarray:
        """The true click probability (the generator's logit, `cscnn.data.synth.params.LOGIT_FORMULA`) of user
        rows x catalogue rows at 1-based page `position` on device indices (all broadcast together)."""
        cfg, cat = self.cfg, self.catalogue
        logit = (
            cfg.base_logit
            + cfg.affinity_weight * self.population.affinity[user, cat.category_index[item]]
            + cfg.visual_weight * cat.visual[item]
            - cfg.position_weight * (np.asarray(position) - 1)
            + np.asarray(DEVICE_EFFECT)[device]
            + cat.item_effect[item]
        )
        return 1.0 / (1.0 + np.exp(-logit))


DEVICE_NAMES = np.asarray(DEVICES, dtype=object)
DEVICE_SHARES = np.asarray(DEVICE_P)


def _check_against_disk(root: Path, population: Population, catalogue: Catalogue) -> None:
    """The re-drawn world must be the one on disk: same users, items, visual scores and item effects."""
    world = open_world(root)
    truth_items = root / TRUTH_DIR / "items.parquet"
    problems = []
    if world.users["user_id"].tolist() != population.users["user_id"].tolist():
        problems.append("users differ")
    if world.items["item_id"].tolist() != catalogue.items["item_id"].tolist():
        problems.append("catalogue differs")
    elif truth_items.is_file():
        stored = pd.read_parquet(truth_items, columns=["visual_score", "item_effect"])
        if not (
            np.allclose(stored["visual_score"], catalogue.visual)
            and np.allclose(stored["item_effect"], catalogue.item_effect)
        ):
            problems.append("visual scores or item effects differ from truth/items.parquet")
    else:
        problems.append(f"no {TRUTH_DIR}/items.parquet")
    if problems:
        raise NoTruthError(
            f"{root}: re-drawing the world from its {WORLD_FILE} does not give the world on disk "
            f"({'; '.join(problems)}): made by another generator version, or edited; regenerate it with "
            "`cscnn data synth --force`"
        )
