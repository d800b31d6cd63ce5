"""The safety net under the model: red-flag phrases found in what the patient said."""

import re
from collections.abc import Iterable

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def _normalized(text: str) -> str:
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


class RedFlagMatcher:
    """Whole-word, case-insensitive; spacing and curly apostrophes do not hide a phrase."""

    def __init__(self, phrases: Iterable[str]) -> None:
        wanted = sorted({_normalized(p) for p in phrases if p.strip()}, key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in wanted) + r")(?!\w)")
            if wanted
            else None
        )

    def find(self, text: str) -> list[str]:
        """The phrases found in `text`, each once, in the order they first appear."""
        if self._pattern is None:
            return []
        return list(dict.fromkeys(self._pattern.findall(_normalized(text))))
