"""The `filing:` section: how sightings become cases beyond their own kind (one case per problem)."""

from __future__ import annotations

from pydantic import Field, field_validator

from citywatch.cases.queries import RelatedKinds
from citywatch.vision.params import Strict
from citywatch.vision.taxonomy import KINDS


def _default_related_kinds() -> list[list[str]]:
    # A pile beside or in a bin is one problem of the station; a pile that stays is more than litter.
    return [["overflowing_bin", "accumulated_garbage", "exposed_garbage"]]


class FilingConfig(Strict):
    related_kinds: list[list[str]] = Field(
        default_factory=_default_related_kinds,
        description="Groups of kinds that are one problem when their boxes are together at one camera, preset "
        "and zone: filed as one case of the group's first kind seen there, the others kept in its also_seen_kinds. "
        "Order is precedence (first highest). [] turns this off",
    )
    near: float = Field(
        0.25,
        ge=0.0,
        le=2.0,
        description="Boxes of related kinds are together when the smaller, grown by this fraction of its width and "
        "height on each side, touches the other (0: they must overlap)",
    )

    @field_validator("related_kinds")
    @classmethod
    def _known_kinds_once(cls, groups: list[list[str]]) -> list[list[str]]:
        problems = []
        first_group: dict[str, int] = {}
        for number, group in enumerate(groups):
            if len(group) < 2:
                problems.append(f"group {number} {group}: name at least two kinds")
            for kind in group:
                if kind not in KINDS:
                    known = ", ".join(sorted(KINDS))
                    problems.append(f"group {number}: unknown camera kind {kind!r} (known: {known})")
                elif kind in first_group:
                    earlier = first_group[kind]
                    problems.append(f"group {number}: {kind!r} is already in group {earlier}; one group per kind")
                else:
                    first_group[kind] = number
        if problems:
            raise ValueError("; ".join(problems))
        return groups

    def related(self) -> RelatedKinds:
        """The groups as the case filer uses them."""
        return RelatedKinds(tuple(tuple(group) for group in self.related_kinds), near=self.near)
