"""Naive references in plain Python (ints and floats, loops): slow, obviously
right, independent of NumPy and Numba. Every fast path is checked against these on
small inputs (the STUMPY convention)."""
import bisect
import math

MASK = 2**64 - 1
GAMMA = 0x9E3779B97F4A7C15
BLOCK = 512                      # zp_ref.kernels.cpu_sampling.PREFIX_BLOCK


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def u(seed, stream, j):
    key = mix64((mix64(seed) + (stream + 1) * GAMMA) & MASK)
    return (mix64((key + (j + 1) * GAMMA) & MASK) >> 11) * 2.0**-53


def importance_weights(q, p, min_q_abs, max_weight, temperature):
    w = []
    for x in q:
        if math.isinf(x):
            w.append(0.0)
            continue
        v = min(1.0 / max(abs(x), min_q_abs) ** p, max_weight)
        w.append(v ** (1.0 / temperature) if temperature != 1.0 else v)
    s = math.fsum(w)
    return [v / s for v in w]


def prefix_sums(w):
    """Blocks of BLOCK entries summed left to right; block ends added left to right."""
    C, end = [], 0.0
    for lo in range(0, len(w), BLOCK):
        local = 0.0
        for x in w[lo:lo + BLOCK]:
            local += x
            C.append(end + local)
        end = end + local
    return C


def sample_with_replacement(w, n, seed):
    C = prefix_sums(w)
    last_positive = max(i for i, x in enumerate(w) if x > 0)
    return [min(bisect.bisect_right(C, u(seed, 0, j) * C[-1]), last_positive)
            for j in range(n)]


def sample_without_replacement(w, n, seed):
    keyed = [(math.log(x) - math.log(-math.log(u(seed, 1, i))) if u(seed, 1, i) > 0
              else -math.inf, -i) for i, x in enumerate(w) if x > 0]
    return [-neg_i for _, neg_i in sorted(keyed, reverse=True)[:n]]


def uniform_indices(pool_size, n, seed):
    return [min(int(math.floor(u(seed, 2, j) * pool_size)), pool_size - 1) for j in range(n)]


# ------------------------------------------------------------------ refinement trees
# Written from docs/refinement.md, independently of the engines: a cell is a pair
# (lower corner on the integer lattice, level); lattice index k on an axis with M steps
# lies at lo + (hi - lo) * (k / M) (hi itself at k = M), M = n0 * 2**(L + 1).

def horner(coeffs, x):
    """sum_i coeffs[i] x**i, Horner's rule from the top coefficient."""
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * x + c
    return acc


def derive_seed(seed, index):
    """raw64(seed, 2**63, index): the seed of call ``index`` of a stateful sampler."""
    key = mix64((mix64(seed) + (2**63 + 1) * GAMMA) & MASK)
    return mix64((key + (index + 1) * GAMMA) & MASK)


def cell_flag(values, criterion, threshold, level=0):
    """The sampled criteria on a cell's corner and centre values. ``abs_or_sign`` counts
    |Q| as small below threshold / 4**level (``abs``: below threshold at every level)."""
    sign = (any(v > 0 for v in values) and any(v < 0 for v in values)) or 0.0 in values
    cut = threshold / 4.0 ** level if criterion == "abs_or_sign" else threshold
    small = min(abs(v) for v in values) < cut
    return {"abs": small, "sign": sign, "abs_or_sign": sign or small}[criterion]


