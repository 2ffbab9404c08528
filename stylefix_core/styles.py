"""Which style each image gets, and which bundle holds that style's models.

A job can serve many styles. Each image's style comes, in this order, from

1. its shard metadata: the ``style`` field of ``KEY.json`` in a tar shard, of
   the sidecar ``.json`` of a plain file, or of a Parquet shard's ``metadata``
   or ``style`` column;
2. the first style rule whose pattern matches its key (``fnmatch`` syntax,
   case-sensitive; ``*`` also matches ``/``, so ``banners/*`` covers every
   key below ``banners/`` and ``promo-*`` is a prefix);
3. the job's default style, the style named in the default bundle's manifest.

A style nobody named a bundle for is a :class:`RouteError`: one error row for
that image, never a failed job. Pure functions over keys and metadata; no
models, no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stylefix_core.errors import StyleFixError
from stylefix_core.records import DecodedImage, RoutedImage

STYLE_FIELD = "style"


class RouteError(StyleFixError):
    """An image asks for a style the job has no bundle for."""

    stage = "route"


def parse_pairs(text: str, option: str) -> tuple[tuple[str, str], ...]:
    """``'a=x,b=y'`` -> ``(("a", "x"), ("b", "y"))``, in the order given.

    Each item splits at its first ``=``, so a right-hand URL may hold ``=``
    (query strings); items are separated by commas. Raises ValueError naming
    ``option`` for an item without a name or a value.
    """
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise ValueError(
                f"{option}: expected NAME=VALUE items separated by commas, got {item!r}"
            )
        pairs.append((left.strip(), right.strip()))
    return tuple(pairs)


@dataclass(frozen=True)
class StyleTable:
    """Style names to bundle URLs, the key rules, and the default style.

    ``bundles`` maps every servable style to its bundle URL (``""`` is the
    bundle shipped with the package, resolved on the worker that loads it).
    ``rules`` are ``(pattern, style)`` pairs tried in order.
    """

    default: str
    bundles: Mapping[str, str]
    rules: Sequence[tuple[str, str]] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        named = [self.default, *(style for _, style in self.rules)]
        unknown = sorted({style for style in named if style not in self.bundles})
        if unknown:
            raise ValueError(
                f"style(s) {', '.join(unknown)} have no bundle; known styles: {self.known()}"
            )

    def known(self) -> str:
        return ", ".join(sorted(self.bundles))

    def choose(self, key: str, metadata: Mapping[str, Any]) -> str:
        """The style name for one image: metadata, else the first matching rule, else default."""
        given = metadata.get(STYLE_FIELD)
        if given is not None and given != "":
            if not isinstance(given, str):
                raise RouteError(
                    f"metadata field {STYLE_FIELD!r} must be a style name (a string), "
                    f"got {type(given).__name__} {given!r}"
                )
            return given
        for pattern, style in self.rules:
            if fnmatch.fnmatchcase(key, pattern):
                return style
        return self.default

    def route(self, image: DecodedImage) -> RoutedImage:
        """The image with its style and that style's bundle URL; RouteError if unknown."""
        member = image.member
        style = self.choose(member.key, member.metadata)
        if style not in self.bundles:
            raise RouteError(
                f"style {style!r} has no bundle in this job; known styles: {self.known()} "
                "(add it with --bundles NAME=URL)"
            )
        return RoutedImage(image=image, style=style, bundle=self.bundles[style])


def build_style_table(
    default_style: str,
    default_bundle: str,
    bundles: Mapping[str, str],
    rules: Sequence[tuple[str, str]],
) -> StyleTable:
    """The job's table: the default bundle under its own style name, plus ``bundles``.

    Naming the default style again with a different bundle is ambiguous and
    refused: ``--bundle`` is the way to replace the default style's bundle.
    """
    other = bundles.get(default_style)
    if other is not None and other != default_bundle:
        raise ValueError(
            f"--bundles names {default_style!r}, the style of the default bundle; "
            "give that style's bundle with --bundle instead"
        )
    return StyleTable(
        default=default_style,
        bundles={**bundles, default_style: default_bundle},
        rules=tuple(rules),
    )
