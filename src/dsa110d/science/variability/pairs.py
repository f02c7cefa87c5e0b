"""Two-epoch variability metrics (Mooley et al. 2016) without materialising all pairs.

For two measurements a, b of one source:

    Vs = (S_a - S_b) / sqrt(s_a^2 + s_b^2)          m = 2 (S_a - S_b) / (S_a + S_b)

We report, per source, the pair with the largest |m| among pairs with |Vs| >= VS_THRESHOLD
(or the configured ``vs_threshold``; ties in m broken by the larger |Vs|), as |Vs| and |m| with
a the brighter epoch. The classification then asks |m| >= 0.26 of that pair: such a pair
exists exactly when the reported one passes (it has the largest |m| of the significant ones).

Only measurements with S > 0 take part. m is a ratio of flux densities: once the
denominator may cross zero (forced photometry of a faint source gives negative values) it
is unbounded and says nothing about the source; the "appeared from nothing" case is the
transient criterion's job (see ``variability.py``).

Algorithm (exact). With a the brighter epoch and 0 < S_b < S_a, |m| = 2(1 - r)/(1 + r) with
r = S_b/S_a, so |m| grows with S_a and falls with S_b; |Vs| grows with S_a, falls with S_b
and falls with either error. Hence a point b' with S_b' <= S_b and s_b' <= s_b is at least
as good a *fainter* partner as b for every brighter a (both metrics >=), and a point a' with
S_a' >= S_a and s_a' <= s_a is at least as good a *brighter* partner as a. Replacing the
partners of an optimal pair by such dominating points never lowers (m, Vs), so an optimal
pair exists in U x L, where

    L = the lower-left Pareto staircase of the points in (S, s): nothing fainter and sharper,
    U = the upper-left staircase: nothing brighter and sharper.

Both staircases come from one sort by flux and a running minimum of the error (prefix-min
for L, suffix-min for U). Their expected size for exchangeable errors is the harmonic number
H_N ~ ln N + 0.58 (about 5 for N = 100), so the pair search costs O(N log N) per source
instead of O(N^2); the worst case (error strictly falling with flux) is |U| |L| <= N^2/4.

The staircases are also what makes the *incremental* metric exact: a new point k can only
form an optimal pair with an old point on U or L (the argument above applied to the old
points), and the new staircases are the old ones with k inserted and the points k dominates
removed. A removed point (a superseded block) may uncover points the staircase dropped, so
removal needs the source's light curve (see ``state.py``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

VS_THRESHOLD = 4.3
"""|Vs| a pair needs to count as significant (Mooley et al. 2016, ApJ 818, 105, sec. 5)."""

EXACT_GROUP_MAX = 12
"""Staircases up to this long are searched in groups of exactly equal lengths."""

PAIR_CHUNK_ELEMENTS = 1 << 22
"""Upper bound on pair-matrix elements evaluated at once (bounds memory, ~32 MiB per array)."""

STAIRCASE_CHUNK_CELLS = 1 << 20
"""Light-curve cells sorted at a time by ``staircase_cells`` (8 MiB per float64 temporary;
the running minima cost two calls per column of a chunk, so chunks are not smaller)."""


def staircases(flux: FloatArray, err: FloatArray) -> tuple[IntArray, BoolArray, BoolArray]:
    """Sort each row of dense (sources, K) arrays by flux and mark U and L.

    Missing points are NaN in ``flux``; points with flux <= 0 never take part. Returns
    ``order``, the flat index (into the inputs as C-ordered (sources, K)) of each row's points
    in flux order, and the masks (upper, lower) in that sorted order:
    ``compact(mask, flux, err, mjd, order=order)`` reads a staircase's points. Only the
    errors are gathered in sorted order (the running minima need them all); the staircases'
    few points are read at ``order`` by ``compact``.
    """
    valid = np.isfinite(flux) & (flux > 0) & np.isfinite(err)
    n_valid = np.count_nonzero(valid, axis=1)
    # Any order of equal fluxes will do: the argument above holds for ties broken either way.
    # Unusable points sort last (key inf), so those of row i are its cells k >= n_valid[i].
    order: IntArray = np.argsort(np.where(valid, flux, np.inf), axis=1)
    order += np.arange(0, order.size, order.shape[1] or 1)[:, None]
    # The sorted errors, transposed for the running minima: one contiguous row of all sources
    # at a time (gathering straight into that layout, np.take(err, order.T), reads the index
    # across rows and takes 3x as long as this gather and transpose).
    e_t = np.ascontiguousarray(np.take(err, order).T)
    np.copyto(e_t, np.inf, where=np.arange(e_t.shape[0])[:, None] >= n_valid)
    lower_t = np.empty(e_t.shape, dtype=bool)
    upper_t = np.empty(e_t.shape, dtype=bool)
    best = np.full(e_t.shape[1], np.inf)
    # L: strictly sharper than every fainter point (of equal fluxes the earlier one weakly
    # dominates the later, so dropping the later is safe).
    for k in range(e_t.shape[0]):
        np.less(e_t[k], best, out=lower_t[k])
        np.minimum(best, e_t[k], out=best)
    # U: strictly sharper than every brighter point.
    best.fill(np.inf)
    for k in range(e_t.shape[0] - 1, -1, -1):
        np.less(e_t[k], best, out=upper_t[k])
        np.minimum(best, e_t[k], out=best)
    return order, upper_t.T, lower_t.T


def row_chunks(n_rows: int, n_cols: int, cells: int) -> list[slice]:
    """Slices of the rows of an (n_rows, n_cols) array, about ``cells`` cells each."""
    step = max(cells // max(n_cols, 1), 1)
    return [slice(lo, lo + step) for lo in range(0, n_rows, step)]


def staircase_cells(
    flux: FloatArray, err: FloatArray, mjd: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The U and L points of dense (sources, K) light curves as (sources, K', 3) cells of
    (flux, err, mjd), packed left and NaN-padded: ``staircases`` and ``compact``.

    Done ``STAIRCASE_CHUNK_CELLS`` at a time, each chunk copied C-contiguous first: the
    inputs may be any view (the processor's (blocks, sources) layout transposed), and the
    sort's temporaries stay chunk-sized.
    """
    n_rows, n_cols = flux.shape
    ups, lows = [], []
    for rows in row_chunks(n_rows, n_cols, STAIRCASE_CHUNK_CELLS):
        f, e, t = (np.ascontiguousarray(a[rows]) for a in (flux, err, mjd))
        order, up, low = staircases(f, e)
        ups.append(compact(up, f, e, t, order=order))
        lows.append(compact(low, f, e, t, order=order))
    return _stacked(ups, n_rows), _stacked(lows, n_rows)


