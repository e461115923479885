"""Tables of list (multivalent) columns for the TFDV parity tests, shaped like TFX's examples' data.

- ``image``: fixed_size_list<float32>[784], an mnist-like image per row (a third of its pixels 0);
- ``tokens``: list<string>, imdb-like token lists of 1..30 tokens, some rows null, some empty;
- ``ids``: list<int64> of 0..5 values, a few rows null;
- ``scores``: large_list<double> of 1..3 values;
- ``x``: a scalar float beside them.
"""

from __future__ import annotations

WORDS = ["the", "a", "movie", "good", "bad", "plot", "acting", "was", "not", "great"]


def list_table(rows: int = 200, seed: int = 3, image_size: int = 784):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    pixels = rng.random((rows, image_size)).astype(np.float32)
    pixels[pixels < 0.3] = 0.0
    tokens = []
    for draw in rng.random(rows):
        if draw < 0.1:
            tokens.append(None)
        elif draw < 0.2:
            tokens.append([])
        else:
            tokens.append([str(w) for w in rng.choice(WORDS, int(rng.integers(1, 31)))])
    ids = [None if rng.random() < 0.05 else [int(v) for v in rng.integers(-5, 100, int(rng.integers(0, 6)))]
           for _ in range(rows)]
    scores = [list(rng.normal(0, 1, int(rng.integers(1, 4)))) for _ in range(rows)]
    return pa.table({
        "image": pa.FixedSizeListArray.from_arrays(pa.array(pixels.ravel()), image_size),
        "tokens": pa.array(tokens, pa.list_(pa.string())),
        "ids": pa.array(ids, pa.list_(pa.int64())),
        "scores": pa.array(scores, pa.large_list(pa.float64())),
        "x": rng.random(rows),
    })
