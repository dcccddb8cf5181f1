"""Training data as a stream, so memory stays flat as days accumulate.

Day partitions are read as Arrow record batches (`World.day_chunks`), validated, joined with the catalogue
and encoded chunk by chunk with the same functions as everywhere else (`feature_frame`, `encode`);
vocabularies are fitted in one streaming pass. Training batches come from a bounded shuffle buffer: chunks
accumulate until `train.shuffle_buffer_rows`, the buffer is permuted and cut into global batches, the rest
waits for the next chunks. The day order is drawn again every epoch. With a buffer as large as the data
this is a full shuffle. Every rank draws the same global batches (same seed), so the order does not depend
on how many workers train.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cscnn.data.io import World
from cscnn.training.encoded_days import EncodedDays
from cscnn.training.features import EncodedSplit, FeatureEncoder, encode, feature_frame


def encoded_chunks(world: World, days: list[str], encoder: FeatureEncoder, chunk_rows: int) -> Iterator[EncodedSplit]:
    """The impressions of `days`, in that order, as encoded chunks of at most `chunk_rows` rows."""
    for day in days:
        for chunk in world.day_chunks(day, chunk_rows):
            yield encode(feature_frame(world, chunk), encoder)


def fit_encoder(world: World, days: list[str], chunk_rows: int) -> FeatureEncoder:
    """Vocabularies of `days` in one streaming pass (the same vocabularies as a fit on all rows at once)."""
    return FeatureEncoder.fit_stream(
        feature_frame(world, chunk) for day in days for chunk in world.day_chunks(day, chunk_rows)
    )


def shuffled_batches(
    world: World,
    days: list[str],
    encoder: FeatureEncoder,
    batch_size: int,
    buffer_rows: int,
    chunk_rows: int,
    rng: np.random.Generator,
    encoded: EncodedDays | None = None,
) -> Iterator[EncodedSplit]:
    """Global batches of `batch_size` rows (the last one may be smaller) in a seeded, buffer-shuffled order.
    `encoded`: these days already encoded with `encoder` (`train.encode_once`), read back instead of the
    Parquet days; the same chunks, so the same batches.

    Memory: at most `buffer_rows + batch_size + chunk_rows` encoded rows at a time, whatever the number of days.
    """
    order = [days[i] for i in rng.permutation(len(days))]
    chunks = (
        (chunk for day in order for chunk in encoded.chunks(day))
        if encoded is not None
        else encoded_chunks(world, order, encoder, chunk_rows)
    )
    pending: list[EncodedSplit] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= buffer_rows + batch_size:
            buffer = EncodedSplit.concat(pending).take(rng.permutation(held))
            full = (held - buffer_rows) // batch_size * batch_size  # keep `buffer_rows` to mix with what comes
            yield from buffer.take(np.arange(full)).chunks(batch_size)
            pending, held = [buffer.take(np.arange(full, held))], held - full
    if held:
        yield from EncodedSplit.concat(pending).take(rng.permutation(held)).chunks(batch_size)


def count_rows(world: World, days: list[str]) -> int:
    """Rows of `days`, from the Parquet footers (nothing is decoded)."""
    return sum(world.day_rows(day) for day in days)