def _stacked(parts: list[FloatArray], n_rows: int) -> FloatArray:
    """Row chunks of cells, of different widths, as one NaN-padded array."""
    width = max((p.shape[1] for p in parts), default=1)
    out = np.full((n_rows, width, 3), np.nan)
    lo = 0
    for part in parts:
        out[lo : lo + part.shape[0], : part.shape[1]] = part
        lo += part.shape[0]
    return out


def compact(mask: BoolArray, *columns: FloatArray, order: IntArray | None = None) -> FloatArray:
    """Pack the masked points of each row to the left: one (sources, K', len(columns)) array,
    NaN-padded (the cells a ``Staircase`` holds, and ``columns`` of it give back the parts).

    With ``order`` (from ``staircases``) the mask is in that sorted order and ``columns`` as
    they were given to ``staircases``.
    """
    n_rows, n_cols = mask.shape
    counts = np.count_nonzero(mask, axis=1)
    width = max(int(counts.max(initial=0)), 1)
    flat = np.flatnonzero(mask)
    rows = flat // max(n_cols, 1)
    # Cell i of the masked points goes to (row, i - points of earlier rows) of the output.
    dst = np.arange(flat.size) + (rows * width - (np.cumsum(counts) - counts)[rows])
    out = np.full((n_rows * width, len(columns)), np.nan)
    src = flat if order is None else order.ravel()[flat]
    for k, c in enumerate(columns):
        out[dst, k] = np.take(c, src)
    return out.reshape(n_rows, width, len(columns))


