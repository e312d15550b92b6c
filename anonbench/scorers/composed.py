"""A protocol composed of scorers over the identity split: the run flow that celeba and
landmark-attack share (DESIGN.md, "Evaluation layer").

A subclass declares its name, metrics and options and builds its scorers (`scorers`); this
class does the rest, once per run and then per method:

- prepare: the identity split (anonbench.splits), the test originals analysed and their
  reference boxes frozen, the scorers built, ONE real pass over the union of their needs,
  each scorer prepared on it. A scorer that can score only some test images (`kept`: keys,
  e.g. the landmark attack's test images with real landmarks) narrows what every method
  anonymizes to those;
- records: the test records, plus the train identities when a scorer `needs_train` (an
  adaptive attacker, a learned reversal);
- evaluate: ONE output pass over the method's store, every scorer's results as rows, the
  per-item values as score CSVs (anonbench.scorers.tables) and, where `save_artifacts`, a few
  example outputs and the list of missed faces (anonbench.examples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from anonbench.api import Anonymizer, Protocol, RunContext
from anonbench.data.records import ImageRecord
from anonbench.scorers.base import Needs, Pass, Scorer
from anonbench.splits import Split, analyse_test, load_split


@dataclass
class Prepared:
    """What prepare leaves for every method: the split, the test records every method
    anonymizes, the composed scorers, their union of needs, the real pass and the shared
    feature extractors (anonbench.scorers.passes.FeatureBank or None)."""

    split: Split
    test: list[ImageRecord]
    scorers: list[Scorer]
    needs: Needs
    real: Pass
    features: Any

    @property
    def needs_train(self) -> bool:
        """Whether a scorer needs the methods' outputs of the train identities too."""
        return any(getattr(s, "needs_train", False) for s in self.scorers)


class IdentityProtocol(Protocol):
    """A protocol on identity-labelled data (celeba:, folders:) whose metrics all come from
    its scorers. Subclasses implement `scorers`; `prepared` may record run.json details."""

    datasets = ("celeba", "folders")
    save_artifacts: ClassVar[bool] = False  # example outputs and missed faces per method
    warn_unreadable: ClassVar[bool] = True  # a warning line per unreadable test original

    def __init__(self) -> None:
        self._state: Prepared | None = None

    def scorers(self, ctx: RunContext, split: Split) -> list[Scorer]:
        """The scorers the options ask for (built before any pass runs)."""
        raise NotImplementedError

    def prepared(self, st: Prepared, ctx: RunContext) -> None:
        """Called once the scorers are prepared (e.g. to record a fitted attacker's details
        in ctx.extra). Default: nothing."""

    def prepare(self, ctx: RunContext) -> None:
        self._prepare(ctx)

    def _prepare(self, ctx: RunContext) -> Prepared:
        if self._state is not None:
            return self._state
        from anonbench.scorers.passes import FeatureBank, frozen_boxes, real_pass

        split = load_split(ctx)
        # reference boxes frozen before any train image is analysed
        test = analyse_test(ctx, split, warn=self.warn_unreadable)
        scorers = self.scorers(ctx, split)
        needs = Needs.union(s.needs() for s in scorers)
        features = FeatureBank(ctx) if needs.features else None
        boxes = frozen_boxes(ctx, test)
        real = real_pass(ctx, test, needs, boxes, f"{self.name} real test images", features)
        for s in scorers:
            s.prepare(real, split, ctx)
        kept = [set(k) for s in scorers if (k := getattr(s, "kept", None)) is not None]
        if kept:
            keys = set.intersection(*kept)
            test = [r for r in test if r.key in keys]
            real = real.subset(keys)
        self._state = Prepared(split, test, scorers, needs, real, features)
        self.prepared(self._state, ctx)
        return self._state

    def records(self, method: Anonymizer, ctx: RunContext) -> list[ImageRecord]:
        st = self._prepare(ctx)
        return st.test + (st.split.train if st.needs_train else [])

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.scorers.passes import output_pass
        from anonbench.scorers.tables import write_per_item

        st = self._prepare(ctx)
        desc = f"{self.name} {method.name}"
        out = output_pass(ctx, st.real, method, store, st.needs, desc, st.features)
        if self.save_artifacts:
            self._artifacts(out, ctx)
        results, items = [], []
        for s in st.scorers:  # per_item right after score: a wrapper rescores its inner one
            results += s.score(out, ctx)
            items += s.per_item()
        ids = dict(zip(out.keys, out.identities, strict=True))
        write_per_item(ctx.out_dir, self.name, method.name, items, ids)
        base = {"dataset": ctx.data.label, "split": "test"}
        return [{**base, **r.to_row()} for r in results]

    def _artifacts(self, out: Pass, ctx: RunContext) -> None:
        """Example outputs (one per identity, a few) and the list of missed faces."""
        from anonbench.examples import pick_examples, save_examples, save_missed

        chosen = set(pick_examples(list(zip(out.keys, out.identities, strict=True))))
        examples = [(r.key, r.identity, out.load(r.key)) for r in out.records if r.key in chosen]
        save_examples(ctx.out_dir, self.name, out.label, examples)
        save_missed(ctx.out_dir, self.name, out.label, out.store.missed(out.records))
