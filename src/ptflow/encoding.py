"""Step 1, data, for typed columns: what a table's feature columns become as model inputs.

An `Encoding` is fitted on the training rows only and saved with the model
(`encoding.json`, plain JSON), so `evaluate`, `predict` and `load_run` apply it to raw files:

- a numeric or true/false column stays a number; a missing value becomes the training
  rows' median, and a column that had missing training values gets a 0/1 "was missing"
  input beside it (fastai's FillMissing does the same);
- a categorical column becomes an integer code: UNSEEN (0) for a value the training rows
  never had, MISSING (1) for a missing value, then the training rows' values in sorted
  order. The model turns codes into one-hot vectors or embeddings (`ptflow.models`).

The encoded matrix holds, in order: the numeric columns, their "was missing" inputs, and
the categorical codes (as float32, exact below 2**24).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from ptflow.errors import WorkflowError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MISSING",
    "UNSEEN",
    "CategoricalInput",
    "EncodeCounts",
    "Encoding",
    "NumericInput",
    "Vocabulary",
    "fit_encoding",
]

# A code is a float32 in the input matrix: exact for whole numbers up to 2**24.
MAX_CATEGORIES = 2**24 - 2
UNSEEN = 0  # a value the training rows did not have: its one-hot vector and embedding are 0
MISSING = 1  # a missing value, where the training rows had some (else it counts as unseen)
_FIRST_LEVEL = 2
# Encoding works through a table this many rows at a time: its temporaries stay small.
ENCODE_BLOCK_ROWS = 65_536

FeatureKind = Literal["numeric", "boolean", "categorical"]


class Vocabulary:
    """The distinct text values of a column, numbered as first read: a block's cells as codes.

    The numbers depend on the file's order; `Encoding` maps them to its own codes, which
    do not.
    """

    def __init__(self, name: str = "", most: int | None = None) -> None:
        self.name = name  # the column's, for the error when there are too many values
        # With `most`, values beyond the first `most` are not kept: each becomes the number
        # `most` (one past the last kept), which no encoding has as a level, and is counted
        # in `overflow`. Without, more than MAX_CATEGORIES values is an error.
        self.most = most
        self.overflow = 0
        self.values: list[str] = []
        self._numbers: dict[str, int] = {}
        self._known: pd.Index | None = None  # `values` as an index, while no value is added

    def lookup(self, number_of: Mapping[str, float], other: float) -> NDArray[np.float32]:
        """What each vocabulary number maps to (`number_of` its text, else `other`), with
        one entry more, `other`, for the number one past the last (a value left out)."""
        return np.array([*(number_of.get(v, other) for v in self.values), other], np.float32)

    @property
    def full(self) -> bool:
        """Whether values were left out for want of room (`most`)."""
        return self.overflow > 0

    def codes(self, column: pd.Series) -> NDArray[np.float32]:
        """The column's values as their numbers in this vocabulary (new ones added), NaN
        where missing."""
        import pandas as pd

        local, uniques = pd.factorize(column, use_na_sentinel=True)
        if pd.api.types.infer_dtype(uniques, skipna=False) != "string":  # numbers, say
            uniques = pd.Index([text_of(value) for value in uniques], dtype=object)
        # Known values looked up at once (a block's values are mostly known), new ones added.
        if self._known is None:
            self._known = pd.Index(self.values, dtype=object)
        found = self._known.get_indexer(uniques)
        for i in np.flatnonzero(found < 0):
            found[i] = self._number(uniques[i])
        numbers = found.astype(np.float32)
        out = np.full(len(local), np.nan, dtype=np.float32)
        present = local >= 0
        out[present] = numbers[local[present]]
        if self.most is not None and (left_out := numbers == self.most).any():
            self.overflow += int(np.count_nonzero(left_out[local[present]]))
        return out

    def _number(self, text: str) -> int:
        number = self._numbers.get(text)
        if number is None:
            if self.most is not None and len(self.values) >= self.most:
                return self.most
            if len(self.values) >= MAX_CATEGORIES:  # float32 holds whole numbers to 2**24
                raise WorkflowError(
                    f"categorical column {self.name!r} has more than {MAX_CATEGORIES:,} "
                    f"distinct values, more than a category code can hold; leave it out "
                    f"with --ignore {self.name}."
                )
            number = self._numbers[text] = len(self.values)
            self.values.append(text)
            self._known = None
        return number


def text_of(value: object) -> str:
    """A cell as text, the same from a CSV file and from Parquet: 3.0 (float64) reads "3"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class NumericInput:
    """A numeric or true/false column: missing values become `fill`, the training median."""

    name: str
    kind: Literal["numeric", "boolean"]
    fill: float
    indicator: bool  # the training rows had missing values: a "was missing" input follows
    missing: int = 0  # missing values in the training rows


