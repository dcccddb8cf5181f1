"""The expectation suites, generated from the data contract in `cscnn.data.schema`.

`contract_expectations` loops over a TableSpec's columns (existence, nulls, types, allowed values, ranges, the
key); `day_expectations` adds the impression checks the contract cannot express column by column (mean CTR,
every `ts` on the day, known item and user ids, no item shown before its `available_from` day, the category mix
against the previous day); and
`image_expectations` checks that every catalogue image decodes. Thresholds come from `ValidationConfig`.

String and timestamp columns are type-checked value by value (`str`, `Timestamp`), numeric ones by dtype (see
`cscnn.tools.validation.runner` for why).
"""

from __future__ import annotations

import datetime as dt

from cscnn.config import ValidationConfig
from cscnn.data import schema

# dtype names GX compares numeric columns against (string/timestamp columns are checked value by value).
_INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
_FLOAT_TYPES = ["float16", "float32", "float64", *_INT_TYPES[:-1]]
# Derived impressions column: the item's `available_from` where it is later than the day (None: no look-ahead).
LOOK_AHEAD = "item_available_from_later"
_VALUE_TYPES = {"string": ["str"], "timestamp": ["Timestamp"], "int": _INT_TYPES, "float": _FLOAT_TYPES}


def contract_expectations(spec: schema.TableSpec, min_rows: int = 1, max_rows: int | None = None) -> list:
    """The GX expectations that the contract in `spec` implies, one group per column, then the key."""
    import great_expectations.expectations as gxe

    exps: list = [gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows)]
    for col in spec.columns:
        exps += [
            gxe.ExpectColumnToExist(column=col.name),
            gxe.ExpectColumnValuesToNotBeNull(column=col.name),
            gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=_VALUE_TYPES[col.kind]),
        ]
        if col.kind == "string":
            exps.append(gxe.ExpectColumnValueLengthsToBeBetween(column=col.name, min_value=1))
        if col.allowed is not None:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.allowed)))
        if col.min is not None or col.max is not None:
            exps.append(gxe.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min, max_value=col.max))
    if len(spec.key) == 1:
        exps.append(gxe.ExpectColumnValuesToBeUnique(column=spec.key[0]))
    else:
        exps.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(spec.key)))
    return exps


def day_expectations(day: str, cfg: ValidationConfig, expected_mix: dict[str, float] | None) -> list:
    """Impression checks beyond the column contract: CTR, the day, references, category drift."""
    import great_expectations.expectations as gxe

    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    exps = [
        gxe.ExpectColumnMeanToBeBetween(
            column=schema.LABEL, min_value=cfg.min_ctr, max_value=cfg.max_ctr, description="mean CTR of the day"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="ts", min_value=start, max_value=end, description=f"every impression is on {day} (UTC)"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="item_id_in_items", value_set=[True], description=f"item_id is in {schema.ITEMS_FILE}"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="user_id_in_users", value_set=[True], description=f"user_id is in {schema.USERS_FILE}"
        ),
        gxe.ExpectColumnValuesToBeNull(
            column=LOOK_AHEAD,
            description=f"no item is shown before its {schema.AVAILABLE_FROM} day (look-ahead): {day} or earlier",
        ),
    ]
    if expected_mix is not None:
        exps.append(
            gxe.ExpectColumnKLDivergenceToBeLessThan(
                column="category",
                partition_object={"values": list(expected_mix), "weights": list(expected_mix.values())},
                threshold=cfg.max_category_drift,
                description="category mix of the day's impressions vs the previous day's (KL divergence)",
            )
        )
    return exps


def image_expectations() -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeInSet(
            column="image_ok", value_set=[True], description="every catalogue image exists and decodes"
        )
    ]