def columns(cells: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The (flux, err, mjd) views of (sources, K, 3) cells."""
    return cells[:, :, 0], cells[:, :, 1], cells[:, :, 2]


def pair_metrics(
    s_a: FloatArray, e_a: FloatArray, s_b: FloatArray, e_b: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(Vs, m) of pairs, elementwise; the one formula every path uses, so results agree bitwise."""
    diff = s_a - s_b
    return diff / np.sqrt(e_a * e_a + e_b * e_b), 2.0 * diff / (s_a + s_b)


def best_pairs(
    upper: tuple[FloatArray, FloatArray, FloatArray],
    lower: tuple[FloatArray, FloatArray, FloatArray],
    vs_threshold: float = VS_THRESHOLD,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Best significant pair per row between brighter candidates and fainter candidates.

    ``upper`` and ``lower`` are (flux, err, mjd) arrays of shapes (S, Ka) and (S, Kb), NaN for
    missing points. Returns (|Vs|, |m|, mjd_a, mjd_b), NaN where no pair is significant.
    """
    n_src = upper[0].shape[0]
    out = [np.full(n_src, np.nan) for _ in range(4)]
    per_row = max(upper[0].shape[1] * lower[0].shape[1], 1)
    step = max(PAIR_CHUNK_ELEMENTS // per_row, 1)
    for start in range(0, n_src, step):
        rows = slice(start, start + step)
        fa, ea, ta = (x[rows, :, None] for x in upper)
        fb, eb, tb = (x[rows, None, :] for x in lower)
        with np.errstate(invalid="ignore", divide="ignore"):
            vs, m = pair_metrics(fa, ea, fb, eb)
            ok = (fa > fb) & (fb > 0) & (vs >= vs_threshold)
        m = np.where(ok, m, -np.inf).reshape(m.shape[0], -1)
        vs = np.where(ok, vs, -np.inf).reshape(m.shape)
        m_best = m.max(axis=1, initial=-np.inf)
        pick = np.argmax(np.where(m == m_best[:, None], vs, -np.inf), axis=1)
        found = np.isfinite(m_best)
        ia, ib = np.divmod(pick, lower[0].shape[1])
        r = np.arange(m.shape[0])
        picked = (vs[r, pick], m_best, ta[r, ia, 0], tb[r, 0, ib])
        for dst, val in zip(out, picked, strict=True):
            dst[rows] = np.where(found, val, np.nan)
    return out[0], out[1], out[2], out[3]


def best_pairs_dense(
    flux: FloatArray, err: FloatArray, mjd: FloatArray, vs_threshold: float = VS_THRESHOLD
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Best significant pair per row of dense (sources, N) light curves (NaN = missing).

    Rows are searched in groups of equal staircase lengths (|U|, |L|) while both are short
    (almost every source), and in doubling buckets beyond, so pair matrices are not padded
    to the longest staircase of any source.
    """
    u_all, l_all = staircase_cells(flux, err, mjd)
    n_up = np.count_nonzero(np.isfinite(u_all[:, :, 0]), axis=1)
    n_low = np.count_nonzero(np.isfinite(l_all[:, :, 0]), axis=1)
    out = [np.full(flux.shape[0], np.nan) for _ in range(4)]

    def search(rows: npt.NDArray[np.intp]) -> None:
        wu, wl = int(n_up[rows].max()), int(n_low[rows].max())
        u, v = u_all[rows, :wu], l_all[rows, :wl]  # one gather each
        found = best_pairs(columns(u), columns(v), vs_threshold)
        for dst, val in zip(out, found, strict=True):
            dst[rows] = val

    short = (n_up <= EXACT_GROUP_MAX) & (n_low <= EXACT_GROUP_MAX) & (n_up > 0) & (n_low > 0)
    key = n_up * (EXACT_GROUP_MAX + 1) + n_low
    order = np.argsort(np.where(short, key, -1), kind="stable")
    sorted_key = np.where(short, key, -1)[order]
    starts = np.flatnonzero(np.diff(sorted_key, prepend=-2))
    for lo_i, hi_i in zip(starts, [*starts[1:], order.size], strict=True):
        if sorted_key[lo_i] >= 0:
            search(order[lo_i:hi_i])
    size = np.where(short, 0, np.maximum(n_up, n_low))
    lo = 0
    while lo < int(size.max(initial=0)):
        hi = max(2 * lo, 4)
        rows = np.flatnonzero((size > lo) & (size <= hi) & (n_up > 0) & (n_low > 0))
        lo = hi
        if rows.size:
            search(rows)
    return out[0], out[1], out[2], out[3]


def better(
    m_new: FloatArray, vs_new: FloatArray, m_old: FloatArray, vs_old: FloatArray
) -> BoolArray:
    """Where (m_new, vs_new) beats (m_old, vs_old) lexicographically (NaN = no pair)."""
    m_n = np.nan_to_num(m_new, nan=-np.inf)
    m_o = np.nan_to_num(m_old, nan=-np.inf)
    v_n = np.nan_to_num(vs_new, nan=-np.inf)
    v_o = np.nan_to_num(vs_old, nan=-np.inf)
    result: BoolArray = (m_n > m_o) | ((m_n == m_o) & (v_n > v_o))
    return result