class NaiveTree:
    """Refinement of a box by plain recursion over cells. ``q`` maps a point (tuple of d
    floats) to a float; every corner and centre is evaluated once (``values``)."""

    def __init__(self, q, bounds, n0, max_level, criterion, threshold):
        self.q, self.bounds, self.L = q, bounds, max_level
        self.d = len(bounds)
        self.n0 = n0
        self.M = [n * 2 ** (max_level + 1) for n in n0]
        self.criterion, self.threshold = criterion, threshold
        self.values = {}

    def coords(self, k):
        return tuple(hi if k[a] == self.M[a] else lo + (hi - lo) * (k[a] / self.M[a])
                     for a, (lo, hi) in enumerate(self.bounds))

    def value(self, k):
        if k not in self.values:
            self.values[k] = self.q(self.coords(k))
        return self.values[k]

    def unit(self, level):
        return 2 ** (self.L + 1 - level)

    def offsets(self, lo, step, choices):
        """Points lo + step * c for every c in choices**d (row-major)."""
        out = [()]
        for a in range(self.d):
            out = [p + (lo[a] + step * c,) for p in out for c in choices]
        return out

    def cell_points(self, cell):
        """The 2**d corners and the centre of a cell."""
        lo, level = cell
        unit = self.unit(level)
        return self.offsets(lo, unit, (0, 1)) + [tuple(x + unit // 2 for x in lo)]

    def flagged(self, cell):
        return cell_flag([self.value(k) for k in self.cell_points(cell)], self.criterion,
                         self.threshold, cell[1])

    def children(self, cell):
        lo, level = cell
        return [(c, level + 1) for c in self.offsets(lo, self.unit(level) // 2, (0, 1))]

    def face_points(self, cell):
        """Points of the cell's half-step lattice other than its corners and centre."""
        lo, level = cell
        own = set(self.cell_points(cell))
        return [p for p in self.offsets(lo, self.unit(level) // 2, (0, 1, 2)) if p not in own]

    def initial_cells(self):
        cells = [()]
        for a in range(self.d):
            cells = [c + (i * self.unit(0),) for c in cells for i in range(self.n0[a])]
        return [(c, 0) for c in cells]

    def urgency(self, cell):
        """Sort key, most urgent first: sign change, smaller min |Q|, lower level,
        lower corner in row-major order."""
        vals = [self.value(k) for k in self.cell_points(cell)]
        return (not cell_flag(vals, "sign", 0.0), min(abs(v) for v in vals), cell[1], cell[0])


def refine_recursive(tree):
    """Leaves (sorted) of the uncapped refinement: a flagged cell below the deepest
    level is replaced by its children, recursively."""
    leaves = []

    def visit(cell):
        for k in tree.cell_points(cell):
            tree.value(k)
        if cell[1] < tree.L and tree.flagged(cell):
            for child in tree.children(cell):
                visit(child)
        else:
            leaves.append(cell)

    for cell in tree.initial_cells():
        for k in tree.cell_points(cell):     # the whole initial grid first
            tree.value(k)
    for cell in tree.initial_cells():
        visit(cell)
    return sorted(leaves)


def refine_capped(tree, max_points):
    """Leaves (sorted) of the refinement in rounds under a cap on evaluated points: each
    round takes the flagged leaves below the deepest level; when all of them may not
    fit (each brings up to 3**d - 1 points), the longest prefix of their urgency order
    whose new points (2**d centres plus the face points neither existing nor brought by
    a more urgent cell) fit under the cap is split. Stops when a round splits none."""
    leaves = tree.initial_cells()
    for cell in leaves:
        for k in tree.cell_points(cell):
            tree.value(k)
    while True:
        cand = [c for c in leaves if c[1] < tree.L and tree.flagged(c)]
        if len(tree.values) + len(cand) * (3 ** tree.d - 1) > max_points:
            room, used, brought, chosen = max_points - len(tree.values), 0, set(), []
            for cell in sorted(cand, key=tree.urgency):
                fresh = {p for p in tree.face_points(cell)
                         if p not in tree.values and p not in brought}
                used += 2 ** tree.d + len(fresh)
                if used > room:
                    break
                brought |= fresh
                chosen.append(cell)
            cand = chosen
        if not cand:
            return sorted(leaves)
        chosen = set(cand)
        leaves = [c for c in leaves if c not in chosen]
        for cell in cand:
            for child in tree.children(cell):
                leaves.append(child)
                for k in tree.cell_points(child):
                    tree.value(k)


# ------------------------------------------------------------------ stratified draws
def band_of(q, edges):
    """The number of edges strictly below |q|, per entry."""
    return [sum(1 for e in edges if e < abs(x)) for x in q]


def largest_remainder(n, shares):
    t = [n * s for s in shares]
    counts = [math.floor(x) for x in t]
    left = n - sum(counts)
    order = sorted((b for b, s in enumerate(shares) if s > 0), key=lambda b: -(t[b] - counts[b]))
    for b in order[:left]:
        counts[b] += 1
    return counts


def redistributed_mix(mix, drawable):
    """Bands without drawable members get nothing; the others share their mix."""
    if all(drawable[b] > 0 for b, m in enumerate(mix) if m > 0):
        return list(mix)
    kept = [m if a > 0 else 0.0 for m, a in zip(mix, drawable)]
    total = math.fsum(kept)
    if total > 0:
        return [m / total for m in kept]
    return [a / sum(drawable) for a in drawable]


def stratified_sample(q, n, edges, mix, seed, within, weight_power=2.0, min_q_abs=1e-6):
    """Draws with a mix over |Q| bands: per band, uniform or importance draws (with
    replacement) among its members, seeded derive_seed(seed, band); band-major order."""
    bands = band_of(q, edges)
    members = [[i for i, b in enumerate(bands) if b == k] for k in range(len(edges) + 1)]

    def weight(x):
        return 0.0 if math.isinf(x) else 1.0 / max(abs(x), min_q_abs) ** weight_power

    if within == "importance":
        drawable = [sum(1 for i in m if weight(q[i]) > 0) for m in members]
    else:
        drawable = [len(m) for m in members]
    alloc = largest_remainder(n, redistributed_mix(mix, drawable))
    out = []
    for b, count in enumerate(alloc):
        if count == 0:
            continue
        seed_b = derive_seed(seed, b)
        if within == "uniform":
            picks = uniform_indices(len(members[b]), count, seed_b)
        else:
            picks = sample_with_replacement([weight(q[i]) for i in members[b]], count, seed_b)
        out += [members[b][j] for j in picks]
    return out


def pole_brackets(points, y, max_brackets, separation):
    """zp_ref.model_driven_growth.pole_brackets by brute force: every pair of
    neighbours (1-D: adjacent in sorted order; else within each point's 2 d nearest),
    the sign changes with both |y| above the median, tightest first (ties by the pair's
    indices, 1-D: by position), greedily separated. Points: lists of floats."""
    n, d = len(points), len(points[0])
    dist = lambda p, q: math.sqrt(sum((a - b) ** 2 for a, b in zip(p, q)))
    if d == 1:
        order = sorted(range(n), key=lambda i: (points[i][0], i))
        pairs = [(order[r], order[r + 1], r) for r in range(n - 1)]
    else:
        found = set()
        for i in range(n):
            near = sorted(range(n), key=lambda j: (dist(points[i], points[j]), j))
            for j in near[1:min(2 * d + 1, n)]:
                found.add((min(i, j), max(i, j)))
        pairs = [(i, j, i * n + j) for i, j in found]
    ay = sorted(abs(v) for v in y)
    median = (ay[(n - 1) // 2] + ay[n // 2]) / 2
    cands = []
    for i, j, tie in pairs:
        score = min(abs(y[i]), abs(y[j]))
        if y[i] * y[j] < 0 and score > median:
            cands.append((-score, tie, i, j))
    taken = []
    for _, _, i, j in sorted(cands):
        if len(taken) == max_brackets:
            break
        c = [(a + b) / 2 for a, b in zip(points[i], points[j])]
        if all(dist(c, [(a + b) / 2 for a, b in zip(points[s], points[t])]) >= separation
               for s, t in taken):
            taken.append((i, j))
    return [points[i] for i, _ in taken], [points[j] for _, j in taken]