@dataclass(frozen=True)
class CategoricalInput:
    """A categorical column: its training rows' values, sorted; code = 2 + their index."""

    name: str
    levels: tuple[str, ...]
    missing: int = 0  # missing values in the training rows; with any, MISSING is a level

    @property
    def size(self) -> int:
        """Codes in use: UNSEEN, MISSING and the levels."""
        return len(self.levels) + _FIRST_LEVEL


FeatureInput = NumericInput | CategoricalInput
InputKind = Literal["number", "was missing", "code"]


@dataclass
class EncodeCounts:
    """What encoding a table's rows did with their values, by column: to tell the user."""

    imputed: dict[str, int] = field(default_factory=dict)  # missing numbers filled in
    unseen: dict[str, int] = field(default_factory=dict)  # categories training never had
    missing: dict[str, int] = field(default_factory=dict)  # missing categories

    def add(self, other: EncodeCounts) -> None:
        for kind in ("imputed", "unseen", "missing"):
            mine, theirs = getattr(self, kind), getattr(other, kind)
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count

    def in_order(self, names: Sequence[str]) -> EncodeCounts:
        """The same counts, each kind's columns in the order of `names`."""

        def ordered(counts: dict[str, int]) -> dict[str, int]:
            return {name: counts[name] for name in names if name in counts}

        return EncodeCounts(ordered(self.imputed), ordered(self.unseen), ordered(self.missing))

    def describe(self) -> list[str]:
        """One sentence per kind of change, or none."""
        lines = []
        if self.imputed:
            shown = ", ".join(f"{name} {count}" for name, count in self.imputed.items())
            lines.append(f"imputed missing values with the training rows' median: {shown}")
        if self.unseen:
            shown = ", ".join(f"{name} {count}" for name, count in self.unseen.items())
            lines.append(f"categories not seen in training (encoded as unseen): {shown}")
        if self.missing:
            shown = ", ".join(f"{name} {count}" for name, count in self.missing.items())
            lines.append(
                f"missing categories (encoded as missing, or as unseen where the training rows "
                f"had none missing): {shown}"
            )
        return lines


@dataclass(frozen=True)
class Encoding:
    """How a model's feature columns become its inputs; fitted on training rows only."""

    inputs: tuple[FeatureInput, ...]  # one per feature column, in the features' order
    classes: tuple[str, ...] = ()  # a class target's values: class k is the model's k-th

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.inputs)

    @property
    def numeric(self) -> tuple[NumericInput, ...]:
        return tuple(c for c in self.inputs if isinstance(c, NumericInput))

    @property
    def categorical(self) -> tuple[CategoricalInput, ...]:
        return tuple(c for c in self.inputs if isinstance(c, CategoricalInput))

    @property
    def dense_width(self) -> int:
        """The encoded columns before the categorical codes: numbers and indicators."""
        return len(self.numeric) + sum(column.indicator for column in self.numeric)

    @property
    def width(self) -> int:
        return self.dense_width + len(self.categorical)

    @property
    def layout(self) -> tuple[tuple[InputKind, FeatureInput], ...]:
        """What each encoded column is, in order: the numbers, their was-missing inputs,
        the category codes; with the feature it comes from."""
        numeric = self.numeric
        return (
            *(("number", c) for c in numeric),
            *(("was missing", c) for c in numeric if c.indicator),
            *(("code", c) for c in self.categorical),
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        """The encoded matrix's columns, named."""
        return tuple(
            f"{c.name} (was missing)" if kind == "was missing" else c.name
            for kind, c in self.layout
        )

    def input_columns(self) -> dict[str, list[int]]:
        """Which encoded columns each feature became: a number and its was-missing input."""
        became: dict[str, list[int]] = {name: [] for name in self.features}
        for i, (_, column) in enumerate(self.layout):
            became[column.name].append(i)
        return became

    @property
    def scaled(self) -> tuple[bool, ...]:
        """Which encoded columns are standardised: the numbers; not 0/1 values nor codes."""
        return tuple(
            kind == "number" and isinstance(c, NumericInput) and c.kind == "numeric"
            for kind, c in self.layout
        )

    def encode(
        self,
        raw: NDArray[np.float32],
        vocabularies: Mapping[str, Vocabulary],
        *,
        in_place: bool = False,
    ) -> tuple[NDArray[np.float32], EncodeCounts]:
        """Encode raw feature columns (rows, features): numbers with NaN where missing, a
        categorical column as its `vocabularies` numbers. Returns the inputs and the counts.

        The inputs are `raw` itself when there is nothing to change (numbers alone, none
        missing), or, with `in_place`, when they are as many columns as `raw` (no was-missing
        input): then `raw` is overwritten, ENCODE_BLOCK_ROWS rows at a time, so encoding a
        table needs no second copy of it.
        """
        numbers_only = not self.categorical and self.dense_width == len(self.inputs)
        if numbers_only and not np.isnan(raw).any():  # nothing to fill in: the inputs as read
            return raw, EncodeCounts()
        position = {name: i for i, name in enumerate(self.features)}
        lookups = {c.name: _lookup(c, vocabularies[c.name]) for c in self.categorical}
        reuse = in_place and self.width == raw.shape[1] and raw.flags.writeable
        out = raw if reuse else np.empty((len(raw), self.width), dtype=np.float32)
        counts = EncodeCounts()
        for start in range(0, len(raw), ENCODE_BLOCK_ROWS):
            block = slice(start, start + ENCODE_BLOCK_ROWS)
            out[block] = self._encode_block(raw[block], position, lookups, counts)
        return out, counts.in_order(self.features)

    def _encode_block(
        self,
        raw: NDArray[np.float32],
        position: Mapping[str, int],
        lookups: Mapping[str, NDArray[np.float32]],
        counts: EncodeCounts,
    ) -> NDArray[np.float32]:
        out = np.empty((len(raw), self.width), dtype=np.float32)
        for i, (kind, column) in enumerate(self.layout):
            values = raw[:, position[column.name]]
            missing = np.isnan(values)
            count = int(missing.sum())
            if kind == "was missing":
                out[:, i] = missing
            elif isinstance(column, NumericInput):
                out[:, i] = np.where(missing, np.float32(column.fill), values)
                if count:
                    counts.imputed[column.name] = counts.imputed.get(column.name, 0) + count
            else:
                out[:, i] = codes = _codes(column, lookups[column.name], values)
                if unseen := int(np.count_nonzero(codes[~missing] == UNSEEN)):
                    counts.unseen[column.name] = counts.unseen.get(column.name, 0) + unseen
                if count:
                    counts.missing[column.name] = counts.missing.get(column.name, 0) + count
        return out

    def to_dict(self) -> dict[str, Any]:
        classes = {"classes": list(self.classes)} if self.classes else {}
        return {
            **classes,
            "inputs": [
                {"name": c.name, "kind": c.kind, "fill": c.fill, "indicator": c.indicator,
                 "missing": c.missing}
                if isinstance(c, NumericInput)
                else {"name": c.name, "kind": "categorical", "levels": list(c.levels),
                      "missing": c.missing}
                for c in self.inputs
            ]
        }  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Encoding:
        """The Encoding `to_dict` gave; a damaged one is a `WorkflowError`."""
        try:
            inputs: list[FeatureInput] = []
            for item in values["inputs"]:
                if item["kind"] == "categorical":
                    levels = tuple(str(level) for level in item["levels"])
                    inputs.append(CategoricalInput(str(item["name"]), levels, int(item["missing"])))
                elif item["kind"] in ("numeric", "boolean"):
                    fill = float(item["fill"])
                    if not math.isfinite(fill):
                        raise ValueError(f"fill {fill}")
                    inputs.append(
                        NumericInput(
                            str(item["name"]), item["kind"], fill, bool(item["indicator"]),
                            int(item["missing"]),
                        )
                    )  # fmt: skip
                else:
                    raise ValueError(f"kind {item['kind']!r}")
            classes = tuple(str(name) for name in values.get("classes", ()))
        except (KeyError, TypeError, ValueError) as error:
            raise WorkflowError(
                f"the saved encoding of the columns is damaged ({error}); train the run again."
            ) from None
        return cls(tuple(inputs), classes)


def _lookup(column: CategoricalInput, vocabulary: Vocabulary) -> NDArray[np.float32]:
    """Each vocabulary number's code; the last entry, for the number one past the
    vocabulary's (a value it had no room for), is UNSEEN."""
    return vocabulary.lookup(
        {level: _FIRST_LEVEL + i for i, level in enumerate(column.levels)}, UNSEEN
    )


def _codes(
    column: CategoricalInput, lookup: NDArray[np.float32], numbers: NDArray[np.float32]
) -> NDArray[np.float32]:
    """A column's vocabulary numbers as the encoding's codes."""
    missing = np.isnan(numbers)
    codes = np.full(len(numbers), MISSING if column.missing else UNSEEN, dtype=np.float32)
    codes[~missing] = lookup[numbers[~missing].astype(np.int64)]
    return codes


def fit_encoding(
    raw: NDArray[np.float32],
    features: Sequence[str],
    kinds: Mapping[str, FeatureKind],
    vocabularies: Mapping[str, Vocabulary],
) -> Encoding:
    """Fit the encoding of feature columns on the training rows `raw` (rows, features)."""
    inputs: list[FeatureInput] = []
    for i, name in enumerate(features):
        values = raw[:, i]
        missing = np.isnan(values)
        count = int(missing.sum())
        kind = kinds[name]
        if kind == "categorical":
            vocabulary = vocabularies[name].values
            present = np.unique(values[~missing].astype(np.int64))
            levels = tuple(sorted(vocabulary[n] for n in present if n < len(vocabulary)))
            inputs.append(CategoricalInput(name, levels, count))
        else:
            # The median of what is there: robust to outliers, and a value the column has.
            present = values[~missing].astype(np.float64)
            fill = float(np.median(present)) if len(present) else 0.0
            inputs.append(NumericInput(name, kind, fill, count > 0, count))
    return Encoding(tuple(inputs))
